"""Pause and circuit breaker: what holds an organization's deliveries back, as plain values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Why a breaker opened: consecutive transient failures, or DmTracker refusing the token.
TRANSIENT, AUTH = "transient", "auth"
AUTH_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class Breaker:
    """An open circuit breaker of one organization."""

    org_id: str
    reason: str
    opened_at: float
    interval: float
    next_probe_at: float
    failures: int = 0
    probes: int = 0
    last_error: str = ""

    @classmethod
    def from_json(cls, org_id: str, raw: str) -> Breaker:
        """Rebuild a breaker from the JSON the breaker scripts store."""
        data: dict[str, Any] = json.loads(raw)
        return cls(
            org_id=org_id,
            reason=str(data.get("reason", TRANSIENT)),
            opened_at=float(data.get("opened_at", 0)),
            interval=float(data.get("interval", 0)),
            next_probe_at=float(data.get("next_probe_at", 0)),
            failures=int(data.get("failures", 0)),
            probes=int(data.get("probes", 0)),
            last_error=str(data.get("last_error", "")),
        )

    def probe_due(self, now: float) -> bool:
        """Tell whether a probe may go now."""
        return now >= self.next_probe_at


@dataclass(frozen=True)
class Gates:
    """Which organizations are paused (since when) and whose breaker is open."""

    paused: dict[str, float]
    breakers: dict[str, Breaker]

    def holds(self, org_id: str) -> bool:
        """Tell whether the organization's deliveries must wait."""
        return org_id in self.paused or org_id in self.breakers


NO_GATES = Gates({}, {})


def is_auth_refusal(status: int | None) -> bool:
    """Tell whether DmTracker refused the organization's token (every call would fail)."""
    return status in AUTH_STATUSES
