"""What a stock `rq worker` finds in the relay's RQ jobs: a refusal, never a delivery.

The relay's queues are delivered by `dmrelay worker` (threads, leases, per-contact order, rate
limits, the retry schedule). A stock worker started on them by mistake takes one job, and the
job's failure callback stops that worker; RQ files the job as failed, and the relay's upkeep
(rq_repair.lua) puts it back at the head of its queue, so nothing is lost or reordered.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import redis
from rq.command import send_shutdown_command
from rq.job import Job

REFUSAL = (
    "dmrelay's queues are delivered by `dmrelay worker`, not `rq worker`: stopping this worker; "
    "the job is back at the head of its queue"
)

log = logging.getLogger("rq.worker")


class RunDmrelayWorker(RuntimeError):
    """A stock RQ worker took a relay job."""


def deliver(delivery_id: str) -> None:
    """Refuse: only `dmrelay worker` delivers (this is the task an RQ job names)."""
    raise RunDmrelayWorker(REFUSAL)


def stop(
    job: Job,
    connection: redis.Redis,
    exc_type: type[BaseException] | None = None,
    exc_value: BaseException | None = None,
    traceback: TracebackType | None = None,
    *_: Any,
) -> None:
    """Stop the stock worker that ran the job (the job's failure callback, whatever failed)."""
    log.error(REFUSAL)
    if job.worker_name:
        send_shutdown_command(connection, job.worker_name)
