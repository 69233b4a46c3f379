"""Say once that Redis is unavailable, and once that it answers again, whatever fails meanwhile.

A Redis restart makes every thread of a worker fail at once and for a while: the loop, the
heartbeat, maintenance, each delivery in flight. One warning per outage tells the operator
what happened; a line per failure would bury it.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger("dmrelay.worker")


class RedisOutage:
    """Track whether this process finds Redis unavailable, and log only the changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def failed(self, error: redis.RedisError, doing: str) -> None:
        """Note a failed Redis call; the first of an outage is logged as a warning."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
        if first:
            log.warning(
                "redis unavailable (%s) while %s; retrying until it answers",
                type(error).__name__,
                doing,
            )
        else:
            log.debug("redis still unavailable (%s) while %s", type(error).__name__, doing)

    def answered(self) -> None:
        """Note a Redis call that succeeded; the first after an outage is logged."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.info("redis answers again after %.1f s", time.monotonic() - since)
