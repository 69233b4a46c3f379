"""Validate and normalize the four ingest bodies, field by field, as DmTracker documents them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast

from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validates_schema
from marshmallow.validate import Email

from relay.core.errors import FieldError
from relay.core.placeholders import is_blank, is_placeholder

REQUIRED = "is required."
PLACEHOLDER = "is an unrendered ManyChat placeholder."
USERNAME_FORMAT = "must be 1-30 characters of letters, digits, '.' and '_'."
NOT_STRING = "must be a string."
NOT_STRING_OR_INTEGER = "must be a string or an integer."
NOT_UUID = "must be a UUID."
NOT_NATURAL = "must be a non-negative integer."
NOT_NUMBER = "must be a number."
NOT_BOOLEAN = "must be a boolean."
NOT_TIMESTAMP = "must be an ISO 8601 date or date and time, such as 2025-01-12T10:00:00Z."
BEFORE_YEAR_1000 = "must be a date from the year 1000 on."
NOT_EMAIL = "must be a valid email address."
NOT_OBJECT = "must be an object."
NOT_TAG_LIST = "must be a list of strings."
NO_TAG_NAMES = "is required (it held only blank names or unrendered ManyChat placeholders)."

# DmTracker answers these two with 422; every other broken rule is a 400.
UNPROCESSABLE = frozenset({USERNAME_FORMAT, PLACEHOLDER})
# A placeholder in a required one of these means the ManyChat flow is misconfigured: the
# request is held, never forwarded without it. In an optional one it is dropped like any other.
IDENTITY_FIELDS = frozenset({"username", "manychat_id"})

# The only length limits DmTracker documents (endpoints reference, create-contact), and
# the longest address the email format allows (RFC 5321).
MAX_NOTE_CHARS = 1000
MAX_EMAIL_CHARS = 254
# A four-digit year: the relay forwards YYYY-MM-DD..., never an unpadded year such as 999.
MIN_YEAR = 1000
# Longer than any real subscriber id: ManyChat's are 64-bit integers (at most 20 digits), and
# DmTracker's own example is "MC_123456789". A longer value is a broken variable, and it would
# be stored as the contact's alias for a month.
MAX_MANYCHAT_ID_CHARS = 32

_USERNAME = re.compile(r"[a-z0-9._]{1,30}")
# ManyChat variables are often typed "@{{username}}"; some flows add a space or a second '@'.
_USERNAME_PREFIX = re.compile(r"^[@\s]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# Bounded so int() never meets Python's digit limit; 20 digits hold any 64-bit id.
_DIGITS = re.compile(r"[0-9]{1,20}")
_SIGNED_DIGITS = re.compile(r"-?[0-9]{1,20}")
_EMAIL = Email(error=NOT_EMAIL)

Converter = Callable[[Any], Any]
C = TypeVar("C", bound=Converter)

# The JSON each converter accepts before normalizing it, as JSON Schema: the OpenAPI
# description (relay/web/apidoc) reads it, so what is documented sits beside what is checked.
ACCEPTS: dict[Converter, dict[str, Any]] = {}


def accepts(json_schema: dict[str, Any]) -> Callable[[C], C]:
    """Record the JSON a converter accepts, for the API description."""

    def record(convert: C) -> C:
        ACCEPTS[convert] = json_schema
        return convert

    return record


@dataclass(frozen=True)
class Validated:
    """A normalized body, and why it must be answered "skipped" instead of queued."""

    body: dict[str, Any]
    skip_reason: str | None


def validate(endpoint: str, body: object) -> Validated:
    """Check and normalize one ingest body, or raise FieldError for its first broken rule."""
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object.")
    schema = SCHEMAS[endpoint]
    try:
        loaded = schema.convert(body)
    except ValidationError as error:
        raise first_field_error(schema, error, body) from None
    return Validated(loaded, skip_reason(endpoint, body))


def skip_reason(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """Return why a default reply carries no reply text (it is outreach), else None."""
    if endpoint != "default-reply":
        return None
    message = body.get("message_content")
    if is_placeholder(message):
        return "message_content is an unrendered ManyChat placeholder"
    if message is None:
        return "message_content is missing"
    if is_blank(message):
        return "message_content is empty"
    return None


def first_field_error(
    schema: Schema, error: ValidationError, body: Mapping[str, Any]
) -> FieldError:
    """Turn marshmallow's errors into one FieldError, in the schema's field order."""
    messages = error.normalized_messages()
    field = next((name for name in schema.fields if name in messages), None) or min(messages)
    found = messages[field]
    message = str(found[0] if isinstance(found, list) else found)
    status = 422 if message in UNPROCESSABLE else 400
    if message.startswith("is required") and is_placeholder(body.get(field)):
        message = message.removesuffix(".") + " (it was an unrendered ManyChat placeholder)."
    return FieldError(reported_name(field, body), message, status=status)


def reported_name(field: str, body: Mapping[str, Any]) -> str:
    """Name the nested field when ig_id was taken from manychat_data."""
    if field == "ig_id" and is_absent(field, body.get(field)):
        return "manychat_data.ig_id"
    return field


def is_absent(field: str, value: object, required: bool = False) -> bool:
    """Return True when a value stands for "not given": null, blank or a placeholder (but for
    a placeholder in a required identity field, which the converter refuses by name)."""
    if is_blank(value):
        return True
    return is_placeholder(_unprefixed(field, value)) and not (required and field in IDENTITY_FIELDS)


def _unprefixed(field: str, value: object) -> object:
    """Return a username without the '@'s and spaces flows type before it ("@{{username}}")."""
    if field == "username" and isinstance(value, str):
        return _USERNAME_PREFIX.sub("", value.strip())
    return value


# -- converters: each checks one value and returns it normalized, or raises ValidationError --


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _identity_text(value: object, type_message: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(type_message)
    if is_placeholder(value):
        raise ValidationError(PLACEHOLDER)
    return value.strip()


def _check_length(text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise ValidationError(f"must be at most {max_chars} characters.")
    return text


@accepts(
    {
        "type": "string",
        "pattern": "^[@\\s]*[A-Za-z0-9._]{1,30}\\s*$",
        "description": "Instagram username; leading '@'s, spaces and letter case are ignored.",
        "examples": ["john_doe"],
    }
)
def to_username(value: object) -> str:
    """Return the username trimmed, without its leading '@'s, lowercased."""
    name = _USERNAME_PREFIX.sub("", _identity_text(value, NOT_STRING))
    if is_placeholder(name):
        raise ValidationError(PLACEHOLDER)  # "@{{username}}" with the variable empty
    name = name.lower()
    if not _USERNAME.fullmatch(name):
        raise ValidationError(USERNAME_FORMAT)
    return name


@accepts(
    {
        "type": ["string", "integer"],
        "maxLength": MAX_MANYCHAT_ID_CHARS,
        "description": "ManyChat subscriber id, as a string or a number.",
        "examples": ["123456"],
    }
)
def to_manychat_id(value: object) -> str:
    """Return the subscriber id as a trimmed string; ManyChat may send it as a number."""
    if _is_integer(value):
        value = str(value)
    return _check_length(_identity_text(value, NOT_STRING_OR_INTEGER), MAX_MANYCHAT_ID_CHARS)


@accepts({"type": "string", "format": "uuid", "description": "A UUID, in any letter case."})
def to_uuid(value: object) -> str:
    """Return the UUID in lowercase canonical form."""
    if not isinstance(value, str) or not _UUID.fullmatch(value.strip()):
        raise ValidationError(NOT_UUID)
    return value.strip().lower()


@accepts(
    {
        "type": ["integer", "string"],
        "minimum": 0,
        "pattern": "^[0-9]{1,20}$",
        "description": "A non-negative integer, as a number or a string of digits.",
    }
)
def to_natural(value: object) -> int:
    """Return a non-negative integer given as a JSON number or a string of digits."""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**20:
        return value
    raise ValidationError(NOT_NATURAL)


@accepts(
    {
        "type": ["number", "string"],
        "pattern": "^-?[0-9]{1,20}$",
        "description": "A number, or an integer as a string of digits.",
    }
)
def to_number(value: object) -> int | float:
    """Return a JSON number as it is, or an integer ManyChat sent as a string of digits."""
    if isinstance(value, str) and _SIGNED_DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValidationError(NOT_NUMBER)


@accepts({"type": ["boolean", "string"], "description": 'true or false, or "true"/"false".'})
def to_flag(value: object) -> bool:
    """Return a boolean given as JSON true/false or the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValidationError(NOT_BOOLEAN)


