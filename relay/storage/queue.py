"""All use of RQ: one queue per organization, jobs enqueued through RQ's public API."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from relay.core import defaults
from relay.core.delivery import Delivery
from relay.storage.keys import queue_name

TASK = "workers.tasks.deliver"  # named, not imported: storage sits below workers


class Queues:
    """The RQ queues deliveries wait in, one per organization."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._queues: dict[str, Queue] = {}

    def queue(self, org_id: str) -> Queue:
        """Return the RQ queue of an organization (JSON serializer, never pickle).

        Call it once before a transaction that enqueues: the first call asks Redis a question.
        """
        if org_id not in self._queues:
            queue = Queue(queue_name(org_id), connection=self.redis, serializer=JSONSerializer)
            # RQ asks the server's version on first enqueue, on a second connection: ask now,
            # not while a transaction holds one, or a small pool deadlocks until its timeout.
            queue.get_redis_server_version()
            self._queues[org_id] = queue
        return self._queues[org_id]

    def enqueue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the RQ job of a delivery (JSON, no token), inside the caller's transaction."""
        self.queue(delivery.org_id).enqueue_call(
            TASK,
            args=(delivery.id,),
            job_id=delivery.id,
            result_ttl=0,
            ttl=None,
            failure_ttl=defaults.DEAD_LETTER_RETENTION_SECONDS,
            pipeline=pipe,
            description=f"deliver {delivery.endpoint} {delivery.id}",
        )
