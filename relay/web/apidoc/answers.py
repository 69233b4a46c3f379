"""What the ManyChat-facing, status and operations routes answer, as marshmallow schemas.

These routes answer in DmTracker's shape (snake_case, `{"error", "message"}` errors), not in
the admin API's conventions; the schemas only describe them. The fuzz tests check every
answer against them, so a route that drifts from its description fails a test.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from relay.core.delivery import STATES
from relay.core.endpoints import ENDPOINTS


class Answer(Schema):
    """An answer: every declared field is always sent."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field[Any]) -> None:
        """Describe every field as always present."""
        field_obj.required = True


class DmTrackerError(Answer):
    """An error in DmTracker's own shape, as ManyChat's response mapping expects it."""

    error = fields.String(metadata={"examples": ["Bad Request"]})
    message = fields.String(metadata={"examples": ["The 'username' field is required."]})


# -- ingest -------------------------------------------------------------------------------------
class QueuedData(Answer):
    """The delivery the message became."""

    delivery_id = fields.String(metadata={"examples": ["dlv_187c0ffee0000001a2b3c4d5e6f7"]})
    duplicate = fields.Boolean(
        metadata={"description": "True when this repeats a message already queued."}
    )


class Queued(Answer):
    """The message is stored and will be delivered (or dead-lettered), whatever fails."""

    status = fields.String(validate=OneOf(["queued"]))
    message = fields.String()
    data = fields.Nested(QueuedData)


class SkippedData(Answer):
    """Why the message was not forwarded."""

    reason = fields.String()


class Skipped(Answer):
    """The message carries nothing to forward (an unrendered placeholder, an empty reply)."""

    status = fields.String(validate=OneOf(["skipped"]))
    message = fields.String()
    data = fields.Nested(SkippedData)


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
    """Whether Redis answers."""

    status = fields.String(validate=OneOf(["ready", "unavailable"]))
    redis = fields.String(validate=OneOf(["ok", "unreachable"]))
