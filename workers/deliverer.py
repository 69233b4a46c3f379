"""Deliver one delivery the worker holds a lease on: rate-limit gate, HTTP call, then its fate."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict

import redis

from relay.config import Settings
from relay.core import defaults, policy
from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS
from relay.core.errors import LeaseLost
from relay.core.policy import Verdict
from relay.core.redact import redact
from relay.core.reply import Reply
from relay.logs import bind_context
from relay.storage.inflight import FINISHED, GONE, Lease, Taken
from relay.storage.metrics import Metrics
from relay.storage.ratelimit import RateLimiter
from relay.storage.store import Store
from workers.dmtracker import DmTrackerClient
from workers.gating import Gate

log = logging.getLogger("dmrelay.delivery")

# Outcomes of one pass, for logs and metrics (besides the take's verdicts and the states).
RATE_LIMITED, LEASE_LOST, BREAKER_HELD = "rate_limited", "lease_lost", "breaker_held"
REPLAYED = "replayed"  # a dead letter an RQ tool requeued, taken: replayed
# DmTracker's answer handed back to a waiting ManyChat request: whole, unlike the attempt log.
# How long a delivery's thread keeps trying to record the outcome of a call it made while
# Redis is away (a restart): recorded late, it is not sent again. Short enough that a stopping
# worker still ends within Heroku's 30 s.
RECORD_PATIENCE_SECONDS = 10.0
ANSWER_MAX_BYTES = defaults.MAX_BODY_BYTES


class Deliverer:
    """Carry deliveries to DmTracker under the retry policy."""

    def __init__(
        self,
        store: Store,
        client: DmTrackerClient,
        limiter: RateLimiter,
        settings: Settings,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.metrics = Metrics(store)
        self.client = client
        self.limiter = limiter
        self.settings = settings
        self.backoff = policy.Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds)
        self.rng = rng or random.Random()  # noqa: S311 - jitter and sampling, not cryptography
        self.secrets = settings.secrets()
        self.gate = Gate(store.gates, settings)

    def note(self, taken: Taken) -> str:
        """Count a take that starts nothing (parked, held, finished, gone); return its verdict."""
        verdict = taken.verdict
        if verdict == GONE:
            log.warning("delivery %s taken, but its record has vanished", taken.delivery_id)
        elif verdict == FINISHED and self._requeued_by_rq(taken):
            verdict = REPLAYED
        self.metrics.count(
            "dmrelay_deliveries",
            organization=taken.org_id,
            endpoint=taken.endpoint,
            outcome=verdict,
        )
        return verdict

    def _requeued_by_rq(self, taken: Taken) -> bool:
        """Replay a dead letter an RQ tool put back on its queue (rq-dashboard's requeue)."""
        store = self.store
        if not store.rqjobs.requeued_by_rq(taken.delivery_id, taken.org_id):
            return False
        replayed = store.dead.replay(taken.delivery_id)
        if replayed:
            log.info("dead letter %s requeued from an RQ tool: replayed", taken.delivery_id)
        return replayed

    def run(self, taken: Taken) -> str:
        """Take a delivery the worker holds the lease on as far as it can go now."""
        delivery, lease = taken.delivery, taken.lease
        if delivery is None:
            raise ValueError(f"take of {taken.delivery_id} did not start it ({taken.verdict})")
        # Into the context the worker opened for this delivery: every line below carries them.
        bind_context(
            request_id=delivery.request_id,
            delivery_id=delivery.id,
            organization=delivery.org_id,
            endpoint=delivery.endpoint,
        )
        try:
            outcome = self._attempt_safely(delivery, lease)
        except LeaseLost as lost:
            _log_lease_lost(lost)
            outcome = LEASE_LOST
        self.metrics.count(
            "dmrelay_deliveries",
            organization=delivery.org_id,
            endpoint=delivery.endpoint,
            outcome=outcome,
        )
        return outcome

    def _attempt_safely(self, delivery: Delivery, lease: Lease) -> str:
        """Advance the delivery; a bug or bad data uses up an attempt instead of looping."""
        try:
            return self._advance(delivery, lease)
        except (redis.RedisError, LeaseLost):
            raise  # Redis: the worker hands the delivery back once Redis answers again
        except Exception as error:
            log.exception("delivery %s failed inside the relay", delivery.id)
            return self._internal_failure(delivery, lease, error)

    def _advance(self, delivery: Delivery, lease: Lease) -> str:
        """Pass the rate-limit gate, then call DmTracker (the take passed the order gate)."""
        org = self.settings.org_by_id(delivery.org_id)
        if org is None:
            return self._dead(delivery, lease, "the organization is no longer configured")
        if self._must_wait_for_rate_limit(delivery, lease):
            return RATE_LIMITED
        reply = self.client.send(
            ENDPOINTS[delivery.endpoint], org.token, delivery.payload, delivery.request_id
        )
        return self._settle(delivery, lease, reply)

    def _must_wait_for_rate_limit(self, delivery: Delivery, lease: Lease) -> bool:
        """Take a permit, or reschedule the delivery to its reserved slot."""
        limit = self.settings.rate_limits_per_minute.get(delivery.endpoint)
        if not limit:
            return False
        wait = self.limiter.acquire(
            delivery.org_id, delivery.endpoint, limit, reserved=delivery.holds_rate_slot
        )
        delivery.holds_rate_slot = wait > 0
        if wait > 0:
            self.metrics.count(
                "dmrelay_rate_limit_waits", organization=delivery.org_id, endpoint=delivery.endpoint
            )
            delivery.state = DeliveryState.RETRYING if delivery.attempts else delivery.state
            self.store.schedule.put(delivery, time.time() + wait, lease)
        return wait > 0

    def _settle(self, delivery: Delivery, lease: Lease, reply: Reply) -> str:
        """Record the attempt and deliver, retry or dead-letter."""
        now = time.time()
        verdict = policy.classify(reply, delivery.endpoint, now - delivery.received_at)
        delivery.add_attempt(_attempt(reply, verdict, now, self.secrets))
        _log_attempt(delivery, reply, verdict)
        if self.gate.holds_after(delivery, reply, verdict):
            fate = self._hold(delivery, lease, _reason(reply), now)
        else:
            fate = self._decide(delivery, lease, reply, verdict, now)
        # Statistics only once the fate is stored: a Redis blip here must not send it again.
        outcome = "delivered" if verdict == Verdict.DELIVERED else "failed"
        self.store.stats.record_later(delivery.org_id, delivery.endpoint, outcome, reply.latency_ms)
        self.metrics.observe(
            "dmrelay_attempt_seconds", reply.latency_ms / 1000, endpoint=delivery.endpoint
        )
        return fate

    def _decide(
        self, delivery: Delivery, lease: Lease, reply: Reply, verdict: Verdict, now: float
    ) -> str:
        """Deliver, retry or dead-letter according to the verdict on the reply."""
        if verdict == Verdict.DELIVERED:
            return self._delivered(delivery, lease, reply)
        if verdict == Verdict.THROTTLED:
            return self._throttled(delivery, lease, reply, now)
        if verdict == Verdict.PERMANENT:
            delivery.attempts_used += 1
            return self._dead(delivery, lease, _reason(reply))
        return self._use_attempt(delivery, lease, _reason(reply), now)

    def _delivered(self, delivery: Delivery, lease: Lease, reply: Reply) -> str:
        """Record the delivery, keeping its full record only for the configured sample."""
        summary = self.rng.random() >= self.settings.full_record_sample_rate
        retention = self.settings.delivered_retention_seconds
        answer = redact(reply.body, self.secrets, ANSWER_MAX_BYTES)  # whole, for a waiter
        self.store.history.finish(
            delivery,
            DeliveryState.DELIVERED,
            retention,
            lease,
            summary=summary,
            answer_body=answer,
            patience_seconds=RECORD_PATIENCE_SECONDS,
        )
        return DeliveryState.DELIVERED

    def _hold(self, delivery: Delivery, lease: Lease, reason: str, now: float) -> str:
        """Put the delivery back behind its open breaker, spending no attempt."""
        self._retry(delivery, lease, now + defaults.BREAKER_HOLD_SECONDS, f"breaker open: {reason}")
        return BREAKER_HELD

    def _throttled(self, delivery: Delivery, lease: Lease, reply: Reply, now: float) -> str:
        """Wait as DmTracker asks, within bounds; a 429 uses no attempt, but has a budget."""
        if delivery.throttled_since is None:
            delivery.throttled_since = now
        budget = self.settings.throttle_budget_seconds
        if now - delivery.throttled_since >= budget:
            reason = f"throttled by DmTracker (429) past the throttle budget of {budget:g} s"
            return self._dead(delivery, lease, reason)
        wait = policy.retry_after_seconds(reply, now, self.settings.max_retry_after_seconds)
        if wait is None:  # no usable hint: back off further with each 429 in a row
            wait = self.backoff.ceiling(_throttled_in_a_row(delivery))
        wait += self.rng.uniform(0, defaults.RATE_LIMIT_JITTER_SECONDS)
        return self._retry(delivery, lease, now + wait, "throttled by DmTracker (429)")

    def _internal_failure(self, delivery: Delivery, lease: Lease, error: Exception) -> str:
        """Count a bug or bad data as a used attempt, so a poison message ends as a dead letter."""
        now = time.time()
        reason = f"internal error: {type(error).__name__}"
        delivery.add_attempt(Attempt(now, None, 0.0, Verdict.RETRY, "", reason))
        return self._use_attempt(delivery, lease, reason, now)

    def _use_attempt(self, delivery: Delivery, lease: Lease, reason: str, now: float) -> str:
        """Spend one attempt: back off and retry, or give up when the budget is spent."""
        delivery.attempts_used += 1
        if delivery.attempts_used >= self.settings.max_attempts:
            used = delivery.attempts_used
            return self._dead(delivery, lease, f"gave up after {used} attempts: {reason}")
        delay = self.backoff.delay(delivery.attempts_used, self.rng)
        return self._retry(delivery, lease, now + delay, reason)

    def _retry(self, delivery: Delivery, lease: Lease, at: float, reason: str) -> str:
        """Schedule the next attempt and log the failed one, with its bodies, for operators."""
        delivery.state, delivery.reason = DeliveryState.RETRYING, reason
        failed = _failed_attempt_json(delivery)
        self.store.schedule.put(delivery, at, lease, failed, RECORD_PATIENCE_SECONDS)
        return DeliveryState.RETRYING

    def _dead(self, delivery: Delivery, lease: Lease, reason: str) -> str:
        delivery.reason = reason
        retention = self.settings.dead_letter_retention_seconds
        self.store.history.finish(
            delivery, DeliveryState.DEAD, retention, lease, patience_seconds=RECORD_PATIENCE_SECONDS
        )
        self.store.stats.record_later(delivery.org_id, delivery.endpoint, "dead")
        log.warning("dead letter %s (%s): %s", delivery.id, delivery.endpoint, reason)
        return DeliveryState.DEAD


def _log_lease_lost(lost: LeaseLost) -> None:
    """Say who has the delivery now: another take's result wins, or it runs again."""
    if lost.holder:
        log.warning(
            "delivery %s: lease lost to a take by worker %s, result dropped",
            lost.delivery_id,
            lost.holder,
        )
    else:
        log.warning(
            "delivery %s: its lease was handed back while it ran (this worker was taken for"
            " dead), result dropped; it runs again",
            lost.delivery_id,
        )


def _failed_attempt_json(delivery: Delivery) -> str:
    """Return the log entry of a delivery's latest attempt: ids, attempt, request body."""
    last = asdict(delivery.last_attempt) if delivery.last_attempt else {}
    entry = {"id": delivery.id, "org_id": delivery.org_id, "endpoint": delivery.endpoint}
    entry |= last | {"request": delivery.payload}
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def _attempt(reply: Reply, verdict: Verdict, at: float, secrets: tuple[str, ...]) -> Attempt:
    body = redact(reply.body, secrets=secrets)
    return Attempt(at, reply.status, reply.latency_ms, verdict, body, reply.error)


def _throttled_in_a_row(delivery: Delivery) -> int:
    """Return how many of the latest attempts were answered 429."""
    outcomes = [attempt.outcome for attempt in reversed(delivery.attempts)]
    return next((i for i, o in enumerate(outcomes) if o != Verdict.THROTTLED), len(outcomes))


def _reason(reply: Reply) -> str:
    if reply.status is None:
        return f"DmTracker unreachable ({reply.error})"
    return f"DmTracker answered {reply.status}"


def _log_attempt(delivery: Delivery, reply: Reply, verdict: Verdict) -> None:
    """Write the one log line of an attempt: ids, status, latency; never the body or token."""
    log.info(
        "attempt %s %s: %s",
        delivery.endpoint,
        delivery.id,
        reply.status if reply.status is not None else reply.error,
        extra={  # the ids come from the delivery's log context
            "fields": {
                "attempt": delivery.attempt_count,
                "status": reply.status,
                "error": reply.error,
                "latency_ms": reply.latency_ms,
                "outcome": verdict,
            }
        },
    )
