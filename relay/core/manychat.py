"""Map ManyChat's "Full Contact Data" onto the DmTracker request of one action.

A flow can send the contact object itself, or put it under a key such as `contact`, and add
the action's own keys (tags and mode, lead status and stage, outreach fields) beside it.
The result is a plain DmTracker body, checked afterwards exactly as the plain routes check
theirs. Only the fields DmTracker knows are taken: names, phones, emails and custom fields
of the contact are never forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.core.errors import FieldError
from relay.core.placeholders import is_blank, is_placeholder

# Keys under which a flow may nest the contact object (n8n and WhatsApp set-ups use `data`).
CONTACT_KEYS = ("contact", "subscriber", "full_contact_data", "user", "data")
# Fields only a contact object has: a body with none of them, at the top or under a key, is not
# Full Contact Data.
CONTACT_MARKS = ("id", "key", "ig_username", "ig_id", "page_id")
# ManyChat keeps some fields per channel as well (`ig_last_interaction` beside
# `last_interaction`): when the generic one is null, the channel's is read.
CHANNEL_PREFIXES = ("ig_", "wa_", "whatsapp_", "tg_", "fb_")

# The DmTracker field each Full Contact Data field fills, per action.
FROM_CONTACT: dict[str, dict[str, str]] = {
    "default-reply": {
        "manychat_id": "id",
        "username": "ig_username",
        "message_content": "last_input_text",
        "ig_id": "ig_id",
    },
    "create-contact": {"manychat_id": "id", "username": "ig_username", "ig_id": "ig_id"},
    "update-tags": {"username": "ig_username"},
    "contact-status": {"manychat_id": "id"},
}
# An inbound contact (had_outreach false) needs its last message and when it came.
INBOUND_FROM_CONTACT = {
    "last_message_content": "last_input_text",
    "last_response_at": "last_interaction",
}
OUTREACH_FIELDS = ("outreach_reason", "outreach_text")

# The action's own keys, taken from the body's top level by DmTracker's names. Not `email`:
# beside a contact it is the contact's address, which DmTracker would read as a team member's.
ACTION_KEYS: dict[str, tuple[str, ...]] = {
    "default-reply": (
        "username", "manychat_id", "organization_id", "message_content", "message_date",
        "page_name", "ig_id", "manychat_data",
    ),
    "create-contact": (
        "username", "manychat_id", "organization_id", "ig_id", "had_outreach",
        "last_response_at", "last_message_content", *OUTREACH_FIELDS, "outreach_reason_label",
        "outreach_message_label", "activate_followups", "note", "tags", "tag_color",
    ),
    "update-tags": (
        "username", "contact_id", "organization_id", "mode", "tag_names", "tag_color",
    ),
    "contact-status": (
        "manychat_id", "contact_id", "organization_id", "lead_status", "lead_status_id",
        "pipeline_stage",
    ),
}  # fmt: skip
ACTIONS = tuple(ACTION_KEYS)

NO_CONTACT = (
    "holds no ManyChat contact: no object under "
    + ", ".join(f"'{key}'" for key in CONTACT_KEYS)
    + ", and none of "
    + ", ".join(f"'{key}'" for key in CONTACT_MARKS)
    + ' at the top level. Send "Full Contact Data" as the body, or under one of those keys.'
)
NO_INSTAGRAM_USERNAME = (
    "is missing or null, and DmTracker tracks Instagram contacts by their username: a"
    " Messenger or WhatsApp contact has none. Run this action for Instagram contacts only"
    ' (a condition on Instagram Username), or send a "username" key beside the contact data.'
)


def to_request(action: str, body: object) -> dict[str, Any]:
    """Return the DmTracker body of an action from Full Contact Data and the action's keys."""
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object: ManyChat's Full Contact Data.")
    contact = find_contact(body)
    request = {
        field: _plain_number(read_field(contact, source))
        for field, source in _sources(action, body).items()
    }
    request.update({key: body[key] for key in ACTION_KEYS[action] if not is_blank(body.get(key))})
    request = {key: value for key, value in request.items() if value is not None}
    if action == "create-contact" and "had_outreach" not in request:
        request["had_outreach"] = any(not is_blank(body.get(f)) for f in OUTREACH_FIELDS)
    if contact is body and not any(mark in body for mark in CONTACT_MARKS):
        require_identity(request)
    require_instagram_username(action, request)
    return request


def read_field(contact: Mapping[str, Any], name: str) -> Any:
    """Return a contact field, or its per-channel twin when the generic one is null."""
    value = contact.get(name)
    if value is not None:
        return value
    twins = (contact.get(prefix + name) for prefix in CHANNEL_PREFIXES)
    return next((twin for twin in twins if twin is not None), None)


def require_identity(request: Mapping[str, Any]) -> None:
    """Refuse a body holding no contact object and no identity key of its own."""
    if not any(request.get(key) for key in ("username", "manychat_id", "contact_id")):
        raise FieldError("body", NO_CONTACT, status=422)


def find_contact(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the contact object: under one of CONTACT_KEYS, or the body itself."""
    key = next((key for key in CONTACT_KEYS if key in body), None)
    if key is None:
        return body
    contact = body[key]
    if isinstance(contact, dict):
        return contact
    if is_placeholder(contact):
        raise FieldError(key, "is an unrendered ManyChat placeholder.", status=422)
    raise FieldError(key, "must be an object: ManyChat's Full Contact Data.")


def _sources(action: str, body: Mapping[str, Any]) -> dict[str, str]:
    """Return which contact field fills which DmTracker field for this request."""
    sources = dict(FROM_CONTACT[action])
    if action == "create-contact" and not _is_outreach(body):
        sources.update(INBOUND_FROM_CONTACT)
    return sources


def _is_outreach(body: Mapping[str, Any]) -> bool:
    """Tell whether a create-contact is outreach: as had_outreach says, else by its fields."""
    flag = body.get("had_outreach")
    if isinstance(flag, str):
        return flag.strip().lower() == "true"
    if isinstance(flag, bool):
        return flag
    return any(not is_blank(body.get(field)) for field in OUTREACH_FIELDS)


def _plain_number(value: Any) -> Any:
    """Return an id ManyChat sent as a whole float (1.7e15) as an integer; the rest as is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def require_instagram_username(action: str, request: Mapping[str, Any]) -> None:
    """Refuse, with 422, a contact without an Instagram username where DmTracker needs one."""
    if action == "contact-status" or (action == "update-tags" and request.get("contact_id")):
        return
    username = request.get("username")
    if is_blank(username) or is_placeholder(username):
        raise FieldError("ig_username", NO_INSTAGRAM_USERNAME, status=422)


def source_of(action: str, field: str) -> str | None:
    """Return the Full Contact Data field a DmTracker field is taken from, if any."""
    sources = {**FROM_CONTACT[action]}
    if action == "create-contact":
        sources.update(INBOUND_FROM_CONTACT)
    return sources.get(field)
