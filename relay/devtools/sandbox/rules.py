"""DmTracker's four documented endpoints, as rules over the sandbox's state.

Written from DmTracker's public documentation alone (never from relay.core.schemas), so tests
that deliver to the sandbox check the relay against the spec rather than against itself.
Each handler runs under the state's lock and answers (body, status) or raises ApiError.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay.devtools.sandbox.state import ApiError, OrgState, Sandbox

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
Handler = Callable[[Sandbox, str, dict[str, Any]], tuple[dict[str, Any], int]]


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
