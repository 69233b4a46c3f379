"""Times as the relay's APIs show them: ISO 8601 in UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_time(epoch: float | None) -> str | None:
    """Format epoch seconds as 2026-11-30T10:00:00.000Z, like DmTracker's timestamps."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
