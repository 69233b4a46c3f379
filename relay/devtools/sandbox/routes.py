"""The sandbox's Flask app: DmTracker's API routes and the control API that tests drive."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from http import HTTPStatus
from typing import Any, cast

from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from relay.devtools.sandbox.rules import (
    Handler,
    create_contact,
    default_reply,
    get,
    update_status,
    update_tags,
)
from relay.devtools.sandbox.state import (
    ApiError,
    Clock,
    Config,
    Fault,
    OrgState,
    Sandbox,
    SandboxOrg,
)

API_PREFIX = "/api/v1"
CONTROL_PREFIX = "/_sandbox"
JOURNALED_HEADERS = ("x-org-auth-token", "content-type", "idempotency-key", "x-request-id")
CONFIG_BOUNDS = {
    "latency_ms": (0, 600_000),
    "fault_rate": (0, 1),
    "create_contact_limit_per_minute": (1, 1_000_000),
}


def create_sandbox_app(
    orgs: Iterable[SandboxOrg],
    *,
    create_contact_limit_per_minute: int = 60,
    latency_ms: int = 0,
    fault_rate: float = 0.0,
    seed: int | None = None,
    clock: Clock = time.monotonic,
) -> Flask:
    """Build the sandbox app serving the given organizations."""
    app = Flask(__name__, static_folder=None)
    config = Config(create_contact_limit_per_minute, latency_ms, fault_rate)
    app.extensions["sandbox"] = Sandbox(orgs, config, seed, clock)
    app.before_request(delay_or_fault)
    app.after_request(journal_request)
    app.register_error_handler(ApiError, render_api_error)
    app.register_error_handler(HTTPException, render_http_error)
    for method, path, handler in API_ROUTES:
        # No automatic OPTIONS: DmTracker answers 405 to every method but the documented one.
        app.add_url_rule(
            f"{API_PREFIX}/{path}", path, api_view(handler), methods=[method],
            provide_automatic_options=False,
        )  # fmt: skip
    for method, path, view in CONTROL_ROUTES:
        app.add_url_rule(f"{CONTROL_PREFIX}/{path}", f"{method} {path}", view, methods=[method])
    return app


def current_sandbox() -> Sandbox:
    """Return the state of the app handling this request."""
    return cast(Sandbox, current_app.extensions["sandbox"])


def is_api_request() -> bool:
    """Tell whether this request is for the DmTracker API rather than the control API."""
    return request.path.startswith(f"{API_PREFIX}/")


def delay_or_fault() -> Response | None:
    """Wait the configured latency, then answer with an injected fault if one is due."""
    g.received_at = time.time()
    if not is_api_request():
        return None
    sandbox = current_sandbox()
    org_id = sandbox.org_by_token.get(request.headers.get("x-org-auth-token", ""))
    with sandbox.lock:
        delay_ms, fault = sandbox.plan(request.path.removeprefix(f"{API_PREFIX}/"), org_id)
    time.sleep(delay_ms / 1000)  # outside the lock, so slow requests overlap
    if fault is None:
        return None
    body = fault.body
    if body is None:
        body = {"error": HTTPStatus(fault.status).phrase, "message": "Injected by the sandbox."}
    response = current_app.response_class(json.dumps(body), fault.status, fault.headers)
    response.mimetype = "application/json"
    return response


def journal_request(response: Response) -> Response:
    """Record an API request as it arrived, with the status it got."""
    if not is_api_request():
        return response
    text = request.get_data(as_text=True)
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    headers = {name: request.headers[name] for name in JOURNALED_HEADERS if name in request.headers}
    # Both ends of the call, so a test can tell whether two calls overlapped.
    entry = {"at": g.received_at, "answered_at": time.time()}
    entry |= {"method": request.method, "path": request.path}
    entry |= {"headers": headers, "body": body, "status": response.status_code}
    sandbox = current_sandbox()
    with sandbox.lock:
        sandbox.journal.append({"seq": len(sandbox.journal) + 1, **entry})
    return response


def render_api_error(exc: ApiError) -> ResponseReturnValue:
    """Answer an ApiError in DmTracker's shape."""
    return jsonify({"error": exc.error, "message": exc.message, **exc.extra}), exc.status


