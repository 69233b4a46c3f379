"""A local DmTracker stand-in: the documented routes, rules and errors, with state in memory.

Written from DmTracker's public documentation alone (never from relay.schemas), so tests that
deliver to it check the relay against the spec rather than against itself.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, cast

from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

API_PREFIX = "/api/v1"
CONTROL_PREFIX = "/_sandbox"
WINDOW_SECONDS = 60.0
JOURNALED_HEADERS = ("x-org-auth-token", "content-type", "idempotency-key")
LEAD_STATUSES = ("open", "won", "lost", "abandoned")  # lead_status_id 1..4, in this order
PIPELINE_STAGES = ("open", "Contacted", "Qualified", "Closed")
TAG_MODES = {"set": "set", "add": "added", "remove": "removed"}  # mode -> word in the message
OUTREACH_FIELDS = ("outreach_reason", "outreach_text")
UNRENDERED_MESSAGE = "##{{last_input_text}}"
USERNAME = re.compile(r"[a-z0-9._]{1,30}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
GRAY = "#374151"
TAG_COLORS = {
    "red": "#dc2626", "blue": "#2563eb", "green": "#16a34a", "yellow": "#ca8a04",
    "purple": "#9333ea", "pink": "#db2777", "indigo": "#4f46e5", "orange": "#ea580c",
    "teal": "#0d9488", "cyan": "#0891b2", "gray": GRAY, "slate": "#475569",
    "amber": "#d97706", "lime": "#65a30d", "emerald": "#059669", "sky": "#0284c7",
    "violet": "#7c3aed", "fuchsia": "#c026d3", "rose": "#e11d48",
}  # fmt: skip
KINDS = {str: "a string", bool: "a boolean", int: "a number", list: "an array", dict: "an object"}
OPTIONAL_CONTACT_FIELDS = {
    "manychat_id": str, "ig_id": int, "activate_followups": bool, "tag_color": str,
    "outreach_reason_label": str, "outreach_message_label": str, "email": str, "note": str,
    "outreach_reason": str, "outreach_text": str, "last_message_content": str,
}  # fmt: skip
UNAVAILABLE_MESSAGE = "Database infrastructure error, try again later."
CONFIG_BOUNDS = {
    "latency_ms": (0, 600_000),
    "fault_rate": (0, 1),
    "create_contact_limit_per_minute": (1, 1_000_000),
}
Clock = Callable[[], float]


@dataclass(frozen=True)
class SandboxOrg:
    """An organization the sandbox serves."""

    id: str
    token: str


class ApiError(Exception):
    """An error answered in DmTracker's shape: {"error": ..., "message": ...}."""

    def __init__(self, status: int, message: str, *, error: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
        self.error = error or HTTPStatus(status).phrase


@dataclass
class Config:
    """The knobs the control API can turn at run time."""

    create_contact_limit_per_minute: int
    latency_ms: int
    fault_rate: float


@dataclass
class Fault:
    """An injected answer for the next `count` matching requests (-1: until cleared)."""

    endpoint: str
    status: int
    count: int = 1
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency_ms: int | None = None


@dataclass
class OrgState:
    """One organization's data: contacts by username, tags by name, create-contact window."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    window: deque[float] = field(default_factory=deque)


class Sandbox:
    """All mutable sandbox state; callers hold `lock` while touching it."""

    def __init__(
        self, orgs: Iterable[SandboxOrg], config: Config, seed: int | None, clock: Clock
    ) -> None:
        self.lock = threading.Lock()
        self.org_by_token = {org.token: org.id for org in orgs}
        self.initial_config, self.seed, self.clock = config, seed, clock
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to the starting config and random sequence."""
        self.config = replace(self.initial_config)
        self.random = random.Random(self.seed)  # noqa: S311 - fault injection, not security
        self.orgs = {org_id: OrgState() for org_id in self.org_by_token.values()}
        self.faults: list[Fault] = []
        self.journal: list[dict[str, Any]] = []

    def plan(self, endpoint: str) -> tuple[int, Fault | None]:
        """Return the latency to wait and the fault that answers this request, if any."""
        fault = self.take_queued_fault(endpoint)
        rate = self.config.fault_rate
        if fault is None and rate > 0 and self.random.random() < rate:
            body = {"error": "Service Unavailable", "message": UNAVAILABLE_MESSAGE}
            fault = Fault(endpoint, 503, body=body)
        if fault is not None and fault.latency_ms is not None:
            return fault.latency_ms, fault
        return self.config.latency_ms, fault

    def take_queued_fault(self, endpoint: str) -> Fault | None:
        """Use up one turn of the first queued fault that matches the endpoint."""
        for fault in self.faults:
            if fault.endpoint in ("*", endpoint):
                if fault.count > 0:
                    fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_create_contact_slot(self, org: OrgState) -> None:
        """Count a create-contact call in the org's sliding window, or refuse it with 429."""
        now, limit, window = self.clock(), self.config.create_contact_limit_per_minute, org.window
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            # The limit may have been lowered at run time, so several calls may have to expire.
            frees_at = window[len(window) - limit] + WINDOW_SECONDS
            raise ApiError(
                429,
                f"You have exceeded the maximum of {limit} requests per minute. "
                "Please wait before retrying.",
                error="Rate limit exceeded",
                retry_after=max(1, math.ceil(frees_at - now)),
            )
        window.append(now)


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
    with sandbox.lock:
        delay_ms, fault = sandbox.plan(request.path.removeprefix(f"{API_PREFIX}/"))
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
    entry = {"at": g.received_at, "method": request.method, "path": request.path}
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


Handler = Callable[[Sandbox, str, dict[str, Any]], tuple[dict[str, Any], int]]


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


def get(body: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    """Return a field checked against its type; None when absent (400 if required)."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"The '{name}' field is required.")
        return None
    # bool is an int in Python but not a number in JSON.
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise ApiError(400, f"The '{name}' field must be {KINDS[kind]}.")
    return value


def get_username(body: dict[str, Any]) -> str:
    """Return the required username, normalized as DmTracker does (422 if malformed)."""
    username = get(body, "username", str, required=True).strip().removeprefix("@").lower()
    if not USERNAME.fullmatch(username):
        raise ApiError(422, "Invalid username format: use 1-30 letters, digits, '.' or '_'.")
    return username


def get_timestamp(body: dict[str, Any], name: str) -> str | None:
    """Return an optional ISO 8601 field as UTC with milliseconds."""
    value = get(body, name, str)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"The '{name}' field must be an ISO 8601 date.") from None
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def get_tag_names(body: dict[str, Any], name: str, *, required: bool = False) -> list[str]:
    """Return a list of tag names, in order, without repeats."""
    names = get(body, name, list, required=required) or []
    if not all(isinstance(tag, str) and tag.strip() for tag in names):
        raise ApiError(400, f"The '{name}' field must be an array of non-empty strings.")
    return list(dict.fromkeys(tag.strip() for tag in names))


def iso(moment: datetime) -> str:
    """Format a moment like DmTracker: 2025-01-12T10:00:00.000Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tag_color_hex(color: str | None) -> str:
    """Return the hex for a documented colour name or a hex code; anything else is gray."""
    if color and HEX_COLOR.fullmatch(color):
        return color
    return TAG_COLORS.get((color or "").strip().lower(), GRAY)


def new_contact(org_id: str, username: str, *, had_outreach: bool) -> dict[str, Any]:
    """Return a fresh contact with DmTracker's defaults."""
    return {
        "id": str(uuid.uuid4()), "username": username, "organization_id": org_id,
        "manychat_id": None, "ig_id": None, "tags": {}, "lead_status": "open",
        "pipeline_stage": "open", "last_message_content": None, "last_response_at": None,
        "had_outreach": had_outreach, "outreach_reason": None, "outreach_text": None,
        "follow_up_needed": True, "note": None, "created_at": iso(datetime.now(UTC)),
    }  # fmt: skip


def pick(contact: dict[str, Any], *names: str) -> dict[str, Any]:
    """Return some of a contact's fields, for a response."""
    return {name: contact[name] for name in names}


def find_contact(org: OrgState, by: str, value: str) -> dict[str, Any]:
    """Return the contact whose contact_id, manychat_id or username matches, or 404."""
    key = "id" if by == "contact_id" else by
    for contact in org.contacts.values():
        if contact[key] == value:
            return contact
    raise ApiError(404, f"No contact found with the specified {by}.")


def apply_tags(org: OrgState, contact: dict[str, Any], names: list[str], color: str) -> None:
    """Put tags on a contact, creating missing org tags in the given colour."""
    for name in names:
        tag = org.tags.setdefault(name, {"id": len(org.tags) + 1, "name": name, "color": color})
        contact["tags"][name] = tag["color"]


def default_reply(sandbox: Sandbox, org_id: str, body: dict[str, Any]) -> tuple[dict, int]:
    """Record a subscriber's reply, creating the contact when it is new."""
    manychat_id = get(body, "manychat_id", str, required=True)
    username = get_username(body)
    if body.get("organization_id") is None and get(body, "page_name", str) is None:
        raise ApiError(400, "Either the 'organization_id' or the 'page_name' field is required.")
    message = get(body, "message_content", str)
    replied_at = get_timestamp(body, "message_date") or iso(datetime.now(UTC))
    ig_id = get(body, "ig_id", int) or get(get(body, "manychat_data", dict) or {}, "ig_id", int)
    # DmTracker treats a missing or unrendered message as our own outreach, not a reply.
    is_reply = message is not None and message.strip() not in ("", UNRENDERED_MESSAGE)
    org = sandbox.orgs[org_id]
    contact = org.contacts.get(username)
    if contact is None:
        contact = org.contacts[username] = new_contact(org_id, username, had_outreach=not is_reply)
    contact.update(manychat_id=manychat_id, ig_id=ig_id or contact["ig_id"])
    if is_reply:
        contact.update(last_message_content=message, last_response_at=replied_at)
        contact["follow_up_needed"] = True
    data = pick(contact, "manychat_id", "username", "organization_id", "created_at")
    data |= pick(contact, "last_response_at", "last_message_content", "outreach_reason")
    data["outreach_message"] = contact["outreach_text"]
    data["contact_type"] = "outreach" if contact["had_outreach"] else "inbound"
    return {"status": "success", "message": "Contact processed successfully", "data": data}, 200


def check_contact_fields(body: dict[str, Any], had_outreach: bool) -> None:
    """Enforce the had_outreach rules and the optional fields' types and formats."""
    inbound, outreach = ("last_response_at", "last_message_content"), OUTREACH_FIELDS
    required, forbidden = (outreach, inbound) if had_outreach else (inbound, outreach)
    mode = str(had_outreach).lower()
    for name in forbidden:
        if body.get(name) is not None:
            raise ApiError(400, f"The '{name}' field cannot be set when had_outreach is {mode}.")
    for name in required:
        if body.get(name) in (None, ""):
            raise ApiError(400, f"The '{name}' field is required when had_outreach is {mode}.")
    for name, kind in OPTIONAL_CONTACT_FIELDS.items():
        get(body, name, kind)
    email = body.get("email")
    if email and not EMAIL.fullmatch(email):
        raise ApiError(400, "The 'email' field must be a valid email address.")
    if len(body.get("note") or "") > 1000:
        raise ApiError(400, "The 'note' field must be at most 1000 characters.")


def create_contact(sandbox: Sandbox, org_id: str, body: dict[str, Any]) -> tuple[dict, int]:
    """Create a contact (201), or return an existing one, converted to outreach if asked (200)."""
    org = sandbox.orgs[org_id]
    # Every authenticated call takes a slot, valid or not, as a request-level limiter would.
    sandbox.take_create_contact_slot(org)
    get(body, "organization_id", str, required=True)
    username = get_username(body)
    had_outreach = get(body, "had_outreach", bool, required=True)
    check_contact_fields(body, had_outreach)
    replied_at, tags = get_timestamp(body, "last_response_at"), get_tag_names(body, "tags")
    outreach = {name: body.get(name) for name in OUTREACH_FIELDS}
    contact = org.contacts.get(username)
    status, message = 200, "Contact already exists"
    if contact is None:
        contact = org.contacts[username] = new_contact(org_id, username, had_outreach=had_outreach)
        contact.update({name: body.get(name) for name in ("manychat_id", "note")})
        contact.update(outreach, last_response_at=replied_at)
        contact["last_message_content"] = body.get("last_message_content")
        contact["follow_up_needed"] = body.get("activate_followups") is not False
        apply_tags(org, contact, tags, tag_color_hex(body.get("tag_color")))
        status, message = 201, "Contact created successfully"
    elif had_outreach and not contact["had_outreach"]:
        contact.update(outreach, had_outreach=True)  # the conversation so far is kept
        message = "Contact converted to outreach"
    contact["ig_id"] = body.get("ig_id") or contact["ig_id"]
    data = pick(contact, "id", "manychat_id", "username", "organization_id", "created_at")
    data |= pick(contact, "last_response_at", "last_message_content", "follow_up_needed")
    data |= pick(contact, "had_outreach", "pipeline_stage")
    data |= {"contact_ingestion_type": "custom-api-import", "created_by_user_id": None}
    return {"status": "success", "message": message, "data": data}, status


def update_tags(sandbox: Sandbox, org_id: str, body: dict[str, Any]) -> tuple[dict, int]:
    """Set, add or remove tags on a contact found by contact_id or username."""
    get(body, "organization_id", str, required=True)
    contact_id = get(body, "contact_id", str)
    if contact_id is None and body.get("username") in (None, ""):
        raise ApiError(400, "Either the 'contact_id' or the 'username' field is required.")
    by, value = ("contact_id", contact_id) if contact_id else ("username", get_username(body))
    mode = get(body, "mode", str, required=True)
    if mode not in TAG_MODES:
        raise ApiError(400, "The 'mode' field must be one of: set, add, remove.")
    names = get_tag_names(body, "tag_names", required=True)
    color = tag_color_hex(get(body, "tag_color", str))
    org = sandbox.orgs[org_id]
    contact = find_contact(org, by, value)
    if mode == "remove":
        missing = [name for name in names if name not in contact["tags"]]
        if missing:  # checked before removing any, so a refused call changes nothing
            raise ApiError(400, f"Tag '{missing[0]}' is not applied to this contact.")
        for name in names:
            del contact["tags"][name]
    else:
        if mode == "set":
            contact["tags"].clear()
        apply_tags(org, contact, names, color)
    tags = [dict(org.tags[name]) for name in contact["tags"]]
    data = {"contact_id": contact["id"], "username": contact["username"], "tags": tags}
    message = f"Tags {TAG_MODES[mode]} successfully"
    return {"status": "success", "message": message, "data": data}, 200


def status_changes(body: dict[str, Any]) -> dict[str, str]:
    """Return the lead status and pipeline stage a contact-status call asks for."""
    status, status_id = get(body, "lead_status", str), get(body, "lead_status_id", int)
    stage = get(body, "pipeline_stage", str)
    if status is None and status_id is None and stage is None:
        raise ApiError(400, "Send lead_status, lead_status_id or pipeline_stage.")
    if status is not None and status_id is not None:
        raise ApiError(400, "Send lead_status or lead_status_id, not both.")
    if status_id is not None and not 1 <= status_id <= len(LEAD_STATUSES):
        raise ApiError(400, "The 'lead_status_id' field must be 1, 2, 3 or 4.")
    if status_id is not None:
        status = LEAD_STATUSES[status_id - 1]
    if status is not None and status not in LEAD_STATUSES:
        raise ApiError(400, "The 'lead_status' field must be open, won, lost or abandoned.")
    if stage is not None and stage not in PIPELINE_STAGES:
        raise ApiError(400, f"'{stage}' is not an active pipeline stage of this organization.")
    changes = {"lead_status": status, "pipeline_stage": stage}
    return {name: value for name, value in changes.items() if value is not None}


def update_status(sandbox: Sandbox, org_id: str, body: dict[str, Any]) -> tuple[dict, int]:
    """Change a contact's lead status and/or pipeline stage."""
    get(body, "organization_id", str, required=True)
    contact_id, manychat_id = get(body, "contact_id", str), get(body, "manychat_id", str)
    if contact_id is None and manychat_id is None:
        raise ApiError(400, "Either the 'contact_id' or the 'manychat_id' field is required.")
    changes = status_changes(body)
    by, value = ("contact_id", contact_id) if contact_id else ("manychat_id", manychat_id)
    contact = find_contact(sandbox.orgs[org_id], by, value)
    contact.update(changes)
    data = pick(contact, "id", "username", "lead_status", "pipeline_stage")
    return {"status": "success", "data": data}, 200


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
    return Fault(endpoint, status, count, spec.get("body"), headers, latency_ms)


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


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without its access log on stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing: serve() prints its own line, and tests want silence."""


def quiet_server(host: str, port: int, app: Flask) -> BaseWSGIServer:
    """Bind a threaded werkzeug server, so one request's latency never holds up another."""
    return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)


class SandboxServer:
    """Serve a sandbox app over real HTTP from a background thread."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = quiet_server(host, port, app)
        self.url = f"http://{host}:{self._server.server_port}{API_PREFIX}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SandboxServer:
        """Start answering requests."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():  # shutdown() would wait forever on a server never started
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def print_request_line(response: Response) -> Response:
    """Print one line per request: method, path, status; never headers, which hold the token."""
    print(f"{request.method} {request.path} {response.status_code}", flush=True)
    return response


def serve(orgs: Iterable[SandboxOrg], host: str, port: int, **options: Any) -> None:
    """Run the sandbox in the foreground until interrupted."""
    app = create_sandbox_app(orgs, **options)
    app.after_request(print_request_line)
    server = quiet_server(host, port, app)
    print(f"DmTracker sandbox on http://{host}:{server.server_port}{API_PREFIX}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
