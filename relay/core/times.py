"""Times as the relay shows them: ISO 8601 in UTC. A stored time no calendar holds (infinite,
NaN, beyond the year 9999) shows as unknown rather than failing the page or route that shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(epoch: float | None) -> datetime | None:
    """Return epoch seconds as an aware UTC datetime, or None when there is no such time."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def iso_time(epoch: float | None) -> str | None:
    """Format epoch seconds as 2026-11-30T10:00:00.000Z, like DmTracker's timestamps."""
    moment = utc(epoch)
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
