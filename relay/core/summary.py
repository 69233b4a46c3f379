"""The summary kept of a delivered message (only of a delivered one: its state goes without
saying): what anyone asks about it later, in a few hundred bytes of Redis. Full request and
response bodies are kept only for dead letters, the latest failed attempts and a sample of
deliveries.

Its keys are short on purpose: each is paid for in every record kept for the whole retention.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.policy import Verdict

# The contact's names, so a delivered message is still found by username or manychat_id.
CONTACT_FIELDS = {"username": "u", "manychat_id": "m", "contact_id": "c"}
# Fields of DmTracker's answer that ManyChat flows map ($.data.contact_type, $.data.id): a
# duplicate of a delivered message is answered with them for as long as the summary is kept.
ROUTING_FIELDS = {
    "contact_type": "ct",
    "outreach_reason": "or",
    "outreach_message": "om",
    "id": "ci",
    "pipeline_stage": "ps",
}
ROUTING_VALUE_MAX_CHARS = 64
MESSAGE_KEY = "mg"  # DmTracker's top-level `message` ("Contact created successfully")


class DeliverySummary(Delivery):
    """A delivered message rebuilt from its summary: its request and response bodies are gone."""

    is_summary: ClassVar[bool] = True


def summary_json(delivery: Delivery) -> str:
    """Return the compact JSON kept for a delivered message."""
    last = delivery.last_attempt
    received = delivery.received_at
    data: dict[str, Any] = {
        "v": 1,
        "o": delivery.org_id,
        "e": delivery.endpoint,
        "r": round(received, 3),
        "f": round((delivery.finished_at or received) - received, 3),
        "n": delivery.attempt_count,
    }
    optional: dict[str, float | None] = {"a": delivery.attempts_used, "p": delivery.replays}
    if last is not None:
        optional |= {"h": last.status, "l": round(last.latency_ms)}
    data |= {key: value for key, value in optional.items() if value}
    data |= _picked(delivery.payload, CONTACT_FIELDS)
    answer = _answer(last.body if last else "")
    data |= _picked(_data_of(answer), ROUTING_FIELDS, ROUTING_VALUE_MAX_CHARS)
    data |= _picked(answer, {"message": MESSAGE_KEY}, ROUTING_VALUE_MAX_CHARS)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def from_summary(delivery_id: str, data: dict[str, Any]) -> Delivery:
    """Rebuild a Delivery from a summary: the contact's names, the final attempt, the counts."""
    received = float(data["r"])
    finished = received + float(data.get("f", 0))
    routing = {name: data[key] for name, key in ROUTING_FIELDS.items() if key in data}
    body = _answer_body(routing, data.get(MESSAGE_KEY))
    final = Attempt(finished, data.get("h"), float(data.get("l", 0.0)), Verdict.DELIVERED, body)
    count = int(data.get("n", 0))
    attempts = [final] if count else []
    return DeliverySummary(
        id=delivery_id,
        org_id=data["o"],
        endpoint=data["e"],
        payload={name: data[key] for name, key in CONTACT_FIELDS.items() if key in data},
        received_at=received,
        state=DeliveryState.DELIVERED,
        attempts=attempts,
        attempts_used=int(data.get("a", 0)),
        finished_at=finished,
        replays=int(data.get("p", 0)),
        attempts_omitted=count - len(attempts),
    )


def _answer_body(routing: dict[str, Any], message: str | None) -> str:
    """Return the part of DmTracker's answer a summary keeps, in DmTracker's shape, or ''."""
    if not routing and not message:
        return ""
    # Every success DmTracker documents says "status": "success"; a summary is of a success.
    kept: dict[str, Any] = {"status": "success"}
    if message:
        kept["message"] = message
    return json.dumps({**kept, "data": routing}, ensure_ascii=False)


def _answer(body: str) -> dict[str, Any]:
    """Return DmTracker's JSON answer as an object, or {}."""
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _data_of(answer: dict[str, Any]) -> dict[str, Any]:
    """Return the `data` object of DmTracker's answer, or {}."""
    data = answer.get("data")
    return data if isinstance(data, dict) else {}


def _picked(
    source: dict[str, Any], fields: dict[str, str], max_chars: int | None = None
) -> dict[str, Any]:
    """Return the given fields of `source` that hold a value, under their short keys."""
    picked = {}
    for name, key in fields.items():
        value = source.get(name)
        if isinstance(value, str):
            value = value[:max_chars]
        if value not in (None, ""):
            picked[key] = value
    return picked
