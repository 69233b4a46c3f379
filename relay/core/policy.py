"""The retry policy: classify each reply, and say when to try again."""

from __future__ import annotations

import email.utils
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum

from relay.core import defaults
from relay.core.reply import Reply

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_FOUND_MAY_BE_EARLY = frozenset({"update-tags", "contact-status"})
# Retry-After delay-seconds: ASCII digits only; str.isdigit() also takes "²", which float refuses.
DELAY_SECONDS = re.compile(r"[0-9]+")


class Verdict(StrEnum):
    """What the policy makes of one reply."""

    # The values are stored in each attempt and shown by the APIs: never change one.
    DELIVERED = "delivered"
    THROTTLED = "throttled"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped."""

    base_seconds: float
    cap_seconds: float

    def ceiling(self, attempt: int) -> float:
        """Return the longest wait after the given attempt (1-based)."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return a random wait between 0 and the ceiling (full jitter)."""
        return rng.uniform(0, self.ceiling(attempt))


def classify(reply: Reply, endpoint: str, age_seconds: float) -> Verdict:
    """Return delivered, throttled, retry or permanent for one reply."""
    if reply.ok:
        return Verdict.DELIVERED
    if reply.status == 429:
        return Verdict.THROTTLED
    if reply.status is None or reply.status in TRANSIENT_STATUSES:
        return Verdict.RETRY
    if reply.status == 404 and endpoint in NOT_FOUND_MAY_BE_EARLY:
        # The contact may not be created yet (an earlier delivery still on its way).
        return (
            Verdict.RETRY if age_seconds < defaults.NOT_FOUND_GRACE_SECONDS else Verdict.PERMANENT
        )
    return Verdict.PERMANENT


def retry_after_seconds(reply: Reply, now: float, cap_seconds: float) -> float | None:
    """Return the wait DmTracker asked for (body retry_after, else Retry-After), at most the cap."""
    body = reply.json()
    wait = _seconds(body.get("retry_after")) if isinstance(body, dict) else None
    if wait is None:
        header = next((v for k, v in reply.headers.items() if k.lower() == "retry-after"), None)
        wait = _parse_retry_after(header, now) if header else None
    # A hint of a year is as good as none: the throttle budget runs out long before.
    return None if wait is None else min(wait, cap_seconds)


def _seconds(value: object) -> float | None:
    """Return a JSON number as a wait, or None unless it is a finite number of seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer too long for a float
        return None
    # An endless wait would park the delivery for good, a lost message in all but name.
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _parse_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if DELAY_SECONDS.fullmatch(value):
        return _seconds(float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC, never the machine's local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def schedule_table(max_attempts: int, backoff: Backoff) -> list[tuple[int, float, float]]:
    """Return (attempt, longest wait after it, expected time since the first attempt)."""
    rows, expected = [], 0.0
    for attempt in range(1, max_attempts):
        ceiling = backoff.ceiling(attempt)
        expected += ceiling / 2
        rows.append((attempt, ceiling, expected))
    return rows
