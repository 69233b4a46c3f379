"""DmTracker's answer to a delivery, handed from the worker to the web requests waiting for it.

The worker publishes the outcome of a finished delivery under one key per delivery, a list
holding one element, with a short TTL. A web request waits on that key with
`BLMOVE key key LEFT LEFT timeout`: it blocks in Redis (no polling) until the element exists,
and moving the element onto the same list reads it without taking it, so every request
waiting for the same delivery wakes, and a repeat that comes later finds it at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from relay.core import defaults
from relay.core.delivery import Delivery, DeliveryState
from relay.storage.keys import Keys

FINISHED = (DeliveryState.DELIVERED, DeliveryState.DEAD)


@dataclass(frozen=True)
class Outcome:
    """Where a delivery stands, and DmTracker's last answer to it."""

    state: str
    status: int | None = None
    body: str = ""
    reason: str | None = None

    @property
    def finished(self) -> bool:
        """Return True once the delivery is delivered or dead: its answer will not change."""
        return self.state in FINISHED

    def to_json(self) -> str:
        """Serialise to compact JSON."""
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Outcome:
        """Rebuild an outcome from its JSON form."""
        return cls(**json.loads(raw))


def outcome_of(delivery: Delivery, body: str | None = None) -> Outcome:
    """Return a delivery's outcome; the body defaults to the last attempt's (cut, redacted)."""
    last = delivery.last_attempt
    if body is None:
        body = last.body if last else ""
    return Outcome(delivery.state, last.status if last else None, body, delivery.reason)


class Answers:
    """Publish finished deliveries' outcomes and wait for them, one key per delivery."""

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys,
        ttl_seconds: int = defaults.ANSWER_TTL_SECONDS,
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.ttl_seconds = ttl_seconds

    def publish(self, outcome: Outcome, delivery_id: str) -> None:
        """Make a finished delivery's outcome the one element of its key; wake its waiters."""
        key = self.keys.answer(delivery_id)
        with self.redis.pipeline() as pipe:
            pipe.delete(key)  # a replayed delivery finishes again: only its latest fate counts
            pipe.lpush(key, outcome.to_json())
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()

    def wait(self, delivery_id: str, timeout_seconds: float) -> Outcome | None:
        """Block until the delivery's outcome is published, or return None after the timeout."""
        if timeout_seconds <= 0:
            return None  # BLMOVE's timeout 0 means "forever"
        key = self.keys.answer(delivery_id)
        # Redis takes a fractional timeout; redis-py's annotation says int.
        raw = self.redis.blmove(key, key, timeout_seconds, "LEFT", "LEFT")  # type: ignore[arg-type]
        return Outcome.from_json(raw) if raw else None

    def peek(self, delivery_id: str) -> Outcome | None:
        """Return the published outcome without waiting, if it is still kept."""
        raw = self.redis.lindex(self.keys.answer(delivery_id), 0)
        return Outcome.from_json(raw) if raw else None
