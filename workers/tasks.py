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

from relay.config import load_settings
from relay.logs import log_context
from workers.bootstrap import build_deliverer
from workers.deliverer import Deliverer


@functools.cache
def _deliverer() -> Deliverer:
    # A stock rq worker gives a job no context, so build one per process, on first use.
    return build_deliverer(load_settings())


def deliver(delivery_id: str) -> str:
    """Deliver one delivery (the job RQ stores for every accepted request)."""
    holder = f"rq-{socket.gethostname()}.{os.getpid()}"
    with log_context(delivery_id=delivery_id):
        return _deliverer().process(delivery_id, holder)
