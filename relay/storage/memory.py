"""How full Redis is: read with INFO at most once a second per process, for the budgets.

Ingest sizes each organization's byte budget from `maxmemory`, and stops storing in Redis
before `used_memory` reaches it, so workers keep room to register, take, finish and trim.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis

READING_MAX_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class MemoryReading:
    """Redis's memory in use and its limit (0: none), as INFO reported them."""

    used_bytes: int
    max_bytes: int

    def within_headroom(self, headroom: float) -> bool:
        """Return True when less than `headroom` of maxmemory is left free."""
        return bool(self.max_bytes) and self.used_bytes >= self.max_bytes * (1 - headroom)


class MemoryGauge:
    """The latest memory reading, refreshed when older than a second; None until one is read."""

    def __init__(
        self, connection: redis.Redis, max_age_seconds: float = READING_MAX_AGE_SECONDS
    ) -> None:
        self.redis = connection
        self.max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self._reading: MemoryReading | None = None
        self._read_at = float("-inf")

    def reading(self) -> MemoryReading | None:
        """Return a reading at most a second old; the last one if Redis does not answer."""
        with self._lock:
            if time.monotonic() - self._read_at < self.max_age_seconds:
                return self._reading
            self._read_at = time.monotonic()  # one try a second, even when it fails
            try:
                info = self.redis.info("memory")
            except redis.RedisError:
                return self._reading  # ingest finds out for itself whether Redis takes writes
            self._reading = MemoryReading(int(info["used_memory"]), int(info.get("maxmemory", 0)))
            return self._reading