@accepts(
    {
        "type": "string",
        "description": "ISO 8601 date or date and time from the year 1000 on; without an offset "
        "it is UTC, a date alone is midnight UTC.",
        "examples": ["2026-11-30T10:00:00.000Z"],
    }
)
def to_timestamp(value: object) -> str:
    """Return an ISO 8601 date or date-time in UTC as YYYY-MM-DDTHH:MM:SS.mmmZ.

    A date alone is that day at midnight; a time without an offset is UTC.
    """
    try:
        moment = datetime.fromisoformat(value.strip() if isinstance(value, str) else "")
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError(NOT_TIMESTAMP) from None
    # strftime writes year 999 as "999", which no ISO 8601 reader takes.
    if moment.year < MIN_YEAR:
        raise ValidationError(BEFORE_YEAR_1000)
    return format_timestamp(moment)


def format_timestamp(moment: datetime) -> str:
    """Return a UTC time from the year 1000 on as YYYY-MM-DDTHH:MM:SS.mmmZ."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@accepts({"type": "string", "format": "email", "maxLength": MAX_EMAIL_CHARS})
def to_email(value: object) -> str:
    """Return a trimmed, well-formed email address."""
    if not isinstance(value, str):
        raise ValidationError(NOT_EMAIL)
    return str(_EMAIL(_check_length(value.strip(), MAX_EMAIL_CHARS)))


@accepts({"type": "object"})
def to_object(value: object) -> dict[str, Any]:
    """Return a JSON object unchanged."""
    if not isinstance(value, dict):
        raise ValidationError(NOT_OBJECT)
    return value


def text(max_chars: int | None = None, *, strip: bool = False) -> Converter:
    """Return a converter for a string, of at most max_chars if given, trimmed only if asked."""

    def to_text(value: object) -> str:
        if not isinstance(value, str):
            raise ValidationError(NOT_STRING)
        checked = value.strip() if strip else value
        return checked if max_chars is None else _check_length(checked, max_chars)

    return accepts({"type": "string"} | ({"maxLength": max_chars} if max_chars else {}))(to_text)


def choice(*options: str) -> Converter:
    """Return a converter for one of options, compared trimmed and lowercased."""

    def to_choice(value: object) -> str:
        picked = value.strip().lower() if isinstance(value, str) else ""
        if picked not in options:
            raise ValidationError(f"must be one of: {', '.join(options)}.")
        return picked

    described = {"type": "string", "enum": list(options), "description": "Any letter case."}
    return accepts(described)(to_choice)


def tag_list(*, required: bool) -> Converter:
    """Return a converter for a list of trimmed tag names, without blanks and placeholders."""

    def to_tags(value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValidationError(NOT_TAG_LIST)
        # An unset ManyChat variable in the list would otherwise become a tag named "{{...}}".
        names = [item.strip() for item in value if not is_absent("tags", item)]
        if required and value and not names:
            # Sending [] instead would change the request: with mode "set" it removes every tag.
            raise ValidationError(NO_TAG_NAMES)
        return names

    return accepts({"type": "array", "items": {"type": "string"}})(to_tags)


# -- schemas --


class Checked(fields.Field[Any]):
    """A body field checked and normalized by one converter function."""

    def __init__(self, convert: Converter, **kwargs: Any) -> None:
        super().__init__(error_messages={"required": REQUIRED, "null": REQUIRED}, **kwargs)
        self.convert = convert

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        return self.convert(value)


class IngestSchema(Schema):
    """Common behaviour of the ingest bodies; unknown fields pass through unchanged."""

    class Meta:
        unknown = INCLUDE

    # Two fields of which the body must carry at least one; the error names the second.
    either: ClassVar[tuple[str, str] | None] = None

    @pre_load
    def prepare(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Drop known fields that are null, blank or placeholders, then check identity."""
        kept = {
            k: v
            for k, v in data.items()
            if k not in self.fields or not is_absent(k, v, self.fields[k].required)
        }
        self.complete(kept)
        self.require_either(kept)
        return kept

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the body as load() would, or raise the ValidationError it would raise.

        The same steps in the same order (prepare, each field's converter in declared order,
        check_body once every field passed) without load()'s general machinery (many, partial,
        data keys, hooks looked up by tag), which cost ingest ~15 us a body. load() stays the
        reference: tests/unit/test_schema_properties.py checks that both agree.
        """
        kept = self.prepare(data)
        loaded: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, field in self.fields.items():
            if name in kept:
                try:
                    loaded[name] = cast(Checked, field).convert(kept[name])
                except ValidationError as error:
                    errors[name] = error.messages
            elif field.required:
                errors[name] = [REQUIRED]
        if errors:
            raise ValidationError(errors)
        loaded.update((name, value) for name, value in kept.items() if name not in self.fields)
        self.check_body(loaded)
        return loaded

    @validates_schema
    def check_fields_together(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Run check_body as load()'s schema validator (after every field passed)."""
        self.check_body(data)

    def check_body(self, data: dict[str, Any]) -> None:
        """Check rules that span fields; none by default."""

    def complete(self, data: dict[str, Any]) -> None:
        """Fill fields from elsewhere in the body; nothing by default."""

    def require_either(self, data: Mapping[str, Any]) -> None:
        """Raise unless the body carries one of the two identity fields in `either`."""
        if self.either and not any(name in data for name in self.either):
            first, second = self.either
            raise ValidationError(f"is required when '{first}' is not given.", second)


