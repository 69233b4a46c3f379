"""Deliveries a worker has taken: processing lists, heartbeats, and reclaiming the lost."""

from __future__ import annotations

import time

import redis

from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import QUEUE_KEY_PREFIX, Keys


class InFlight:
    """Track what each worker holds, so a dead worker's deliveries go back on their queues."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._requeue_processing = lua.register(connection, "requeue_if_lost", "requeue_processing")
        self._requeue_one = lua.register(connection, "requeue_if_lost", "requeue_one")

    def take(self, org_id: str, worker: str) -> str | None:
        """Move the next delivery id of an organization into the worker's processing list."""
        taken = self.redis.lmove(
            self.keys.queue(org_id), self.keys.processing(worker), "LEFT", "RIGHT"
        )
        return text(taken) if taken else None

    def done(self, delivery_id: str, worker: str) -> None:
        """Drop a delivery from the worker's processing list."""
        self.redis.lrem(self.keys.processing(worker), 1, delivery_id)

    def processing(self, worker: str) -> list[str]:
        """Return the ids in a worker's processing list."""
        return [text(i) for i in self.redis.lrange(self.keys.processing(worker), 0, -1)]

    def requeue_one(self, delivery_id: str, worker: str) -> bool:
        """Move one delivery from a worker's processing list back to its queue if lost."""
        keys = [self.keys.processing(worker)]
        return bool(self._requeue_one(keys=keys, args=[*self._requeue_args(), delivery_id]))

    def requeue_processing(self, worker: str) -> int:
        """Give a worker's in-flight deliveries back to their queues; return how many."""
        keys = [self.keys.processing(worker), self.keys.workers]
        return int(self._requeue_processing(keys=keys, args=[*self._requeue_args(), worker]))

    def _requeue_args(self) -> list[str]:
        keys = self.keys
        return [keys.prefix, QUEUE_KEY_PREFIX, keys.scheduled_prefix(), keys.parked]

    def heartbeat(self, worker: str, ttl_seconds: int) -> None:
        """Tell the others this worker is alive."""
        with self.redis.pipeline() as pipe:
            pipe.sadd(self.keys.workers, worker)
            pipe.set(self.keys.worker(worker), int(time.time()), ex=ttl_seconds)
            pipe.execute()

    def workers(self) -> list[str]:
        """Return every registered worker."""
        return [text(w) for w in self.redis.smembers(self.keys.workers)]

    def dead_workers(self) -> list[str]:
        """Return workers registered here whose heartbeat has expired."""
        workers = self.workers()
        alive = self.redis.mget([self.keys.worker(w) for w in workers]) if workers else []
        return [w for w, beat in zip(workers, alive, strict=True) if beat is None]

    def forget_worker(self, worker: str) -> None:
        """Leave the worker registry on a clean exit."""
        with self.redis.pipeline() as pipe:
            pipe.srem(self.keys.workers, worker)
            pipe.delete(self.keys.worker(worker), self.keys.processing(worker))
            pipe.execute()