def render_http_error(exc: HTTPException) -> ResponseReturnValue:
    """Answer routing errors (404, 405) and crashes in DmTracker's shape too."""
    message, headers = exc.description or "", {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        allowed = ", ".join(exc.valid_methods)
        message, headers = f"This endpoint only accepts {allowed} requests.", {"Allow": allowed}
    return jsonify({"error": exc.name, "message": message}), exc.code or 500, headers


def api_view(handler: Handler) -> Callable[[], ResponseReturnValue]:
    """Wrap an endpoint handler with authentication, body parsing and the state lock."""

    def view() -> ResponseReturnValue:
        sandbox = current_sandbox()
        org_id = sandbox.org_by_token.get(request.headers.get("x-org-auth-token", ""))
        if org_id is None:
            raise ApiError(401, "Missing or invalid x-org-auth-token header.")
        body = json_object()
        claimed = get(body, "organization_id", str)
        if claimed is not None and claimed != org_id:
            raise ApiError(403, "This x-org-auth-token does not belong to that organization_id.")
        with sandbox.lock:
            payload, status = handler(sandbox, org_id, body)
        return jsonify(payload), status

    return view


def json_object() -> dict[str, Any]:
    """Return the request body, which must be a JSON object."""
    try:
        body = json.loads(request.get_data(as_text=True))
    except ValueError:
        raise ApiError(400, "Malformed JSON in request body.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


API_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "contact/default-reply", default_reply),
    ("POST", "organization/create-contact", create_contact),
    ("POST", "contact/update-tags-external", update_tags),
    ("PATCH", "contact/contact-status", update_status),
]


def list_requests() -> ResponseReturnValue:
    """Return the journal of API requests received."""
    sandbox = current_sandbox()
    with sandbox.lock:
        return jsonify({"data": list(sandbox.journal)})


def clear(what: str) -> ResponseReturnValue:
    """Forget the journal ("requests"), the queued faults ("faults") or everything ("state")."""
    sandbox = current_sandbox()
    with sandbox.lock:
        if what == "requests":
            sandbox.journal.clear()
        elif what == "faults":
            sandbox.faults.clear()
        else:
            sandbox.reset()  # also restores the starting config, so tests cannot leak settings
    return jsonify({"status": "success"})


def add_fault() -> ResponseReturnValue:
    """Queue a fault for the next matching API requests."""
    fault = parse_fault(json_object())
    sandbox = current_sandbox()
    with sandbox.lock:
        sandbox.faults.append(fault)
    return jsonify({"status": "success", "data": asdict(fault)}), 201


def parse_fault(spec: dict[str, Any]) -> Fault:
    """Build a Fault from its control-API description."""
    endpoint = (get(spec, "endpoint", str) or "*").strip("/").removeprefix("api/v1/")
    status, count = get(spec, "status", int, required=True), get(spec, "count", int)
    count = 1 if count is None else count
    latency_ms, headers = get(spec, "latency_ms", int), get(spec, "headers", dict) or {}
    if not 100 <= status <= 599:
        raise ApiError(400, "The 'status' field must be an HTTP status code.")
    if count < 1 and count != -1:
        raise ApiError(400, "The 'count' field must be positive, or -1 for until cleared.")
    if latency_ms is not None and latency_ms < 0:
        raise ApiError(400, "The 'latency_ms' field must not be negative.")
    headers = {str(name): str(value) for name, value in headers.items()}
    org_id = get(spec, "organization_id", str)
    return Fault(endpoint, status, count, spec.get("body"), headers, latency_ms, org_id)


def update_config() -> ResponseReturnValue:
    """Change latency, fault rate or the create-contact limit at run time."""
    changes = json_object()
    for name, value in changes.items():
        if name not in CONFIG_BOUNDS:
            raise ApiError(400, f"Unknown setting '{name}'.")
        low, high = CONFIG_BOUNDS[name]
        kind = float if name == "fault_rate" else int
        if isinstance(value, bool) or not isinstance(value, int | kind) or not low <= value <= high:
            raise ApiError(400, f"The '{name}' setting must be a number from {low} to {high}.")
    sandbox = current_sandbox()
    with sandbox.lock:
        sandbox.config = replace(sandbox.config, **changes)
        return jsonify({"status": "success", "data": asdict(sandbox.config)})


def list_contacts() -> ResponseReturnValue:
    """Return one organization's contacts."""
    sandbox = current_sandbox()
    with sandbox.lock:
        org = sandbox.orgs.get(request.args.get("organization_id", ""), OrgState())
        return jsonify({"data": copy.deepcopy(list(org.contacts.values()))})


CONTROL_ROUTES: list[tuple[str, str, Callable[..., ResponseReturnValue]]] = [
    ("GET", "requests", list_requests),
    ("DELETE", "<any(requests, faults, state):what>", clear),
    ("POST", "faults", add_fault),
    ("PUT", "config", update_config),
    ("GET", "contacts", list_contacts),
]
