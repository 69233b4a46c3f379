"""Every undelivered delivery as an RQ job RQ's own tools read: its job hash and registries.

The relay's worker never reads them; they are there so that `rq info`, rq-dashboard and
`Job.fetch` show each organization's queue as it is. A job is the delivery's id in RQ's shape:
the task's dotted path with the id as its one argument (JSON), the queue it waits in, its status
and times, and nothing of the payload or the organization's token. It is on the queue while
queued, in RQ's ScheduledJobRegistry (the relay's schedule itself) while waiting for a retry, in
its FailedJobRegistry while dead, with the reason as its failure text, and gone once delivered.
The Lua scripts write these fields with the relay's own keys; this module spells them once.

A stock `rq worker` on these queues runs nothing: the task refuses and its failure callback
stops that worker; the relay's upkeep puts the job RQ filed as failed back at the head of its
queue.
"""

from __future__ import annotations

import html
import json
import os
import socket
import sys
import time
import zlib
from base64 import b64encode
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from relay.core.delivery import Delivery
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import Keys, queue_name

if TYPE_CHECKING:
    pass

# What a stock worker would import: it refuses (workers/rqtask.py), never delivers.
TASK = "workers.rqtask.deliver"
REFUSE_CALLBACK = "workers.rqtask.stop"
JOB_KEY_PREFIX = Job.redis_job_namespace_prefix
# RQ reads this shorter form of its timestamps too; each byte counts per queued delivery.
RQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
FAILURE_TEXT_MAX_CHARS = 2000
# A deleted delivery is dead for an instant, between finishing and purging it.
DELETED_RETENTION_SECONDS = 60
QUEUED, SCHEDULED, FAILED = "queued", "scheduled", "failed"


def job_key(delivery_id: str) -> str:
    """Return the key of a delivery's RQ job hash."""
    return JOB_KEY_PREFIX + delivery_id


def results_key(delivery_id: str) -> str:
    """Return the key of a delivery's RQ results stream (where RQ's tools read failure text)."""
    return Result.get_key(delivery_id)


def failed_key(org_id: str) -> str:
    """Return the key of an organization's RQ FailedJobRegistry."""
    return FailedJobRegistry.key_template.format(queue_name(org_id))


def rq_time(epoch: float) -> str:
    """Return a time as RQ stores it (UTC)."""
    return time.strftime(RQ_TIME_FORMAT, time.gmtime(epoch))


def plain_text(value: str, max_chars: int = FAILURE_TEXT_MAX_CHARS) -> str:
    """Return text no browser reads as markup: rq-dashboard renders these fields unescaped."""
    return html.escape(value[:max_chars], quote=False)


def job_fields(delivery: Delivery, status: str, enqueued_at: float | None = None) -> list[str]:
    """Return the RQ job hash's fields of a delivery, flat (field, value, ...), for HSET.

    A first enqueue leaves out enqueued_at (RQ reads it as absent; it is created_at) and the
    description: the hash then fits a 224-byte allocation, about 315 B per queued delivery.
    """
    data = json.dumps([TASK, None, [delivery.id], {}], separators=(",", ":"))
    fields = [
        "data", data,
        "origin", queue_name(delivery.org_id),
        "status", status,
        "created_at", rq_time(delivery.received_at),
        "failure_callback_name", REFUSE_CALLBACK,
    ]  # fmt: skip
    if enqueued_at is not None:
        fields += ["enqueued_at", rq_time(enqueued_at)]
    return fields


def failure_entry(reason: str) -> list[str]:
    """Return the RQ result entry (flat, for XADD) that carries a dead letter's reason."""
    exc_string = b64encode(zlib.compress(plain_text(reason).encode())).decode()
    return ["type", str(Result.Type.FAILED.value), "worker_name", "", "exc_string", exc_string]


def dead_fields(delivery: Delivery) -> list[str]:
    """Return the job's fields once dead: status, end time, failure text (plain)."""
    ended = rq_time(delivery.finished_at or time.time())
    reason = plain_text(delivery.reason or "")
    # The endpoint as RQ's description: on dead letters only, where an operator reads the list;
    # on every queued job it would cost 32 bytes more (the next allocation size).
    description = plain_text(delivery.endpoint)
    return ["status", FAILED, "ended_at", ended, "exc_info", reason, "description", description]


