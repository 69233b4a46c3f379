"""All use of RQ: one queue per organization, and the RQ job each delivery is enqueued as.

The accept script writes the job itself (RQ's enqueue needs a MULTI of its own), so this
module says once what the job hash holds. It is what `rq.job.Job.restore` reads: a stock
`rq worker` runs it. Only fields RQ reads back and that differ from its defaults are kept;
what RQ would add (empty callback names, timestamps for display, a description repeating the
call) costs a queued delivery about 200 bytes and is never read by the relay.
Kept: the call, the queue (origin), the status (`Job.get_status` fails without one), a short
description (a stock worker's log line fails on none, on a terminal) and result_ttl 0 (a
stock worker deletes the job on success). Not kept: failure_ttl, read only when the task
raises under a stock worker, whose job hash the relay then lets lapse when it finishes the
delivery (finish.lua), whatever RQ's default.
"""

from __future__ import annotations

import json

import redis

from relay.core.delivery import Delivery
from relay.storage.keys import Keys, queue_name

TASK = "workers.tasks.deliver"  # named, not imported: storage sits below workers
# RQ's job data: the call, as JSON (what RQ's JSONSerializer reads). Not zlib-compressed as
# Job.save stores it: this short, compressing adds 11 bytes, and Job.restore takes it
# uncompressed too. No arguments: the task reads its delivery id from the job id. Kept under
# 64 bytes, so the job hash stays in Redis's compact listpack encoding (see FACTS.md).
JOB_DATA = json.dumps([TASK, None, [], {}], separators=(",", ":")).encode()


def job_fields(delivery: Delivery) -> dict[str, str | bytes]:
    """Return the fields of a delivery's RQ job hash (JSON serializer, never a token)."""
    return {
        "data": JOB_DATA,
        "origin": queue_name(delivery.org_id),
        "status": "queued",
        "description": "deliver",
        "result_ttl": "0",  # a stock worker deletes the job on success, as the relay does
    }


class Queues:
    """The RQ queues deliveries wait in, one per organization."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def enqueue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that store a delivery's RQ job and push it on its queue."""
        pipe.hset(self.keys.job(delivery.id), mapping=job_fields(delivery))  # type: ignore[arg-type]
        pipe.rpush(self.keys.queue(delivery.org_id), delivery.id)
