"""Retries waiting for their time: one sorted set per organization, moved onto the queue."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from relay.core.delivery import Delivery
from relay.storage import lua
from relay.storage.keys import Keys


class Schedule:
    """Hold deliveries until their next attempt is due."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._move_due = lua.register(connection, "move_due")

    def put(self, delivery: Delivery, at: float) -> None:
        """Store the delivery and put it back on its queue at a later time."""
        delivery.next_attempt_at = at
        with self.redis.pipeline() as pipe:
            pipe.set(self.keys.delivery(delivery.id), delivery.to_json())
            pipe.zadd(self.keys.scheduled(delivery.org_id), {delivery.id: at})
            pipe.execute()

    def move_due(self, org_ids: Iterable[str], now: float | None = None) -> int:
        """Move deliveries whose time has come onto their queues; return how many."""
        org_ids = list(org_ids)
        keys = [self.keys.scheduled(org_id) for org_id in org_ids]
        queues = [self.keys.queue(org_id) for org_id in org_ids]
        return int(self._move_due(keys=keys, args=[now or time.time(), *queues]))
