"""What DmTracker answered to one call: the value the retry policy judges."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What DmTracker answered, or why it could not be reached."""

    status: int | None
    body: str
    latency_ms: float
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Return True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """Return the body parsed as JSON, or None."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # RecursionError: "[" nested 50,000 deep
            return None
