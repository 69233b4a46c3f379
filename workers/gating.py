"""The pause and circuit-breaker gate in front of an organization's deliveries.

A paused organization, or one whose breaker is open, has nothing taken off its queue: its
deliveries wait there and spend no attempts. While a breaker is open, one worker at a time may
take one delivery of it as the probe, every probe interval; the first success closes it.
Each worker reads every gate from Redis at most every REFRESH_SECONDS, so a pause, a resume or
a breaker another worker opened takes effect within that time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from relay.config import Settings
from relay.core.delivery import Delivery
from relay.core.gates import NO_GATES, Gates, is_auth_refusal
from relay.core.policy import Verdict
from relay.core.reply import Reply
from relay.storage.gates import OPENED, GateStore
from relay.storage.inflight import START, Taken

log = logging.getLogger("dmrelay.gate")
REFRESH_SECONDS = 0.2
# The probe's lock outlives a call that takes the full timeouts, with room for its bookkeeping.
PROBE_LOCK_EXTRA_SECONDS = 10.0
TakeFrom = Callable[[list[str]], Taken | None]
PassedOver = Callable[[Taken], object]
# Deliveries waiting behind their contact's earlier one come off the queue first, in a batch.
PROBE_TAKES = 200


class Gate:
    """Decide which organizations a worker may take from, and learn from every call's reply."""

    def __init__(self, store: GateStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._gates = NO_GATES
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self._probes: dict[str, str] = {}  # delivery id -> organization, probes in flight here
        self._failing: set[str] = set()  # organizations this process counted a failure for

    def current(self) -> Gates:
        """Return the gates as last read, reading them again when they are older than a moment."""
        now = time.monotonic()
        if now - self._read_at >= REFRESH_SECONDS:
            # On a Redis error the take fails the same way; the last known gates stand till then.
            with contextlib.suppress(redis.RedisError):
                self._gates = self.store.read()
            self._read_at = now
        return self._gates

    def refresh(self) -> None:
        """Read the gates again at the next look (after this worker changed one)."""
        self._read_at = float("-inf")

    def passable(self, org_ids: list[str]) -> list[str]:
        """Return the organizations, in the order given, whose deliveries may go now."""
        gates = self.current()
        return [org for org in org_ids if not gates.holds(org)]

    def take_probe(
        self, take: TakeFrom, holder: str, org_ids: list[str], passed_over: PassedOver
    ) -> Taken | None:
        """Take one delivery of an organization whose breaker waits for a probe, if one is due."""
        gates, now = self.current(), time.time()
        for org_id in org_ids:
            breaker = gates.breakers.get(org_id)
            if breaker is None or org_id in gates.paused or not breaker.probe_due(now):
                continue
            if not self.store.claim_probe(org_id, holder, self._probe_lock_seconds(), now):
                continue
            self.refresh()
            taken = self._first_startable(take, org_id, passed_over)
            if taken is not None:
                with self._lock:
                    self._probes[taken.delivery_id] = org_id
                log.info("probing DmTracker for %s with delivery %s", org_id, taken.delivery_id)
                return taken
            self.store.release_probe(org_id)  # nothing queued to probe with
        return None

    def _first_startable(
        self, take: TakeFrom, org_id: str, passed_over: PassedOver
    ) -> Taken | None:
        """Take from the organization's queue until a delivery starts (parked ones are skipped)."""
        for _ in range(PROBE_TAKES):
            taken = take([org_id])
            if taken is None or taken.verdict == START:
                return taken
            passed_over(taken)
        return None

    def _probe_lock_seconds(self) -> float:
        settings = self.settings
        timeouts = settings.http_connect_timeout_seconds + settings.http_read_timeout_seconds
        return timeouts + PROBE_LOCK_EXTRA_SECONDS

    def finish(self, delivery_id: str) -> None:
        """Let the next probe go once this worker's probe delivery is done, whatever its fate."""
        with self._lock:
            org_id = self._probes.pop(delivery_id, None)
        if org_id is not None:
            with contextlib.suppress(redis.RedisError):  # else the lock lapses by itself
                self.store.release_probe(org_id)

    def holds_after(self, delivery: Delivery, reply: Reply, verdict: Verdict) -> bool:
        """Count a call's reply; return True when the delivery must wait without using an attempt.

        Transient failures count towards opening the breaker; a refused token opens it at once.
        Any other answer shows DmTracker works and closes it.
        """
        auth = verdict == Verdict.PERMANENT and is_auth_refusal(reply.status)
        if verdict == Verdict.RETRY or auth:
            return self._failed(delivery, reply, auth=auth)
        if verdict != Verdict.THROTTLED:
            self._worked(delivery)
        return False

    def _failed(self, delivery: Delivery, reply: Reply, *, auth: bool) -> bool:
        org_id, settings = delivery.org_id, self.settings
        with self._lock:
            was_probe = self._probes.get(delivery.id) == org_id
            self._failing.add(org_id)
        outcome, breaker = self.store.record_failure(
            org_id,
            auth=auth,
            threshold=settings.breaker_failures,
            window_seconds=settings.breaker_window_seconds,
            probe_seconds=settings.breaker_probe_seconds,
            max_probe_seconds=settings.breaker_probe_max_seconds,
            was_probe=was_probe,
            error=str(reply.status if reply.status is not None else reply.error),
        )
        if breaker is None:
            return False
        if outcome == OPENED:
            why = "DmTracker refused its token" if auth else f"{breaker.failures} failures in a row"
            log.warning("circuit breaker of %s opened: %s", org_id, why)
        self.refresh()
        return True

    def _worked(self, delivery: Delivery) -> None:
        org_id = delivery.org_id
        with self._lock:
            counted = org_id in self._failing or delivery.id in self._probes
            self._failing.discard(org_id)
        # One round trip only when there is something to reset: not on every delivery.
        if counted or org_id in self.current().breakers:
            if self.store.record_success(org_id):
                log.warning("circuit breaker of %s closed: DmTracker answered again", org_id)
            self.refresh()
