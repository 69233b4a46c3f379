"""A rate limiter shared in Redis by every worker: a sliding log plus reserved wake-up slots."""

from __future__ import annotations

import uuid

import redis

from relay.storage import lua
from relay.storage.keys import Keys

# A second more than DmTracker's minute: a permit is counted when the request leaves, DmTracker
# counts it when it arrives, and arrivals shift with latency. Costs 1/61 of the rate.
WINDOW_SECONDS = 61.0


class RateLimiter:
    """Hand out send permits per organization and endpoint, never more than the limit."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._acquire = lua.register(connection, "rate_limit")

    def acquire(
        self, org_id: str, endpoint: str, per_minute: int, *, reserved: bool = False
    ) -> float:
        """Take a permit now (return 0) or reserve a later slot (return seconds to wait)."""
        wait = self._acquire(
            keys=list(self.keys.rate_limit(org_id, endpoint)),
            args=[WINDOW_SECONDS, per_minute, int(reserved), uuid.uuid4().hex],
        )
        return float(wait)
