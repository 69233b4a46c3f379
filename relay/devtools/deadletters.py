"""Many dead letters at once, as the worker leaves them, for tests and the page benchmark."""

from __future__ import annotations

import time

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.record import record_json
from relay.storage.store import Store

BATCH = 1000


def store_dead_letters(store: Store, org_id: str, count: int) -> list[str]:
    """Write `count` default-replies DmTracker refused with a 400, pipelined a thousand at a
    time; return their ids, newest first (the last one written died last)."""
    payload = {"organization_id": org_id, "manychat_id": "1", "message_content": "hi"}
    now, ids = time.time(), []
    with store.redis.pipeline(transaction=False) as pipe:
        for index in range(count):
            delivery = Delivery.new(org_id, "default-reply", {**payload, "username": f"u{index}"})
            delivery.state, delivery.reason = DeliveryState.DEAD, "DmTracker answered 400"
            delivery.finished_at = now - count + index
            delivery.attempts.append(Attempt(now, 400, 12.5, "permanent", '{"error":"Bad"}'))
            pipe.set(store.keys.delivery(delivery.id), record_json(delivery), ex=3600)
            pipe.zadd(store.keys.dead, {delivery.id: delivery.finished_at})
            ids.append(delivery.id)
            if index % BATCH == BATCH - 1:
                pipe.execute()
        pipe.execute()
    return ids[::-1]