class DefaultReplySchema(IngestSchema):
    """POST /contact/default-reply."""

    username = Checked(to_username, required=True)
    manychat_id = Checked(to_manychat_id, required=True)
    organization_id = Checked(to_uuid)
    # Not required here: a missing or empty message is skipped as outreach, not rejected.
    message_content = Checked(text())
    message_date = Checked(to_timestamp)
    page_name = Checked(text())
    ig_id = Checked(to_number)
    manychat_data = Checked(to_object)

    def complete(self, data: dict[str, Any]) -> None:
        """Take ig_id from manychat_data when the top level does not carry it."""
        nested = data.get("manychat_data")
        if "ig_id" in data or not isinstance(nested, dict):
            return
        if not is_absent("ig_id", nested.get("ig_id")):
            data["ig_id"] = nested["ig_id"]


INBOUND_FIELDS = ("last_response_at", "last_message_content")
OUTREACH_FIELDS = ("outreach_reason", "outreach_text")


class CreateContactSchema(IngestSchema):
    """POST /organization/create-contact."""

    username = Checked(to_username, required=True)
    manychat_id = Checked(to_manychat_id)
    organization_id = Checked(to_uuid)
    had_outreach = Checked(to_flag, required=True)
    last_response_at = Checked(to_timestamp)
    last_message_content = Checked(text())
    outreach_reason = Checked(text())
    outreach_text = Checked(text())
    outreach_reason_label = Checked(text())
    outreach_message_label = Checked(text())
    email = Checked(to_email)
    ig_id = Checked(to_number)
    activate_followups = Checked(to_flag)
    note = Checked(text(MAX_NOTE_CHARS))
    tags = Checked(tag_list(required=False))
    tag_color = Checked(text(strip=True))

    def check_body(self, data: dict[str, Any]) -> None:
        """Require the inbound or the outreach pair, and forbid the other, per had_outreach."""
        outreach: bool = data["had_outreach"]
        required, forbidden = (
            (OUTREACH_FIELDS, INBOUND_FIELDS) if outreach else (INBOUND_FIELDS, OUTREACH_FIELDS)
        )
        mode = "true" if outreach else "false"
        # A conflict is reported first: it usually means had_outreach itself is wrong.
        for name in forbidden:
            if name in data:
                raise ValidationError(f"cannot be set when had_outreach is {mode}.", name)
        for name in required:
            if name not in data:
                raise ValidationError(f"is required when had_outreach is {mode}.", name)


