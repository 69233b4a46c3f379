"""Deliveries a worker has taken: processing lists, leases, heartbeats, and reclaiming the lost.

Each take gives the delivery a lease ('holder token' in one hash). Finishing, scheduling a retry
and releasing the contact's chain check it, so a worker that lost its delivery to another (its
heartbeat expired while it was still running) cannot record a result over the other's. A lease
is live while its holder's heartbeat is; reclaim requeues only deliveries no live lease holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from relay.core.delivery import Delivery
from relay.core.record import decode_record
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import QUEUE_KEY_PREFIX, Keys
from relay.storage.settle import settle_key

# What a take found, in take.lua's words.
START, PARKED, HELD, FINISHED, GONE = "start", "parked", "held", "finished", "gone"
SETTLING = "settling"
# How long the mark of a worker seen dead lasts: far longer than any wait before reclaiming.
DEAD_MARK_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Lease:
    """One take of a delivery by a worker."""

    holder: str
    token: str

    @classmethod
    def new(cls, holder: str) -> Lease:
        """Return a fresh lease for a worker."""
        return cls(holder, uuid.uuid4().hex[:12])

    @property
    def value(self) -> str:
        """Return the lease as stored in Redis."""
        return f"{self.holder} {self.token}"


def holder_of(lease_value: bytes | str) -> str | None:
    """Return the worker named in a stored lease ('holder token'), or None for no lease."""
    return text(lease_value).split(" ", 1)[0] or None


@dataclass(frozen=True)
class Taken:
    """What a take found: the verdict, the delivery, and for START its lease and record."""

    verdict: str
    delivery_id: str
    org_id: str
    endpoint: str
    lease: Lease
    delivery: Delivery | None = None
    woken: tuple[str, ...] = ()


class InFlight:
    """Track what each worker holds, so a dead worker's deliveries go back on their queues."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        take = ("record", "chains", "leases", "release_chains", "settle", "rq_job", "take")
        self._take = lua.register(connection, *take)
        requeue = ("record", "leases", "requeue_if_lost")
        self._requeue_processing = lua.register(connection, *requeue, "requeue_processing")
        self._requeue_orphans = lua.register(connection, *requeue, "requeue_orphans")

    def take(self, holder: str, org_ids: Sequence[str]) -> Taken | None:
        """Take the next delivery of the first organization with one queued, in one round trip."""
        lease = Lease.new(holder)
        keys = [self.keys.processing(lease.holder), self.keys.leases, self.keys.parked]
        keys += [settle_key(self.keys), self.keys.scheduled_prefix()]
        args = [lease.value, self.keys.prefix, QUEUE_KEY_PREFIX, *org_ids]
        found = [text(item) for item in self._take(keys=keys, args=args)]
        if not found:
            return None
        verdict, delivery_id, org_id, endpoint, *rest = found
        if verdict == START:
            delivery = decode_record(delivery_id, rest[0])
            return Taken(verdict, delivery_id, org_id, endpoint, lease, delivery)
        return Taken(verdict, delivery_id, org_id, endpoint, lease, woken=tuple(rest))

    def lease_of(self, delivery_id: str) -> str | None:
        """Return the lease held on a delivery ('holder token'), if any."""
        held = self.redis.hget(self.keys.leases, delivery_id)
        return text(held) if held else None

    def processing(self, worker: str) -> list[str]:
        """Return the ids in a worker's processing list."""
        return [text(i) for i in self.redis.lrange(self.keys.processing(worker), 0, -1)]

    def requeue_orphans(self, worker: str, working: Iterable[Lease]) -> int:
        """Requeue entries of a live worker's list that none of its threads (`working`) runs."""
        keys = [self.keys.processing(worker), self.keys.leases]
        args = [*self._requeue_args(), worker, *(lease.value for lease in working)]
        return int(self._requeue_orphans(keys=keys, args=args))

    def requeue_processing(self, worker: str) -> int:
        """Give a worker's in-flight deliveries back to their queues; return how many."""
        keys = [self.keys.processing(worker), self.keys.workers, self.keys.leases]
        return int(self._requeue_processing(keys=keys, args=[*self._requeue_args(), worker]))

    def _requeue_args(self) -> list[str]:
        keys = self.keys
        return [keys.prefix, QUEUE_KEY_PREFIX, keys.scheduled_prefix(), keys.parked]

    def heartbeat(self, worker: str, ttl_seconds: int) -> bool:
        """Tell the others this worker is alive; return False if it had been taken for dead."""
        with self.redis.pipeline() as pipe:
            pipe.sadd(self.keys.workers, worker)
            pipe.set(self.keys.worker(worker), int(time.time()), ex=ttl_seconds, get=True)
            pipe.delete(self.keys.dead_since(worker))  # alive again: a reclaim starts over
            added, previous, _ = pipe.execute()
        return not added and previous is not None

    def workers(self) -> list[str]:
        """Return every registered worker."""
        return [text(w) for w in self.redis.smembers(self.keys.workers)]

    def dead_workers(self, me: str) -> list[str]:
        """Return workers registered here whose heartbeat has expired, never `me` (the caller:
        alive, since it asks, whatever its own heartbeat key says)."""
        workers = [w for w in self.workers() if w != me]
        alive = self.redis.mget([self.keys.worker(w) for w in workers]) if workers else []
        return [w for w, beat in zip(workers, alive, strict=True) if beat is None]

    def dead_for(self, worker: str) -> float:
        """Return how long a worker has been seen dead, in seconds of the Redis server's clock.

        The first call marks it; its heartbeat, if it beats again, removes the mark.
        """
        # The mark's remaining time tells its age: no clock of any worker host is involved.
        mark = self.keys.dead_since(worker)
        with self.redis.pipeline() as pipe:
            pipe.set(mark, "", nx=True, ex=DEAD_MARK_TTL_SECONDS)
            pipe.pttl(mark)
            _, left_ms = pipe.execute()
        return max(0.0, DEAD_MARK_TTL_SECONDS - max(0, int(left_ms)) / 1000)

    def forget_dead_mark(self, worker: str) -> None:
        """Delete the mark of a worker seen dead, once its deliveries are reclaimed."""
        self.redis.delete(self.keys.dead_since(worker))

    def forget_worker(self, worker: str) -> None:
        """Leave the worker registry on a clean exit."""
        with self.redis.pipeline() as pipe:
            pipe.srem(self.keys.workers, worker)
            pipe.delete(self.keys.worker(worker), self.keys.processing(worker))
            pipe.execute()
