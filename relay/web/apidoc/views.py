"""Serve the OpenAPI description at /openapi.json and its reference page at /docs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from relay.web.apidoc.spec import build_spec
from relay.web.dashboard.views import CSP

bp = Blueprint(
    "apidoc",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/docs/static",
)


def description() -> dict[str, Any]:
    """Return the app's description, built once on first use."""
    built: dict[str, Any] | None = current_app.extensions.get("dmrelay.openapi")
    if built is None:
        built = current_app.extensions["dmrelay.openapi"] = build_spec(current_app)
    return built


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Return this OpenAPI 3.1 description of every route."""
    return jsonify(description())


@bp.get("/docs")
def reference() -> str:
    """Show the API reference, rendered from /openapi.json by the vendored Swagger UI."""
    return render_template("apidoc/reference.html")


@bp.after_request
def harden(response: Response) -> Response:
    """Serve the reference under the dashboard's Content-Security-Policy."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
