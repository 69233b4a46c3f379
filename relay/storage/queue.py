"""All use of RQ's queues: one queue per organization, each an RQ queue of delivery ids.

A queue is RQ's own list under RQ's key, registered in RQ's set of queues, and every id on it
has its RQ job (relay/storage/rqjobs.py), so RQ's tools (`rq info`, rq-dashboard, `Queue.count`,
`Job.fetch`) show each organization's backlog as it is. Only `dmrelay worker` delivers them.
"""

from __future__ import annotations

import redis

from relay.core.delivery import Delivery
from relay.storage.keys import Keys
from relay.storage.rqjobs import RQJobs


class Queues:
    """The RQ queues deliveries wait in, one per organization."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self.jobs = RQJobs(connection, keys)

    def enqueue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that push a delivery's id on its organization's queue."""
        pipe.rpush(self.keys.queue(delivery.org_id), delivery.id)
        self.jobs.queue(pipe, delivery)
