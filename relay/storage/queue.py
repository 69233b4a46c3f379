"""All use of RQ: one queue per organization, each an RQ queue of delivery ids.

A queue is RQ's own list under RQ's key, registered in RQ's set of queues, so RQ's tools
(`rq info`, `Queue.count`) show each organization's backlog. No RQ job hash is stored: the
relay's worker takes ids off the list itself and reads the delivery's record, and nothing the
relay runs reads an RQ job. It would cost every queued delivery about 230 bytes of Redis for
nothing. Run `dmrelay worker`, never a stock `rq worker`, on these queues: RQ drops
ids it has no job for.
"""

from __future__ import annotations

import redis

from relay.core.delivery import Delivery
from relay.storage.keys import Keys


class Queues:
    """The RQ queues deliveries wait in, one per organization."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def enqueue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the command that pushes a delivery's id on its organization's queue."""
        pipe.rpush(self.keys.queue(delivery.org_id), delivery.id)
