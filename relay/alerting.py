"""Watch the relay and tell the operator: the checks behind every alert, and their sending.

Each worker and web process with an alert channel runs an AlertWatch on a thread of its own,
so no check and no slow channel ever delays a delivery or a request. A round of checks runs
in one process at a time (a Redis lock); conditions fire and resolve once, events are sent
once (relay/storage/alerts.py). Sending happens on a second thread, with a timeout and tries
per channel (relay/notify.py); what each channel said is kept for the dashboard.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from relay.config import Settings
from relay.core import defaults
from relay.core.alerts import (
    DIGEST,
    FIRING,
    RESOLVED,
    TEST,
    Alert,
    Rhythm,
    short_reason,
    step,
)
from relay.core.delivery import Delivery, DeliveryState
from relay.core.gates import AUTH
from relay.notify import ChannelResult, Notifier
from relay.storage import server
from relay.storage.alerts import channel_entry
from relay.storage.store import Store

log = logging.getLogger("dmrelay.alerts")
# Dead letters in this state were held at the door (a flow sent what DmTracker refuses): they
# alert as "held" rather than as dead letters (relay/core/hold.py, relay/storage/held.py).
HELD_STATE = DeliveryState.HELD
DEAD_LETTERS, HELD = "dead_letters", "held"
DEAD_LETTERS_READ = 1000  # per round; the next round goes on from there


def dashboard_link(settings: Settings, path: str) -> str:
    """Return the link to a dashboard page, absolute when DMRELAY_PUBLIC_URL is set."""
    return f"{settings.public_url or ''}/dashboard{path}"


def start_watch(
    store: Store, settings: Settings, spool_depth: Callable[[], int] | None = None
) -> AlertWatch | None:
    """Start watching when an alert channel is configured; return the watch (else None)."""
    if not Notifier(settings).channels:
        return None
    check_seconds = defaults.ALERT_CHECK_SECONDS  # read now: tests shorten it
    return AlertWatch(store, settings, spool_depth=spool_depth, check_seconds=check_seconds).start()


# -- sending ------------------------------------------------------------------------------------
class AlertSender:
    """Send alerts on a thread of their own and keep the results in the history."""

    def __init__(self, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, alert: Alert) -> None:
        """Queue an alert; return at once."""
        self._queue.put(alert)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                deliver(self.store, self.notifier, alert)
            except Exception:
                log.exception("could not send or record alert %s", alert.id)


def deliver(store: Store, notifier: Notifier, alert: Alert, tries: int | None = None) -> list:
    """Send an alert to every channel and record it with each channel's result."""
    results = notifier.send(alert, tries)
    entries = [_entry(result) for result in results]
    log.info("alert %s (%s, %s) sent: %s", alert.kind, alert.status, alert.id, entries)
    try:
        store.alerts.record(alert, entries)
    except redis.RedisError as error:  # e.g. the spool alert, sent while Redis is away
        log.warning("alert %s sent but not recorded (%s)", alert.id, type(error).__name__)
    return entries


def _entry(result: ChannelResult) -> dict:
    return channel_entry(result.channel, result.ok, result.error, result.tries)


def send_test_alert(store: Store, notifier: Notifier, who: str) -> list:
    """Send a test alert to every channel now (one try each); return each channel's result."""
    alert = Alert(
        kind="test",
        status=TEST,
        title="test alert",
        summary=f"A test alert sent by {who}: the channel works.",
        link=dashboard_link(notifier.settings, "/alerts"),
    )
    return deliver(store, notifier, alert, tries=1)


# -- watching -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """A condition found in a round: its name, and the alert to send while it fires."""

    name: str
    alert: Alert


