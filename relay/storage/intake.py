"""Accept a request: deduplicate, store the delivery, chain it, and enqueue it, atomically."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from relay.core.delivery import Delivery
from relay.core.errors import ServiceUnavailable
from relay.storage.codec import text
from relay.storage.keys import Keys
from relay.storage.ordering import Ordering
from relay.storage.queue import Queues
from relay.storage.stats import Stats

IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600
MAX_ACCEPT_TRIES = 5


@dataclass(frozen=True)
class Accepted:
    """The outcome of accepting a request: its delivery id, and whether it was a repeat."""

    delivery_id: str
    duplicate: bool


def fingerprint(org_id: str, endpoint: str, body: str) -> str:
    """Return the dedup fingerprint of a normalized request."""
    return hashlib.sha256(f"{org_id}\n{endpoint}\n{body}".encode()).hexdigest()


class Intake:
    """Store and enqueue new deliveries once each."""

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys,
        ordering: Ordering,
        queues: Queues,
        stats: Stats,
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.ordering = ordering
        self.queues = queues
        self.stats = stats

    def accept(
        self, delivery: Delivery, fingerprint: str, *, window_seconds: int, max_pending: int
    ) -> Accepted:
        """Store and enqueue a delivery once; a repeat within the window returns the first id."""
        dedup_keys = self._dedup_keys(delivery, fingerprint, window_seconds)
        try:
            self.queues.queue(delivery.org_id)
            for _ in range(MAX_ACCEPT_TRIES):
                with self.redis.pipeline() as pipe:
                    try:
                        return self._accept_once(pipe, delivery, dedup_keys, max_pending)
                    except redis.WatchError:
                        continue  # a concurrent identical request won: look again
        except redis.RedisError as error:
            raise ServiceUnavailable("The relay cannot store messages right now.") from error
        raise ServiceUnavailable("The relay is too busy to store this message; try again.")

    def _dedup_keys(
        self, delivery: Delivery, fingerprint: str, window_seconds: int
    ) -> list[tuple[str, int]]:
        """Return (key, ttl) of each key a repeat of this request would find; a 0 window is off."""
        keys = []
        if window_seconds:
            keys.append((self.keys.dedup(delivery.org_id, fingerprint), window_seconds))
        if delivery.idempotency_key:
            digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()
            keys.append(
                (self.keys.idempotency(delivery.org_id, digest), IDEMPOTENCY_KEY_TTL_SECONDS)
            )
        return keys

    def _accept_once(
        self,
        pipe: redis.client.Pipeline,
        delivery: Delivery,
        dedup_keys: list[tuple[str, int]],
        max_pending: int,
    ) -> Accepted:
        # Watch only this request's keys: watching the shared pending set would make every
        # concurrent accept conflict (the depth limit is a soft bound anyway). The new
        # delivery's own key is watched too, so there is always one and reads run at once.
        pipe.watch(self.keys.delivery(delivery.id), *(key for key, _ in dedup_keys))
        for key, _ in dedup_keys:
            existing = pipe.get(key)
            if existing:
                return Accepted(text(existing), duplicate=True)
        if pipe.scard(self.keys.pending) >= max_pending:
            raise ServiceUnavailable(
                f"The relay holds {max_pending} undelivered messages, its limit; try again later."
            )
        delivery.contact_keys = self.ordering.chains(pipe, delivery)
        pipe.multi()
        for key, ttl in dedup_keys:
            pipe.set(key, delivery.id, ex=ttl)
        self._store_new(pipe, delivery)
        pipe.execute()
        return Accepted(delivery.id, duplicate=False)

    def _store_new(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that store, index, chain and enqueue a new delivery."""
        pipe.set(self.keys.delivery(delivery.id), delivery.to_json())
        # A set, not a counter: a delivery finished twice (at-least-once) leaves it exact.
        pipe.sadd(self.keys.pending, delivery.id)
        pipe.zadd(self.keys.index, {delivery.id: delivery.received_at})
        self.stats.count(pipe, delivery.org_id, delivery.endpoint, "accepted")
        self.ordering.join(pipe, delivery)
        self.queues.enqueue(pipe, delivery)