def finish_arg(delivery: Delivery, dead: bool) -> str:
    """Return finish.lua's RQ argument: '' (delivered: the job goes) or the dead job's JSON."""
    if not dead:
        return ""
    fields = job_fields(delivery, FAILED) + dead_fields(delivery)
    return json.dumps({"fields": fields, "result": failure_entry(delivery.reason or "")})


class RQJobs:
    """Write the RQ side of transitions made outside the Lua scripts; act on RQ tools' changes."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._repair = lua.register(connection, "record", "rq_repair")
        self._orphans = lua.register(connection, "record", "rq_orphans")

    def queue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that show a delivery back on its queue, out of RQ's failed list."""
        key = job_key(delivery.id)
        pipe.hdel(key, "exc_info", "ended_at", "started_at")
        pipe.hset(key, items=job_fields(delivery, QUEUED, time.time()))
        pipe.persist(key)
        pipe.delete(results_key(delivery.id))
        pipe.zrem(failed_key(delivery.org_id), delivery.id)

    def forget(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that remove a delivery's RQ job and its registry entries."""
        pipe.delete(job_key(delivery.id), results_key(delivery.id))
        pipe.zrem(failed_key(delivery.org_id), delivery.id)

    def requeued_by_rq(self, delivery_id: str, org_id: str) -> bool:
        """Return True when RQ's tools requeued this dead letter (its job is queued again)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(job_key(delivery_id), "status")
            pipe.zscore(failed_key(org_id), delivery_id)
            status, score = pipe.execute()
        return status is not None and text(status) == QUEUED and score is None

    def deleted_jobs(self, delivery_ids: Iterable[str]) -> list[str]:
        """Return the ids among delivery_ids whose RQ job is gone (deleted by an RQ tool)."""
        ids = list(delivery_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.exists(job_key(delivery_id))
            found = pipe.execute()
        return [i for i, exists in zip(ids, found, strict=True) if not exists]

    def put_back_refused(self, org_ids: Iterable[str]) -> int:
        """Put each job a stock `rq worker` refused back at its queue's head; return how many."""
        count = 0
        for org_id in org_ids:
            keys = [failed_key(org_id), self.keys.queue(org_id)]
            args = [self.keys.prefix, JOB_KEY_PREFIX, results_key("")]
            count += int(self._repair(keys=keys, args=args))
        return count

    def deleted_while_waiting(self, start: int, count: int = 500) -> tuple[int, list[str]]:
        """Return the next index rank, and the queued or retrying deliveries among `count`
        from rank `start` whose RQ job is gone (0 as the next rank once the index is done)."""
        keys = [self.keys.index, self.keys.leases]
        args: list[str | int] = [self.keys.prefix, JOB_KEY_PREFIX, start, count]
        next_start, *ids = self._orphans(keys=keys, args=args)
        return int(next_start), [text(i) for i in ids]


class RQWorkerEntry:
    """Show a `dmrelay worker` where RQ's tools list workers (`rq info`, rq-dashboard)."""

    def __init__(self, connection: redis.Redis, org_ids: Iterable[str]) -> None:
        self.redis = connection
        self.queues = [queue_name(org_id) for org_id in org_ids]
        self.birth = rq_time(time.time())

    def beat(self, name: str, state: str, ttl_seconds: int) -> None:
        """Write the worker's RQ entry: queues, state and last heartbeat, expiring with it."""
        key = Worker.redis_worker_namespace_prefix + name
        fields = [
            "birth", self.birth,
            "last_heartbeat", rq_time(time.time()),
            "queues", ",".join(self.queues),
            "state", state,
            "pid", str(os.getpid()),
            "hostname", socket.gethostname(),
            "python_version", sys.version,
        ]  # fmt: skip
        with self.redis.pipeline() as pipe:
            pipe.hset(key, items=fields)
            pipe.expire(key, ttl_seconds)
            pipe.sadd(Worker.redis_workers_keys, key)
            for queue in self.queues:
                pipe.sadd(WORKERS_BY_QUEUE_KEY % queue, key)
            pipe.execute()

    def leave(self, name: str) -> None:
        """Remove the worker's RQ entry on a clean exit."""
        key = Worker.redis_worker_namespace_prefix + name
        with self.redis.pipeline() as pipe:
            pipe.delete(key)
            pipe.srem(Worker.redis_workers_keys, key)
            for queue in self.queues:
                pipe.srem(WORKERS_BY_QUEUE_KEY % queue, key)
            pipe.execute()
