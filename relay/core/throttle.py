"""A token bucket: at most `rate` events a second on average, bursts of `burst` allowed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """Let events through while tokens last; tokens come back at a steady rate."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is back (none taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    """Return a wait as whole seconds for a Retry-After header: rounded up, at least 1."""
    return max(1, math.ceil(wait))
