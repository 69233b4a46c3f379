"""What the ManyChat-facing, status and operations routes answer, as marshmallow schemas.

These routes answer in DmTracker's shape (snake_case, `{"error", "message"}` errors), not in
the admin API's conventions; the schemas only describe them. The fuzz tests check every
answer against them, so a route that drifts from its description fails a test.
"""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import INCLUDE, Schema, fields
from marshmallow.validate import OneOf

from relay.core.delivery import STATES
from relay.core.endpoints import ENDPOINTS
from relay.core.manychat import CONTACT_KEYS


class Answer(Schema):
    """An answer: every declared field is sent, except those named in OPTIONAL."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def on_bind_field(self, field_name: str, field_obj: fields.Field[Any]) -> None:
        """Describe every field as always present, unless the answer says otherwise."""
        field_obj.required = field_name not in self.OPTIONAL


class DmTrackerError(Answer):
    """An error in DmTracker's own shape, as ManyChat's response mapping expects it."""

    error = fields.String(metadata={"examples": ["Bad Request"]})
    message = fields.String(metadata={"examples": ["The 'username' field is required."]})


class DmTrackerRateLimit(DmTrackerError):
    """A 429 worded as DmTracker words its own, with the seconds to wait."""

    retry_after = fields.Integer(metadata={"examples": [3]})


# -- ingest -------------------------------------------------------------------------------------
class RelayNote(Answer):
    """What the relay adds to every answer of an authenticated request, so one JSONPath
    finds it."""

    OPTIONAL = frozenset({"status"})

    delivery_id = fields.String(
        allow_none=True,
        metadata={
            "examples": ["dlv_187c0ffee0000001a2b3c4d5e6f7"],
            "description": "null for a skipped message, which is not stored.",
        },
    )
    state = fields.String(validate=OneOf([*STATES, "skipped", "spooled"]))
    status = fields.Integer(
        metadata={"description": "DmTracker's HTTP status, when it answered within the wait."}
    )
    duplicate = fields.Boolean(
        metadata={"description": "True when this repeats a message already stored."}
    )


class QueuedData(Answer):
    """The delivery the message became, and where it stands when the answer goes."""

    OPTIONAL = frozenset({"reason"})

    delivery_id = fields.String(metadata={"examples": ["dlv_187c0ffee0000001a2b3c4d5e6f7"]})
    duplicate = fields.Boolean(
        metadata={"description": "True when this repeats a message already stored."}
    )
    state = fields.String(validate=OneOf(STATES))
    reason = fields.String(metadata={"description": "Why DmTracker refused it (state dead)."})


class Queued(Answer):
    """The message is stored and will be delivered (or dead-lettered), whatever fails."""

    status = fields.String(validate=OneOf(["queued"]))
    message = fields.String()
    data = fields.Nested(QueuedData)
    relay = fields.Nested(RelayNote)


class SpooledData(Answer):
    """The delivery id the message will be queued under once Redis takes it."""

    delivery_id = fields.String(metadata={"examples": ["dlv_187c0ffee0000001a2b3c4d5e6f7"]})


class Spooled(Answer):
    """Redis could not take the message: it is kept on the web machine's disk until it can."""

    status = fields.String(validate=OneOf(["spooled"]))
    message = fields.String()
    data = fields.Nested(SpooledData)
    relay = fields.Nested(RelayNote)


class HeldData(Answer):
    """The held delivery, and the relay's own account of the rule it breaks."""

    delivery_id = fields.String(metadata={"examples": ["dlv_187c0ffee0000001a2b3c4d5e6f7"]})
    state = fields.String(validate=OneOf(["held"]))
    reason = fields.String(metadata={"examples": ["The 'username' field is required."]})


class Held(Answer):
    """The body breaks one of DmTracker's rules: kept in the dead letters, never sent, until an
    operator fixes and replays it. `message` is the rule in DmTracker's words."""

    status = fields.String(validate=OneOf(["held"]))
    message = fields.String(
        metadata={"examples": ["Missing/invalid required fields, validation errors, type mismatch"]}
    )
    data = fields.Nested(HeldData)
    relay = fields.Nested(RelayNote)


class Delivered(Answer):
    """DmTracker's own answer, delivered within the wait, with the relay's note beside it."""

    class Meta:
        unknown = INCLUDE  # described as additionalProperties: DmTracker's fields pass through

    relay = fields.Nested(RelayNote)


class SkippedData(Answer):
    """Why the message was not forwarded."""

    reason = fields.String()


class Skipped(Answer):
    """The message carries nothing to forward (an unrendered placeholder, an empty reply)."""

    status = fields.String(validate=OneOf(["skipped"]))
    message = fields.String()
    data = fields.Nested(SkippedData)
    relay = fields.Nested(RelayNote)


# -- the integrator's delivery status -----------------------------------------------------------
class StatusResponse(Answer):
    """DmTracker's answer to the latest attempt: a JSON body as JSON, anything else as text."""

    status = fields.Integer(allow_none=True)
    body = fields.Raw(allow_none=True)


class DeliveryStatus(Answer):
    """Where one of the organization's deliveries stands."""

    delivery_id = fields.String()
    endpoint = fields.String(validate=OneOf([e.path for e in ENDPOINTS.values()]))
    state = fields.String(validate=OneOf(STATES))
    received_at = fields.String(metadata={"format": "date-time"})
    attempts = fields.Integer()
    next_attempt_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    reason = fields.String(allow_none=True)
    response = fields.Nested(StatusResponse, allow_none=True)


class DeliveryStatusAnswer(Answer):
    """The delivery status, in DmTracker's success shape."""

    status = fields.String(validate=OneOf(["success"]))
    data = fields.Nested(DeliveryStatus)


# -- operations ---------------------------------------------------------------------------------
class Health(Answer):
    """The process is up."""

    status = fields.String(validate=OneOf(["ok"]))


class Readiness(Answer):
    """Whether Redis takes writes and nothing waits in the spool; why not, when not."""

    OPTIONAL = frozenset({"reason"})

    status = fields.String(validate=OneOf(["ready", "unavailable"]))
    redis = fields.String(validate=OneOf(["ok", "unavailable"]))
    reason = fields.String(metadata={"examples": ["spooling: 12 accepted requests wait for Redis"]})


# -- ManyChat's own shape -------------------------------------------------------------------------
class ManyChatBody(Schema):
    """A body in ManyChat's shape: fields beyond those described are read as the route says."""

    class Meta:
        unknown = INCLUDE


CONTACT_FIELDS: dict[str, fields.Field[Any]] = {
    "id": fields.Raw(
        metadata={"type": ["string", "integer"], "description": "The subscriber: manychat_id."}
    ),
    "ig_username": fields.String(
        allow_none=True, metadata={"description": "The Instagram username: username."}
    ),
    "ig_id": fields.Raw(metadata={"type": ["string", "integer", "null"]}),
    "last_input_text": fields.String(
        allow_none=True, metadata={"description": "message_content, last_message_content."}
    ),
    "last_interaction": fields.String(
        allow_none=True, metadata={"description": "last_response_at of an inbound contact."}
    ),
}
NESTED_CONTACT = {
    key: fields.Dict(metadata={"description": "The contact object, when nested under this key."})
    for key in CONTACT_KEYS
}
FullContactData = ManyChatBody.from_dict(
    {**CONTACT_FIELDS, **NESTED_CONTACT}, name="FullContactData"
)
