"""A Redis connection that counts round trips, for the tests and benchmarks that budget them."""

from __future__ import annotations

import threading
from typing import Any

from redis.connection import Connection


class CountingConnection(Connection):
    """A connection that counts the requests it sends: one per command, pipeline or script."""

    sent = 0
    lock = threading.Lock()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Count one round trip, then send."""
        with CountingConnection.lock:
            CountingConnection.sent += 1
        super().send_packed_command(command, check_health)
