"""The function RQ's job for each accepted request names (RQ needs one to enqueue a job).

Only `dmrelay worker` runs the relay's queues. A stock `rq worker` running this task makes a
first attempt correctly (it claims the delivery with a lease, as the worker does), but RQ
deletes a job once it has run and drops ids whose job is gone: the retries and the woken
successors the relay later pushes back on the queue would be lost to it. See the README.
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


def deliver(delivery_id: str | None = None) -> str:
    """Deliver one delivery (the job RQ stores for every accepted request)."""
    holder = f"rq-{socket.gethostname()}.{os.getpid()}"
    # Jobs carry no arguments (it keeps them small): the job id is the delivery id.
    if delivery_id is None:
        job = get_current_job()
        if job is None:
            raise RuntimeError("deliver() without a delivery id runs only as an RQ job")
        delivery_id = job.id
    with log_context(delivery_id=delivery_id):
        return _deliverer().process(delivery_id, holder)
