"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from relay.store import Store

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Say the process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Say whether Redis answers."""
    store: Store = current_app.extensions["dmrelay.store"]
    if store.ping():
        return jsonify(status="ready", redis="ok"), 200
    return jsonify(status="unavailable", redis="unreachable"), 503
