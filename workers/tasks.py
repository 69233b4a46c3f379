"""The RQ job function, so a stock `rq worker` can run the same delivery task."""

from __future__ import annotations

import functools

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
    with log_context(delivery_id=delivery_id):
        return _deliverer().process(delivery_id)
