"""Delivery records: load and save them, find them by time, and record their final state."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import redis

from relay.core.delivery import DEAD, Delivery
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import Keys
from relay.storage.ordering import Ordering

JOB_RECORD_GRACE_SECONDS = 60


class History:
    """The record of every delivery, kept for its retention period."""

    def __init__(self, connection: redis.Redis, keys: Keys, ordering: Ordering) -> None:
        self.redis = connection
        self.keys = keys
        self.ordering = ordering
        self._finish = lua.register(connection, "release_chains", "finish")

    def load(self, delivery_id: str) -> Delivery | None:
        """Return a stored delivery, or None if it is gone."""
        raw = self.redis.get(self.keys.delivery(delivery_id))
        return Delivery.from_json(raw) if raw else None

    def save(self, delivery: Delivery) -> None:
        """Store the delivery's current state."""
        self.redis.set(self.keys.delivery(delivery.id), delivery.to_json())

    def iter_deliveries(self, ids: Iterable[str]) -> Iterator[Delivery]:
        """Load many deliveries at once, skipping any that expired."""
        ids = list(ids)
        for start in range(0, len(ids), 500):
            batch = [self.keys.delivery(i) for i in ids[start : start + 500]]
            for raw in self.redis.mget(batch):
                if raw:
                    yield Delivery.from_json(raw)

    def recent_ids(
        self, limit: int, since: float | None = None, until: float | None = None
    ) -> list[str]:
        """Return up to `limit` ids of deliveries received in [since, until), newest first."""
        newest = f"({until}" if until is not None else "+inf"
        oldest = since if since is not None else "-inf"
        found = self.redis.zrange(
            self.keys.index, newest, oldest, desc=True, byscore=True, offset=0, num=limit
        )
        return [text(i) for i in found]

    def forget_index_before(self, received_before: float) -> int:
        """Drop index entries of deliveries received before a time; return how many."""
        return int(self.redis.zremrangebyscore(self.keys.index, "-inf", f"({received_before}"))

    def finish(self, delivery: Delivery, state: str, retention_seconds: int) -> list[str]:
        """Record a final state, keep it for the retention period, unblock the contact."""
        delivery.state = state
        delivery.finished_at = time.time()
        delivery.next_attempt_at = None
        # Let RQ's job record lapse rather than delete it: a stock `rq worker` running the
        # same task still updates it after the task returns.
        keys = [self.keys.delivery(delivery.id), self.keys.pending, self.keys.job(delivery.id)]
        keys += [self.keys.dead, *delivery.contact_keys]
        args: list[str | int] = [*self.ordering.chain_args(delivery), delivery.to_json()]
        args += [retention_seconds, JOB_RECORD_GRACE_SECONDS]
        args += [repr(delivery.finished_at) if state == DEAD else ""]
        return [text(item) for item in self._finish(keys=keys, args=args)]
