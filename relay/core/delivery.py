"""The Delivery: one accepted request on its way to DmTracker, JSON-serialisable."""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

from relay.core import defaults


class DeliveryState(StrEnum):
    """Where a delivery stands, in the order it usually passes through them."""

    # The values are stored in Redis and shown by the APIs: never change one.
    QUEUED = "queued"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    DEAD = "dead"
    # Kept at the door, never sent: the body breaks a rule of DmTracker's (relay/core/hold.py).
    HELD = "held"


STATES = tuple(DeliveryState)
# What the dead-letter registry lists: given up on, or held at the door.
DEAD_STATES = (DeliveryState.DEAD, DeliveryState.HELD)


@dataclass
class Attempt:
    """One call to DmTracker and what came of it."""

    at: float
    status: int | None
    latency_ms: float
    outcome: str
    body: str = ""
    error: str | None = None


@dataclass
class Delivery:
    """A message to deliver: never holds the organization's token."""

    # True for a delivered message rebuilt from its summary (relay/core/summary.py).
    is_summary: ClassVar[bool] = False

    id: str
    org_id: str
    endpoint: str
    payload: dict[str, Any]
    received_at: float
    request_id: str = ""
    idempotency_key: str = ""
    contact_keys: list[str] = field(default_factory=list)
    state: str = DeliveryState.QUEUED
    attempts: list[Attempt] = field(default_factory=list)
    attempts_used: int = 0
    next_attempt_at: float | None = None
    reason: str | None = None
    finished_at: float | None = None
    replays: int = 0
    holds_rate_slot: bool = False
    attempts_omitted: int = 0
    throttled_since: float | None = None  # the first 429, for the throttle budget
    received_body: str = ""  # a held request's body as it came, byte for byte (as text)

    @classmethod
    def new(
        cls,
        org_id: str,
        endpoint: str,
        payload: dict[str, Any],
        received_at: float | None = None,
        **extra: Any,
    ) -> Delivery:
        """Create a fresh delivery with a new id, received now unless told when."""
        return cls(
            id=new_delivery_id(),
            org_id=org_id,
            endpoint=endpoint,
            payload=payload,
            received_at=time.time() if received_at is None else received_at,
            **extra,
        )

    def stored_fields(self) -> dict[str, Any]:
        """Return the fields worth storing, as plain values: those that differ from the default."""
        # Most fields of a queued delivery hold their defaults: storing them would cost
        # about 200 bytes of Redis memory per delivery for nothing.
        # (Not dataclasses.asdict: its deep copy of the payload is most of the cost of accepting.)
        data = {
            name: value
            for name, value in vars(self).items()
            if name in ALWAYS_STORED or value != DEFAULTS[name]
        }
        if self.attempts:
            data["attempts"] = [asdict(attempt) for attempt in self.attempts]
        return data

    def to_json(self) -> str:
        """Serialise to JSON that holds the whole delivery (the spool's form)."""
        # Redis keeps the shorter record of relay/core/record.py instead.
        return json.dumps(self.stored_fields(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Delivery:
        """Rebuild a delivery from its JSON form."""
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        """Rebuild a delivery from its decoded JSON form."""
        data["attempts"] = [Attempt(**attempt) for attempt in data.get("attempts", [])]
        return cls(**data)

    def add_attempt(self, attempt: Attempt) -> None:
        """Log an attempt; past the limit, drop the oldest but the first, so the log stays small."""
        # Hours of 429s (which use no attempt) would otherwise grow a record to megabytes.
        self.attempts.append(attempt)
        if len(self.attempts) > defaults.ATTEMPTS_KEPT:
            del self.attempts[1]
            self.attempts_omitted += 1

    @property
    def attempt_count(self) -> int:
        """Return how many calls to DmTracker were made, logged or omitted."""
        return self.attempts_omitted + len(self.attempts)

    @property
    def last_attempt(self) -> Attempt | None:
        """Return the most recent attempt, if any."""
        return self.attempts[-1] if self.attempts else None


BASE62_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order
ID_TIME_CHARS = 7  # milliseconds since 1970, in base 62: enough until the year 2081
ID_RANDOM_CHARS = 8  # 47 random bits: ids made in the same millisecond do not collide
ID_RANDOM_SPACE = 62**ID_RANDOM_CHARS
ALWAYS_STORED = frozenset({"id", "org_id", "endpoint", "payload", "received_at"})
DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default
    for f in fields(Delivery)
    if f.name not in ALWAYS_STORED
}


def new_delivery_id() -> str:
    """Return a short, sortable, URL- and RQ-safe delivery id."""
    # Time first so ids sort by acceptance; RQ allows only [A-Za-z0-9_-] in job ids. The id
    # sits in about seven places in Redis for every queued delivery, so each character counts.
    stamp = base62(time.time_ns() // 1_000_000, ID_TIME_CHARS)
    return f"dlv_{stamp}{base62(secrets.randbelow(ID_RANDOM_SPACE), ID_RANDOM_CHARS)}"


def base62(number: int, width: int) -> str:
    """Return a number in `width` base-62 digits, which sort as the numbers do."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62_DIGITS[digit])
    return "".join(reversed(digits))
