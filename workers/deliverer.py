"""Deliver one delivery: order gate, rate-limit gate, HTTP call, then decide its fate."""

from __future__ import annotations

import logging
import random
import time

import redis

from relay.config import Settings
from relay.core import defaults, policy
from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS
from relay.core.policy import Verdict
from relay.core.redact import redact
from relay.core.reply import Reply
from relay.logs import bind_context
from relay.storage.answers import Answers, outcome_of
from relay.storage.metrics import Metrics
from relay.storage.ratelimit import RateLimiter
from relay.storage.store import Store
from workers.dmtracker import DmTrackerClient

log = logging.getLogger("dmrelay.delivery")

# Outcomes of one pass, for logs and metrics.
GONE, PARKED, RATE_LIMITED = "gone", "parked", "rate_limited"
# DmTracker's answer handed back to a waiting ManyChat request: whole, unlike the attempt log.
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
        self.answers = Answers(store.redis, store.keys)
        self.client = client
        self.limiter = limiter
        self.settings = settings
        self.backoff = policy.Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.secrets = settings.secrets()

    def process(self, delivery_id: str) -> str:
        """Take one delivery as far as it can go now; return what happened."""
        delivery = self.store.history.load(delivery_id)
        if delivery is None:
            return GONE
        # Into the context the worker opened for this delivery: every line below carries them.
        bind_context(
            request_id=delivery.request_id,
            delivery_id=delivery.id,
            organization=delivery.org_id,
            endpoint=delivery.endpoint,
        )
        if delivery.state in (DeliveryState.DELIVERED, DeliveryState.DEAD):
            self.store.ordering.release_if_finished(
                delivery
            )  # frees a contact an old crash blocked
            return GONE
        try:
            outcome = self._advance(delivery)
        except redis.RedisError:
            raise  # the worker hands the delivery back once Redis answers again
        except Exception as error:
            log.exception("delivery %s failed inside the relay", delivery.id)
            outcome = self._internal_failure(delivery, error)
        self.metrics.count(
            "dmrelay_deliveries",
            organization=delivery.org_id,
            endpoint=delivery.endpoint,
            outcome=outcome,
        )
        return outcome

    def _advance(self, delivery: Delivery) -> str:
        """Pass the order gate and the rate-limit gate, then call DmTracker."""
        if not self.store.ordering.try_start(delivery):
            return PARKED
        org = self.settings.org_by_id(delivery.org_id)
        if org is None:
            return self._dead(delivery, "the organization is no longer configured")
        if self._must_wait_for_rate_limit(delivery):
            return RATE_LIMITED
        reply = self.client.send(
            ENDPOINTS[delivery.endpoint], org.token, delivery.payload, delivery.request_id
        )
        return self._settle(delivery, reply)

    def _must_wait_for_rate_limit(self, delivery: Delivery) -> bool:
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
            self.store.schedule.put(delivery, time.time() + wait)
        return wait > 0

    def _settle(self, delivery: Delivery, reply: Reply) -> str:
        """Record the attempt and deliver, retry or dead-letter."""
        now = time.time()
        verdict = policy.classify(reply, delivery.endpoint, now - delivery.received_at)
        delivery.add_attempt(_attempt(reply, verdict, now, self.secrets))
        _log_attempt(delivery, reply, verdict)
        fate = self._decide(delivery, reply, verdict, now)
        # Statistics only once the fate is stored: a Redis blip here must not send it again.
        outcome = "delivered" if verdict == Verdict.DELIVERED else "failed"
        self._record(delivery, outcome, reply.latency_ms)
        self.metrics.observe(
            "dmrelay_attempt_seconds", reply.latency_ms / 1000, endpoint=delivery.endpoint
        )
        return fate

    def _decide(self, delivery: Delivery, reply: Reply, verdict: Verdict, now: float) -> str:
        """Deliver, retry or dead-letter according to the verdict on the reply."""
        if verdict == Verdict.DELIVERED:
            self.store.history.finish(
                delivery, DeliveryState.DELIVERED, self.settings.delivered_retention_seconds
            )
            self._publish_answer(delivery, redact(reply.body, self.secrets, ANSWER_MAX_BYTES))
            return DeliveryState.DELIVERED
        if verdict == Verdict.THROTTLED:
            # A 429 is DmTracker asking us to wait; it does not use up an attempt.
            wait = policy.retry_after_seconds(reply, now)
            if wait is None:  # no hint: back off further with each 429 in a row
                wait = self.backoff.ceiling(_throttled_in_a_row(delivery))
            wait += self.rng.uniform(0, defaults.RATE_LIMIT_JITTER_SECONDS)
            return self._retry(delivery, now + wait, "throttled by DmTracker (429)")
        if verdict == Verdict.PERMANENT:
            delivery.attempts_used += 1
            return self._dead(delivery, _reason(reply))
        return self._use_attempt(delivery, _reason(reply), now)

    def _internal_failure(self, delivery: Delivery, error: Exception) -> str:
        """Count a bug or bad data as a used attempt, so a poison message ends as a dead letter."""
        now = time.time()
        reason = f"internal error: {type(error).__name__}"
        delivery.add_attempt(Attempt(now, None, 0.0, Verdict.RETRY, "", reason))
        return self._use_attempt(delivery, reason, now)

    def _use_attempt(self, delivery: Delivery, reason: str, now: float) -> str:
        """Spend one attempt: back off and retry, or give up when the budget is spent."""
        delivery.attempts_used += 1
        if delivery.attempts_used >= self.settings.max_attempts:
            used = delivery.attempts_used
            return self._dead(delivery, f"gave up after {used} attempts: {reason}")
        delay = self.backoff.delay(delivery.attempts_used, self.rng)
        return self._retry(delivery, now + delay, reason)

    def _retry(self, delivery: Delivery, at: float, reason: str) -> str:
        delivery.state, delivery.reason = DeliveryState.RETRYING, reason
        self.store.schedule.put(delivery, at)
        return DeliveryState.RETRYING

    def _dead(self, delivery: Delivery, reason: str) -> str:
        delivery.reason = reason
        self.store.history.finish(
            delivery, DeliveryState.DEAD, self.settings.dead_letter_retention_seconds
        )
        self._publish_answer(delivery)
        self._record(delivery, "dead")
        log.warning("dead letter %s (%s): %s", delivery.id, delivery.endpoint, reason)
        return DeliveryState.DEAD

    def _publish_answer(self, delivery: Delivery, body: str | None = None) -> None:
        """Hand a finished delivery's answer to web requests waiting for it; best effort."""
        try:
            self.answers.publish(outcome_of(delivery, body), delivery.id)
        except redis.RedisError:
            log.warning("answer not published: Redis unavailable")

    def _record(self, delivery: Delivery, outcome: str, latency_ms: float | None = None) -> None:
        """Count an outcome for the overview; best effort, like the metrics."""
        try:
            self.store.stats.record(delivery.org_id, delivery.endpoint, outcome, latency_ms)
        except redis.RedisError:
            log.warning("statistics not recorded: Redis unavailable")


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
