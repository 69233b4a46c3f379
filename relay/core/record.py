"""The record kept in Redis of a delivery: the Delivery under short keys (format 2), without
what its key or its organization already say.

Every queued delivery pays for its record until it is delivered, so its keys are short and it
leaves out its id (the record's key holds it) and the payload's organization_id (the record's
organization id, put back in its place on reading). A delivered message keeps a summary
instead (format 1, relay/core/summary.py). record.lua reads the same keys.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from relay.core.delivery import Attempt, Delivery
from relay.core.schemas import format_timestamp
from relay.core.summary import from_summary

SUMMARY_FORMAT, FORMAT = 1, 2
SHORT_KEYS = {
    "org_id": "o",
    "endpoint": "e",
    "payload": "b",  # the body sent on to DmTracker
    "received_at": "r",
    "request_id": "q",
    "idempotency_key": "i",
    "contact_keys": "k",  # added by accept.lua, which names it too
    "state": "s",
    "attempts": "t",
    "attempts_used": "a",
    "next_attempt_at": "w",
    "reason": "y",
    "finished_at": "d",
    "replays": "p",
    "holds_rate_slot": "g",
    "attempts_omitted": "z",
    "throttled_since": "j",
    "received_body": "h",
}
LONG_NAMES = {key: name for name, key in SHORT_KEYS.items()}
ORG_FIELD = "organization_id"
ORG_AT = "x"  # where the payload's organization_id goes back, when it was left out
DATE_FIELD = "message_date"
DATE_AT = "n"  # where the payload's message_date goes back, when it was the reception time
PLACES = {ORG_FIELD: ORG_AT, DATE_FIELD: DATE_AT}


def record_json(delivery: Delivery) -> str:
    """Return the compact JSON stored for a delivery on its way."""
    stored = delivery.stored_fields()
    del stored["id"]  # the record's key names it
    data: dict[str, Any] = {"v": FORMAT}
    data |= {SHORT_KEYS[name]: value for name, value in stored.items()}
    received = data["r"] = shown_millisecond(delivery.received_at)
    if data.get("k") == default_chains(delivery.payload):
        del data["k"]
    # What the record's own fields say is left out of the payload, and put back in its place
    # on reading: the organization, and a message_date ingest gave as the reception time.
    derived = {ORG_FIELD: delivery.org_id, DATE_FIELD: reception_timestamp(received)}
    payload = delivery.payload
    left_out = [name for name, value in derived.items() if payload.get(name) == value]
    if left_out:
        data["b"] = {name: value for name, value in payload.items() if name not in left_out}
        for name in left_out:
            data[PLACES[name]] = list(payload).index(name)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def default_chains(payload: dict[str, Any]) -> list[str]:
    """Return the chains a record names when it names none: its username's, which accept.lua
    always joins (a record of one contact known by username alone stores no list)."""
    username = payload.get("username")
    return [f"u:{username}"] if isinstance(username, str) and username else []


def reception_timestamp(received_at: float) -> str:
    """Return the message_date ingest gives a reply received at that time (epoch seconds)."""
    return format_timestamp(datetime.fromtimestamp(received_at, UTC))


def shown_millisecond(epoch: float) -> float:
    """Return epoch seconds cut to the millisecond that iso_time shows for them."""
    # Shown times are cut, not rounded, to the millisecond (after datetime rounds to the
    # microsecond): cut the same way, a time filters and shows as it did with all its digits.
    return math.floor(epoch * 1000 + 0.0005) / 1000


def decode_record(delivery_id: str, raw: str) -> Delivery:
    """Return the Delivery a stored record holds: a compact record or a summary."""
    data = json.loads(raw)
    if data["v"] == SUMMARY_FORMAT:
        return from_summary(delivery_id, data)
    return from_record(delivery_id, data)


def from_record(delivery_id: str, data: dict[str, Any]) -> Delivery:
    """Rebuild a Delivery from its compact record, its payload as it was accepted."""
    fields = {LONG_NAMES[key]: value for key, value in data.items() if key in LONG_NAMES}
    fields["attempts"] = [Attempt(**attempt) for attempt in fields.get("attempts", [])]
    derived = {ORG_FIELD: fields["org_id"], DATE_FIELD: reception_timestamp(data["r"])}
    places = sorted((data[key], name) for name, key in PLACES.items() if key in data)
    if places:
        items = list(fields["payload"].items())
        for place, name in places:  # in ascending place, so each lands where it was
            items.insert(place, (name, derived[name]))
        fields["payload"] = dict(items)
    if "k" not in data:
        fields["contact_keys"] = default_chains(fields["payload"])
    return Delivery(id=delivery_id, **fields)
