"""The delivery baseline's task: what a stock `rq worker` runs for one accepted delivery.

The relay's own RQ jobs refuse a stock worker (only `dmrelay worker` runs its queues), so the
benchmark replaces each delivery's job with one naming this function, with the delivery id as
the job id. It makes a first attempt as the relay's worker does, through the same take; retries
are the relay's own and a stock worker never sees them.
"""

from __future__ import annotations

import functools
import os
import socket

from rq import get_current_job

from relay.config import load_settings
from relay.logs import log_context
from relay.storage.inflight import START
from relay.storage.keys import queue_name
from workers.bootstrap import build_deliverer
from workers.deliverer import Deliverer


@functools.cache
def _deliverer() -> Deliverer:
    # A stock rq worker gives a job no context, so build one per process, on first use.
    return build_deliverer(load_settings())


def deliver() -> str:
    """Deliver the delivery whose id is the current RQ job's."""
    holder = f"rq-{socket.gethostname()}.{os.getpid()}"
    job = get_current_job()
    if job is None:
        raise RuntimeError("deliver() runs only as an RQ job")
    with log_context(delivery_id=job.id):
        return _take_and_run(job.id, job.origin.removeprefix(queue_name("")), holder)


def _take_and_run(delivery_id: str, org_id: str, holder: str) -> str:
    """Put the id RQ popped back at the head of its queue, take it as the relay's worker does,
    run it, and write the counts (the stock worker's process may end after the job)."""
    deliverer = _deliverer()
    store = deliverer.store
    # One stock worker runs the queue and waits for this job: nothing else takes from it now.
    store.redis.lpush(store.keys.queue(org_id), delivery_id)
    taken = store.inflight.take(holder, [org_id])
    if taken is None or taken.delivery_id != delivery_id:
        raise RuntimeError(f"the take did not find {delivery_id} at the head of its queue")
    outcome = deliverer.run(taken) if taken.verdict == START else deliverer.note(taken)
    store.stats.tally.flush()
    return outcome