class AlertWatch:
    """Run the checks every few seconds and send what they find."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        spool_depth: Callable[[], int] | None = None,
        check_seconds: float = defaults.ALERT_CHECK_SECONDS,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.spool_depth = spool_depth
        self.check_seconds = check_seconds
        self.sender = AlertSender(store, notifier or Notifier(settings))
        self.holder = f"{socket.gethostname()}.{os.getpid()}.{id(self):x}"
        self.stopping = threading.Event()
        self._spool_firing = False
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)

    def start(self) -> AlertWatch:
        """Start watching and sending."""
        self.sender.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then send what is queued."""
        self.stopping.set()
        self._thread.join(timeout=30)
        self.sender.stop()

    def _run(self) -> None:
        while not self.stopping.wait(self.check_seconds):
            try:
                self.check_spool()
                if self.store.alerts.take_round(self.holder, self.check_seconds * 0.9):
                    self.run_checks(time.time())
            except redis.RedisError as error:
                log.warning("alert checks paused, Redis unavailable (%s)", type(error).__name__)
            except Exception:
                log.exception("alert checks failed")

    def run_checks(self, now: float) -> None:
        """Run one round: events first, then every condition."""
        self.check_dead_letters(now)
        found = [
            *self.breaker_conditions(),
            *self.backlog_conditions(now),
            *self.worker_conditions(now),
            *self.memory_conditions(),
            *self.expiry_conditions(now),
        ]
        self.settle_conditions(found, prefixes=CONDITION_PREFIXES)

    def settle_conditions(self, found: list[Condition], prefixes: tuple[str, ...]) -> None:
        """Fire what is newly found, resolve what was firing and is found no more."""
        alerts = self.store.alerts
        active = alerts.active()
        for condition in found:
            if condition.name not in active and alerts.fire(condition.name, _details(condition)):
                self.sender.submit(condition.alert)
        names = {condition.name for condition in found}
        for name in active:
            if name.startswith(prefixes) and name not in names:
                details = alerts.resolve(name)
                if details is not None:
                    self.sender.submit(resolved(details))

    # -- dead letters and held requests ----------------------------------------------------
    def check_dead_letters(self, now: float) -> None:
        """Count dead letters since the last round; send the first at once, later a digest."""
        alerts = self.store.alerts
        cursor = alerts.dead_cursor()
        found = alerts.dead_since(cursor, DEAD_LETTERS_READ)
        ids = [delivery_id for delivery_id, _ in found]
        new, first = self._group(self.store.history.iter_deliveries(ids))
        rhythms = alerts.rhythms()
        period = self.settings.alert_digest_minutes * 60
        for name in set(new) | {n for n, r in rhythms.items() if r.pending}:
            rhythm = rhythms.setdefault(name, Rhythm())
            due = step(rhythm, new.get(name, {}), first.get(name), now, period)
            if due is not None and alerts.claim_event(f"{name}:{due.status}:{now:.3f}"):
                self.sender.submit(
                    self._dead_letter_alert(name, due.status, due.reasons, due.since)
                )
        alerts.save_rhythms(found[-1][1] if found else cursor, rhythms)

    def _group(
        self, deliveries: Iterable[Delivery]
    ) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
        """Count new dead letters by 'organization:kind' and reason; note the first of each."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        first: dict[str, float] = {}
        for delivery in deliveries:
            kind = HELD if delivery.state == HELD_STATE else DEAD_LETTERS
            name = f"{delivery.org_id}:{kind}"
            counts[name][short_reason(delivery.reason)] += 1
            at = delivery.finished_at or time.time()
            first[name] = min(first.get(name, at), at)
        return {name: dict(c) for name, c in counts.items()}, first

    def _dead_letter_alert(
        self, name: str, status: str, reasons: dict[str, int], since: float
    ) -> Alert:
        org_id, kind = name.rsplit(":", 1)
        count = sum(reasons.values())
        noun = "held request" if kind == HELD else "dead letter"
        plural = noun if count == 1 else f"{noun}s"
        if status == DIGEST:
            title = f"{count} more {plural}"
            summary = f"{count} more {plural} since the last alert, by reason below."
        else:
            title = f"{count} new {plural}"
            summary = (
                "Requests a flow sent that DmTracker refuses are held; edit and replay them."
                if kind == HELD
                else "DmTracker refused a delivery or it ran out of attempts; replay it once fixed."
            )
        return self._org_alert(
            kind,
            status,
            title,
            summary,
            org_id,
            count=count,
            since=since,
            reasons=reasons,
            link=dashboard_link(self.settings, f"/dead-letters?tenantId={org_id}"),
        )

    def _org_alert(
        self, kind: str, status: str, title: str, summary: str, org_id: str, **more: Any
    ) -> Alert:
        org = self.settings.org_by_id(org_id)
        page_name = org.page_name if org else None
        return Alert(kind, status, title, summary, org_id=org_id, page_name=page_name, **more)

    # -- conditions ------------------------------------------------------------------------
    def breaker_conditions(self) -> list[Condition]:
        """Return a refused token or an open breaker per organization, and pauses."""
        gates = self.store.gates.read()
        link = dashboard_link(self.settings, "/")
        found = []
        for org_id, breaker in gates.breakers.items():
            if breaker.reason == AUTH:
                title, summary = (
                    "DmTracker refuses the organization's token",
                    "Every delivery of this organization waits, spending no attempts, until "
                    "DmTracker takes the token again (401/403); fix the token in DMRELAY_ORGS.",
                )
                kind = "token_refused"
            else:
                title, summary = (
                    "circuit breaker open: DmTracker keeps failing",
                    f"{breaker.failures} transient failures in a row; deliveries wait, spending "
                    "no attempts, and one probe tests DmTracker now and then.",
                )
                kind = "breaker_open"
            alert = self._org_alert(
                kind, FIRING, title, summary, org_id, since=breaker.opened_at, link=link
            )
            found.append(Condition(f"{kind}:{org_id}", alert))
        for org_id, since in gates.paused.items():
            alert = self._org_alert(
                "paused",
                FIRING,
                "organization paused",
                "Its requests are accepted and kept; nothing is delivered until it is resumed.",
                org_id,
                since=since,
                link=link,
            )
            found.append(Condition(f"paused:{org_id}", alert))
        return found

    def backlog_conditions(self, now: float) -> list[Condition]:
        """Return organizations whose oldest undelivered delivery is older than allowed."""
        limit = self.settings.alert_backlog_minutes * 60
        found = []
        for org in self.settings.orgs:
            oldest = self.store.alerts.oldest_undelivered(org.id)
            if oldest is not None and now - oldest > limit:
                minutes = (now - oldest) / 60
                alert = self._org_alert(
                    "backlog",
                    FIRING,
                    "deliveries are late",
                    f"The oldest undelivered delivery waits for {minutes:.0f} minutes "
                    f"(the limit is {self.settings.alert_backlog_minutes:g}).",
                    org.id,
                    since=oldest,
                    link=dashboard_link(self.settings, "/"),
                )
                found.append(Condition(f"backlog:{org.id}", alert))
        return found

    def worker_conditions(self, now: float) -> list[Condition]:
        """Return 'no live worker' once no worker has beaten for two minutes."""
        inflight = self.store.inflight
        live = set(inflight.workers()) - set(inflight.dead_workers(""))  # not a worker itself
        since = self.store.alerts.no_worker_since(now, alive=bool(live))
        if since is None or now - since < defaults.ALERT_NO_WORKER_SECONDS:
            return []
        alert = Alert(
            "no_worker",
            FIRING,
            "no live worker",
            "No worker has sent a heartbeat for two minutes: nothing is being delivered.",
            since=since,
            link=dashboard_link(self.settings, "/"),
        )
        return [Condition("no_worker", alert)]

    def memory_conditions(self) -> list[Condition]:
        """Return Redis memory above the share of maxmemory that leaves room to accept."""
        facts = server.inspect_server(self.store.redis)
        free = facts.free_memory_fraction
        if free is None or 1 - free <= defaults.ALERT_REDIS_MEMORY_SHARE:
            return []
        alert = Alert(
            "redis_memory",
            FIRING,
            "Redis memory nearly full",
            f"Redis uses {1 - free:.0%} of maxmemory; when full, requests go to the spool.",
            link=dashboard_link(self.settings, "/"),
        )
        return [Condition("redis_memory", alert)]

    def expiry_conditions(self, now: float) -> list[Condition]:
        """Return dead letters that expire within three days, unless replayed or purged."""
        retention = self.settings.dead_letter_retention_seconds
        before = now - retention + defaults.ALERT_EXPIRY_WARNING_SECONDS
        count = int(self.store.redis.zcount(self.store.keys.dead, "-inf", before))
        if not count:
            return []
        alert = Alert(
            "expiring",
            FIRING,
            "dead letters expire soon",
            f"{count} dead letter(s) expire within 3 days; replay or purge them.",
            count=count,
            link=dashboard_link(self.settings, "/dead-letters"),
        )
        return [Condition("expiring", alert)]

    # -- the spool: this machine's own, decided here -----------------------------------------
    def check_spool(self) -> None:
        """Alert once while this process's spool holds requests (Redis did not take them)."""
        depth = self.spool_depth() if self.spool_depth else 0
        if bool(depth) == self._spool_firing:
            return
        self._spool_firing = bool(depth)
        host = socket.gethostname()
        alert = Alert(
            "spool",
            FIRING if depth else RESOLVED,
            "requests spooled on disk" if depth else "spool empty again",
            f"Redis could not take requests; {depth} wait in the spool of {host}."
            if depth
            else f"The spool of {host} has drained into Redis.",
            count=depth or None,
            link=dashboard_link(self.settings, "/"),
        )
        self.sender.submit(alert)


CONDITION_PREFIXES = (
    "token_refused:",
    "breaker_open:",
    "paused:",
    "backlog:",
    "no_worker",
    "redis_memory",
    "expiring",
)


def _details(condition: Condition) -> dict:
    """Return what a firing condition keeps for its 'resolved' message."""
    alert = condition.alert
    return {
        "kind": alert.kind,
        "title": alert.title,
        "org_id": alert.org_id,
        "page_name": alert.page_name,
        "since": alert.since or alert.at,
        "link": alert.link,
    }


def resolved(details: dict) -> Alert:
    """Return the message that a condition has cleared."""
    return Alert(
        details["kind"],
        RESOLVED,
        f"{details['title']}: resolved",
        "The condition has cleared.",
        org_id=details.get("org_id"),
        page_name=details.get("page_name"),
        since=details.get("since"),
        link=details.get("link"),
    )
