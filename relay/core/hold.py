"""Held requests: what DmTracker's documentation refuses is kept at the door, never refused.

ManyChat never retries, so a refusal loses the lead. A body that breaks one of DmTracker's
rules (or that is not JSON, or misses a required field) is answered 200 "held" with the rule
in DmTracker's own words, stored as a dead letter in state "held", and never sent. An operator
edits it and replays it; both check the body again exactly as ingest does.
"""

from __future__ import annotations

from typing import Any

from relay.core.delivery import Delivery, DeliveryState
from relay.core.errors import DmRelayError, FieldError
from relay.core.record import reception_timestamp
from relay.core.schemas import validate

# DmTracker's words for each refusal, quoted from its API Overview ("status codes") and each
# endpoint's "Error Codes" table in the Endpoints Reference.
MALFORMED = "Bad Request — Missing required fields, invalid field values, or malformed JSON"
SEMANTIC = (
    "Unprocessable Entity — Request is well-formed but contains semantic errors"
    " (e.g., invalid username format)"
)
ENDPOINT_400 = {
    "default-reply": (
        "Missing required fields (manychat_id, username, organization_id or page_name)"
    ),
    "create-contact": "Missing/invalid required fields, validation errors, type mismatch",
    "contact-status": "Missing required fields or invalid status/stage value",
    # The update-tags section lists no error codes: the Overview's Bad Request applies.
    "update-tags": MALFORMED,
}


class Unreadable(DmRelayError):
    """A body the relay can keep only as text: not JSON, too deep, or not UTF-8-storable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = 400


def rule_of(endpoint: str, error: FieldError | Unreadable) -> str:
    """Return DmTracker's words for the rule a held body breaks."""
    if isinstance(error, Unreadable):
        return MALFORMED
    return SEMANTIC if error.status == 422 else ENDPOINT_400.get(endpoint, MALFORMED)


def held_delivery(delivery: Delivery, reason: str, received_body: str, held_at: float) -> Delivery:
    """Mark a new delivery held, with why and its body as it came."""
    delivery.state = DeliveryState.HELD
    delivery.reason = reason
    delivery.received_body = received_body
    delivery.finished_at = held_at
    return delivery


def ready_to_send(delivery: Delivery) -> None:
    """Check a held or edited body as ingest would and make it the one to send, or raise
    FieldError naming its first broken rule."""
    validated = validate(delivery.endpoint, delivery.payload)
    body = validated.body
    named = body.get("organization_id")
    if named is not None and named != delivery.org_id:
        raise FieldError("organization_id", "must be the delivery's own organization.")
    if validated.skip_reason:
        raise FieldError("message_content", f"carries no reply to send ({validated.skip_reason}).")
    body = {**body, "organization_id": delivery.org_id}
    delivery.payload = dated(delivery.endpoint, body, delivery.received_at)
    delivery.contact_keys = chains_of(body)


def dated(endpoint: str, body: dict[str, Any], received_at: float) -> dict[str, Any]:
    """Give a reply without message_date the time it reached the relay, not of its delivery."""
    # DmTracker takes "now" when it is missing, which after a retry could be hours late. The
    # stored record leaves this date out and puts it back from its reception time.
    if endpoint != "default-reply" or body.get("message_date"):
        return body
    return {**body, "message_date": reception_timestamp(received_at)}


def chains_of(body: dict[str, Any]) -> list[str]:
    """Return the contact chains a body waits in, named as accept.lua names them."""
    chains = []
    if body.get("username"):
        chains.append(f"u:{body['username']}")
    elif body.get("manychat_id"):
        chains.append(f"m:{body['manychat_id']}")
    if body.get("contact_id"):
        chains.append(f"c:{body['contact_id']}")
    return chains
