"""Retries waiting for their time: one sorted set per organization, moved onto the queue."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from relay.core import defaults
from relay.core.delivery import Delivery
from relay.core.errors import LeaseLost
from relay.core.record import record_json
from relay.storage import lua
from relay.storage.inflight import Lease, holder_of
from relay.storage.keys import Keys
from relay.storage.rqjobs import SCHEDULED, job_fields, job_key


class Schedule:
    """Hold deliveries until their next attempt is due."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._retry = lua.register(connection, "retry")
        self._move_due = lua.register(connection, "rq_job", "move_due")

    def put(
        self,
        delivery: Delivery,
        at: float,
        lease: Lease | None = None,
        failed_attempt: str = "",
        patience_seconds: float = 0.0,
    ) -> None:
        """Store the delivery and put it back on its queue at a later time, giving up the lease.

        `failed_attempt` (JSON) goes to the log of the latest failed attempts. While Redis is
        unreachable it is tried again for `patience_seconds`. Raise LeaseLost, writing nothing,
        when the lease is no longer held.
        """
        delivery.next_attempt_at = at
        holder = lease.holder if lease else ""
        keys = [self.keys.delivery(delivery.id), self.keys.scheduled(delivery.org_id)]
        keys += [self.keys.processing(holder), self.keys.leases, self.keys.failed_attempts]
        keys += [job_key(delivery.id)]
        args: list[str | float] = [
            delivery.id,
            lease.value if lease else "",
            record_json(delivery),
            at,
        ]
        args += [failed_attempt, defaults.FAILED_ATTEMPTS_KEPT, *job_fields(delivery, SCHEDULED)]
        done, *held = lua.run_patiently(self._retry, keys, args, patience_seconds)
        if not int(done):
            raise LeaseLost(delivery.id, holder_of(held[0]))

    def move_due(self, org_ids: Iterable[str], now: float | None = None) -> int:
        """Move deliveries whose time has come onto their queues; return how many."""
        org_ids = list(org_ids)
        keys = [self.keys.scheduled(org_id) for org_id in org_ids]
        queues = [self.keys.queue(org_id) for org_id in org_ids]
        return int(self._move_due(keys=keys, args=[now or time.time(), *queues]))