class UpdateTagsSchema(IngestSchema):
    """POST /contact/update-tags-external."""

    either = ("contact_id", "username")

    contact_id = Checked(to_uuid)
    username = Checked(to_username)
    organization_id = Checked(to_uuid)
    mode = Checked(choice("set", "add", "remove"), required=True)
    tag_names = Checked(tag_list(required=True), required=True)
    tag_color = Checked(text(strip=True))
    email = Checked(to_email)


STATUS_FIELDS = ("lead_status", "lead_status_id", "pipeline_stage")


class ContactStatusSchema(IngestSchema):
    """PATCH /contact/contact-status."""

    either = ("contact_id", "manychat_id")

    contact_id = Checked(to_uuid)
    manychat_id = Checked(to_manychat_id)
    organization_id = Checked(to_uuid)
    lead_status = Checked(choice("open", "won", "lost", "abandoned"))
    lead_status_id = Checked(to_number)
    pipeline_stage = Checked(text())

    def check_body(self, data: dict[str, Any]) -> None:
        """Require at least one status field, and only one way of naming the status."""
        if "lead_status" in data and "lead_status_id" in data:
            raise ValidationError(
                "cannot be set with lead_status: use lead_status or lead_status_id, not both.",
                "lead_status_id",
            )
        if not any(name in data for name in STATUS_FIELDS):
            raise ValidationError(
                "is required: send at least one of lead_status, lead_status_id or pipeline_stage.",
                "lead_status",
            )


SCHEMAS: dict[str, IngestSchema] = {
    "default-reply": DefaultReplySchema(),
    "create-contact": CreateContactSchema(),
    "update-tags": UpdateTagsSchema(),
    "contact-status": ContactStatusSchema(),
}
