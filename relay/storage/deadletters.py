"""Dead letters: the index of deliveries that gave up, and replaying or purging them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from relay.core.delivery import DEAD_STATES, Delivery, DeliveryState
from relay.core.hold import ready_to_send
from relay.core.record import record_json
from relay.storage.codec import text
from relay.storage.history import decode
from relay.storage.keys import Keys
from relay.storage.ordering import Ordering
from relay.storage.queue import Queues


def _ready_if_held(delivery: Delivery) -> None:
    """Make a held delivery's body the one to send, or raise FieldError."""
    if delivery.state == DeliveryState.HELD:
        ready_to_send(delivery)


class DeadLetters:
    """The dead-letter registry: what an operator inspects, replays or forgets."""

    def __init__(
        self, connection: redis.Redis, keys: Keys, ordering: Ordering, queues: Queues
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.ordering = ordering
        self.queues = queues

    def ids(self) -> list[str]:
        """Return the ids of every dead letter still kept, newest first."""
        ids = [text(i) for i in self.redis.zrange(self.keys.dead, 0, -1, desc=True)]
        return self._forget_expired(ids)

    def _forget_expired(self, ids: list[str]) -> list[str]:
        """Drop from the index the ids whose record has expired; return those still kept."""
        # Retention is each record's TTL; the index forgets what has expired.
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.exists(self.keys.delivery(delivery_id))
            alive = pipe.execute()
        gone = [i for i, exists in zip(ids, alive, strict=True) if not exists]
        if gone:
            self.redis.zrem(self.keys.dead, *gone)
        return [i for i, exists in zip(ids, alive, strict=True) if exists]

    def page(self, skip: int, take: int) -> tuple[list[Delivery], int]:
        """Return `take` dead letters from the `skip`-th newest on, and how many are kept.

        Only the page is read: its entries of the index, then their records. An entry whose
        record has expired is forgotten, and the next one fills its place.
        """
        found: list[Delivery] = []
        start = skip
        while len(found) < take:
            end = start + take - len(found) - 1
            ids = [text(i) for i in self.redis.zrange(self.keys.dead, start, end, desc=True)]
            if not ids:
                break
            records = self.redis.mget([self.keys.delivery(i) for i in ids])
            kept = self._forget_vanished(ids, records)
            found += [d for d in kept if d.state in DEAD_STATES]
            start += len(kept)  # the forgotten ones left the index: the rest moved up
        return found, int(self.redis.zcard(self.keys.dead))

    def each(self, batch: int = 500) -> Iterator[Delivery]:
        """Yield every dead letter kept, newest first, reading the index a batch at a time."""
        start = 0
        while ids := [
            text(i) for i in self.redis.zrange(self.keys.dead, start, start + batch - 1, desc=True)
        ]:
            kept = self._forget_vanished(ids, self.redis.mget([self.keys.delivery(i) for i in ids]))
            yield from (d for d in kept if d.state in DEAD_STATES)
            start += len(kept)

    def _forget_vanished(self, ids: list[str], records: list[Any]) -> list[Delivery]:
        """Drop from the index the ids whose record has expired; return the others' records."""
        gone = [i for i, raw in zip(ids, records, strict=True) if not raw]
        if gone:
            self.redis.zrem(self.keys.dead, *gone)
        return [decode(i, raw) for i, raw in zip(ids, records, strict=True) if raw]

    def trim(self, retention_seconds: int, now: float | None = None, check: int = 100) -> int:
        """Forget index entries of dead letters whose record has expired; return how many.

        Each record expires `retention_seconds` after its death, the entry's score: those older
        go at once. The oldest `check` entries are also looked up, for records gone otherwise.
        """
        now = time.time() if now is None else now
        expired = int(self.redis.zremrangebyscore(self.keys.dead, "-inf", now - retention_seconds))
        oldest = [text(i) for i in self.redis.zrange(self.keys.dead, 0, check - 1)]
        return expired + len(oldest) - len(self._forget_expired(oldest))

    def replay(self, delivery_id: str) -> bool:
        """Send a dead letter again with a fresh attempt budget, at the end of its chains.

        A held one is checked first as ingest checks a body: FieldError says what to fix.
        """
        return self.if_still_dead(delivery_id, self.queue_replay, prepare=_ready_if_held)

    def purge(self, delivery_id: str) -> bool:
        """Forget a dead letter."""
        return self.if_still_dead(delivery_id, self.queue_purge)

    def if_still_dead(
        self,
        delivery_id: str,
        action: Callable[[redis.client.Pipeline, Delivery], None],
        prepare: Callable[[Delivery], None] | None = None,
    ) -> bool:
        """Run a replay or purge only if the delivery is dead and nobody changes it meanwhile."""
        # Two operators replaying (or one purging) the same letter at once must not queue it
        # twice or forget it while it is queued: the loser's transaction fails and stops.
        key = self.keys.delivery(delivery_id)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                delivery = decode(delivery_id, raw) if raw else None
                if delivery is None or delivery.state not in DEAD_STATES:
                    return False
                if prepare:
                    prepare(delivery)
                pipe.multi()
                action(pipe, delivery)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def queue_replay(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that give a dead letter a fresh start."""
        delivery.state, delivery.reason = DeliveryState.QUEUED, None
        delivery.attempts_used, delivery.replays = 0, delivery.replays + 1
        delivery.finished_at = delivery.next_attempt_at = delivery.throttled_since = None
        pipe.zrem(self.keys.dead, delivery.id)
        record = record_json(delivery)
        pipe.set(self.keys.delivery(delivery.id), record)
        pipe.hincrby(self.keys.pending, delivery.org_id, 1)
        size = len(record.encode())
        pipe.hset(self.keys.pending_sizes, delivery.id, size)
        pipe.hincrby(self.keys.pending_bytes, delivery.org_id, size)
        self.ordering.join(pipe, delivery)
        self.queues.enqueue(pipe, delivery)

    def queue_purge(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that forget a dead letter."""
        pipe.zrem(self.keys.dead, delivery.id)
        pipe.zrem(self.keys.index, delivery.id)
        pipe.delete(self.keys.delivery(delivery.id))
        self.queues.jobs.forget(pipe, delivery)
