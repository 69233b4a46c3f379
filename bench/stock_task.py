"""The delivery baseline's task: what a stock `rq worker` runs for one accepted delivery.

The relay stores no RQ job (only `dmrelay worker` runs its queues), so the benchmark gives
each delivery it measures stock RQ on a job naming this function, with the delivery id as the
job id. It makes a first attempt as the relay's worker does (claiming a lease); retries are
the relay's own and a stock worker never sees them.
"""

from __future__ import annotations

import functools
import os
import socket

from rq import get_current_job

from relay.config import load_settings
from relay.logs import log_context
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
    delivery_id = job.id
    with log_context(delivery_id=delivery_id):
        return _deliverer().process(delivery_id, holder)
