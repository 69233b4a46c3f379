"""Settling after an outage: what was accepted since it began waits for every spool to drain.

A web process that cannot reach Redis keeps requests in its host's spool; once Redis is back,
another host may store a contact's newer message directly while the older one is still in a
spool. So every web process pulses Redis a few times a second (and every accept does), and the
first one to reach Redis after a silence longer than `gap_seconds` starts a settle: deliveries
accepted since the silence began, less `skew_seconds`, are not taken until `settle_seconds`
have passed, and each delivery a drain brings in extends that. A drained delivery takes its
place in its contact's chain by acceptance time, so it goes before the newer ones it waited
for. The clocks compared are Redis's (the silence) and the accepting host's (delivery ids):
hosts whose clocks differ by up to `skew_seconds` keep order (docs/spool.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from relay.config import default_of
from relay.core import defaults
from relay.storage import lua
from relay.storage.keys import Keys


@dataclass(frozen=True)
class SettleTimes:
    """How long a silence means an outage, how long deliveries settle, the skew allowed."""

    settle_seconds: float = default_of("settle_seconds")
    skew_seconds: float = default_of("clock_skew_seconds")
    gap_seconds: float = defaults.OUTAGE_GAP_SECONDS

    def script_args(self) -> list[str]:
        """Return the three times as the scripts take them, in whole milliseconds."""
        seconds = (self.gap_seconds, self.settle_seconds, self.skew_seconds)
        return [str(round(value * 1000)) for value in seconds]


def settle_key(keys: Keys) -> str:
    """Return the hash the scripts keep the pulse and the settling in."""
    return keys.key("settle")


class Settle:
    """The web side's pulse, and what the settling holds back."""

    def __init__(self, connection: redis.Redis, keys: Keys, times: SettleTimes) -> None:
        self.redis = connection
        self.key = settle_key(keys)
        self.times = times
        self._pulse = lua.register(connection, "settle", "pulse")

    def pulse(self) -> float:
        """Tell Redis a web process reaches it; return how long deliveries still settle (s)."""
        return int(self._pulse(keys=[self.key], args=self.times.script_args())) / 1000
