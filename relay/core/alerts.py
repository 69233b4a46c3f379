"""Alerts as plain values: what an operator is told, and the rhythm of dead-letter alerts.

An alert names the organization by id and page name (never a token), says what happened, how
many, since when, and links to the dashboard page that shows it. Conditions (a refused token,
an open breaker, a backlog, no live worker, the spool, Redis memory, expiring dead letters)
fire once and send "resolved" once when they clear; dead letters and held requests come as
events: the first after a quiet period at once, then at most one digest per period.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from relay.core.delivery import BASE62_DIGITS, ID_TIME_CHARS
from relay.core.times import iso_time

FIRING, RESOLVED, EVENT, DIGEST, TEST = "firing", "resolved", "event", "digest", "test"
SEVERITY = {FIRING: "warning", RESOLVED: "ok", EVENT: "warning", DIGEST: "warning", TEST: "info"}
REASONS_LISTED = 5  # the most frequent reasons a message lists; the alert object has them all


@dataclass(frozen=True)
class Alert:
    """One message to the alert channels."""

    kind: str  # dead_letters, held, token_refused, breaker_open, backlog, no_worker, ...
    status: str  # firing, resolved, event, digest, test
    title: str
    summary: str
    org_id: str | None = None
    page_name: str | None = None
    count: int | None = None
    since: float | None = None
    link: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: f"alr_{uuid.uuid4().hex[:12]}")

    def to_json(self) -> str:
        """Serialise for the alert history."""
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        """Rebuild an alert from the history."""
        return cls(**json.loads(raw))


def text_of(alert: Alert) -> str:
    """Return the alert as one Slack-style message."""
    mark = {RESOLVED: "Resolved", TEST: "Test"}.get(alert.status, "Alert")
    lines = [f"[dmrelay] {mark}: {alert.title}", alert.summary]
    if alert.org_id:
        name = f"{alert.page_name} ({alert.org_id})" if alert.page_name else alert.org_id
        lines.append(f"Organization: {name}")
    if alert.count is not None:
        lines.append(f"How many: {alert.count}")
    if alert.since is not None:
        lines.append(f"Since: {iso_time(alert.since)}")
    for reason, count in Counter(alert.reasons).most_common(REASONS_LISTED):
        lines.append(f"  {count} x {reason}")
    if alert.link:
        lines.append(alert.link)
    return "\n".join(lines)


def webhook_body(alert: Alert) -> dict[str, Any]:
    """Return the webhook's JSON: Slack-compatible text plus the structured alert."""
    structured = {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "severity": SEVERITY.get(alert.status, "warning"),
        "title": alert.title,
        "summary": alert.summary,
        "organizationId": alert.org_id,
        "pageName": alert.page_name,
        "count": alert.count,
        "since": iso_time(alert.since) if alert.since is not None else None,
        "at": iso_time(alert.at),
        "reasons": alert.reasons,
        "link": alert.link,
    }
    return {"text": text_of(alert), "alert": structured}


def subject_of(alert: Alert) -> str:
    """Return the e-mail subject."""
    mark = {RESOLVED: "Resolved", TEST: "Test"}.get(alert.status, "Alert")
    who = f" — {alert.page_name or alert.org_id}" if alert.org_id else ""
    return f"[dmrelay] {mark}: {alert.title}{who}"


# -- the rhythm of dead-letter (and held-request) alerts ----------------------------------------
@dataclass
class Rhythm:
    """One organization's dead-letter alerting: when the last went, and what waits for a digest."""

    last_sent_at: float = 0.0
    pending: dict[str, int] = field(default_factory=dict)  # reason -> count
    pending_since: float | None = None

    def to_json(self) -> str:
        """Serialise for Redis."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Rhythm:
        """Rebuild from Redis (a fresh rhythm when there is none)."""
        return cls(**json.loads(raw)) if raw else cls()


@dataclass(frozen=True)
class Due:
    """What to send now for one organization: the first alert or a digest, with counts."""

    status: str  # EVENT (the first after a quiet period) or DIGEST
    reasons: dict[str, int]
    since: float


def step(
    rhythm: Rhythm, new: dict[str, int], first_at: float | None, now: float, period: float
) -> Due | None:
    """Take new dead letters into the rhythm; return what must go now, if anything."""
    quiet = now - rhythm.last_sent_at >= period
    if new and quiet and not rhythm.pending:
        rhythm.last_sent_at = now
        return Due(EVENT, dict(new), first_at if first_at is not None else now)
    if new:
        rhythm.pending = dict(Counter(rhythm.pending) + Counter(new))
        rhythm.pending_since = rhythm.pending_since or first_at or now
    if rhythm.pending and quiet:
        due = Due(DIGEST, rhythm.pending, rhythm.pending_since or now)
        rhythm.last_sent_at, rhythm.pending, rhythm.pending_since = now, {}, None
        return due
    return None


def short_reason(reason: str | None) -> str:
    """Return a reason fit to count by: without a response body's message."""
    text = (reason or "unknown").split(":")[0] if reason else "unknown"
    return text[:120]


def received_at_of(delivery_id: str) -> float | None:
    """Return when a delivery was accepted, read from its id (milliseconds in base 62)."""
    stamp = delivery_id.removeprefix("dlv_")[:ID_TIME_CHARS]
    if len(stamp) != ID_TIME_CHARS or not delivery_id.startswith("dlv_"):
        return None
    millis = 0
    for char in stamp:
        digit = BASE62_DIGITS.find(char)
        if digit < 0:
            return None
        millis = millis * 62 + digit
    return millis / 1000
