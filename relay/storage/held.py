"""Held requests in Redis: stored beside the dead letters, edited in place, never queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from relay.core.delivery import Delivery, DeliveryState
from relay.core.record import record_json
from relay.storage.history import decode
from relay.storage.keys import Keys

if TYPE_CHECKING:
    pass

EDITABLE = (DeliveryState.HELD, DeliveryState.DEAD)
EDITED = "edited"  # the attempt log's outcome for an operator's edit: no call to DmTracker


class HeldRequests:
    """Keep held requests where an operator finds dead letters, and let them be edited."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def keep(self, delivery: Delivery, retention_seconds: int) -> None:
        """Store a held delivery for the dead-letter retention, listed with the dead letters."""
        # One transaction, one round trip: never a record the lists do not show, or the reverse.
        with self.redis.pipeline() as pipe:
            pipe.set(
                self.keys.delivery(delivery.id),
                record_json(delivery),
                ex=retention_seconds,
                nx=True,
            )
            pipe.zadd(self.keys.dead, {delivery.id: delivery.finished_at or delivery.received_at})
            pipe.zadd(self.keys.index, {delivery.id: delivery.received_at})
            pipe.execute()

    def edit(self, delivery_id: str, change: Callable[[Delivery], None]) -> Delivery | None:
        """Apply `change` to a held or dead delivery unless someone changes it meanwhile;
        return it changed, or None when it is no longer held or dead. What `change` raises
        propagates, and nothing is stored."""
        key = self.keys.delivery(delivery_id)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                delivery = decode(delivery_id, raw) if raw else None
                if delivery is None or delivery.state not in EDITABLE or delivery.is_summary:
                    return None
                change(delivery)
                pipe.multi()
                pipe.set(key, record_json(delivery), keepttl=True)
                pipe.execute()
            except redis.WatchError:
                return None
        return delivery
