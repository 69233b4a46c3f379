"""The front door: admit a request, then store it in Redis within a deadline, or spool it.

ManyChat never retries, so a request the relay has validated is answered 200 whatever Redis
does: stored (one round trip to Redis, bounded by DMRELAY_INGEST_REDIS_DEADLINE_SECONDS), or
appended to the local spool when Redis is unreachable, hangs, is read-only or refuses writes.
While the host's spool holds requests, new ones join them there, so each contact's requests
reach Redis in the order they were accepted; a contact's chain in Redis is ordered by acceptance
time, and workers let every spool drain before they take what came after an outage
(relay/storage/settle.py).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import redis

from relay.config import Settings
from relay.core import defaults
from relay.core.delivery import Delivery, DeliveryState
from relay.core.errors import RateLimitExceeded, ServiceUnavailable
from relay.core.throttle import TokenBucket, retry_after_seconds
from relay.storage.connection import refuses_writes, why_not_writable
from relay.storage.intake import (
    DUPLICATE,
    FULL,
    NO_QUOTAS,
    ORG_BYTES_FULL,
    ORG_FULL,
    Accepted,
    Quotas,
)
from relay.storage.memory import MemoryGauge, MemoryReading
from relay.storage.server import mebibytes
from relay.storage.store import Store
from relay.web.spool import Spool, SpoolEntry

log = logging.getLogger("dmrelay.ingest")
QUOTA_RETRY_AFTER_SECONDS = 60
PULSE_SECONDS = 0.25  # a quarter of the silence that counts as an outage (settle.py)


class FrontDoor:
    """Admit, store or spool the requests of one web process."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.intake = store.intake
        self.spool = Spool(Path(settings.spool_dir), settings.spool_max_bytes, self.store_spooled)
        self.memory = MemoryGauge(store.redis)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._settling_until = 0.0  # monotonic: deliveries settle after an outage till then

    def start(self) -> None:
        """Start draining the host's spool, and pulsing Redis so outages are noticed."""
        self.spool.start()
        threading.Thread(target=self._pulse, name="dmrelay-pulse", daemon=True).start()

    def _pulse(self) -> None:
        while not self._stopping.wait(PULSE_SECONDS):
            try:
                remaining = self.store.settle.pulse()
            except redis.RedisError:  # Redis is away: the silence is the point
                continue
            self._settling_until = time.monotonic() + remaining

    @property
    def settling(self) -> bool:
        """Say whether deliveries accepted now settle, as of the last pulse."""
        return time.monotonic() < self._settling_until

    def admit(self, org_id: str) -> None:
        """Let the request through the organization's rate limit, or raise 429."""
        rate = self.settings.ingest_rate_per_org
        if not rate:
            return
        with self._lock:
            bucket = self._buckets.get(org_id)
            if bucket is None:
                burst = max(1.0, rate * defaults.INGEST_BURST_SECONDS)
                bucket = self._buckets[org_id] = TokenBucket(rate, burst)
            wait = bucket.take()
        if wait:
            seconds = retry_after_seconds(wait)
            raise RateLimitExceeded(
                f"This organization sent more than {rate:g} requests per second to the relay;"
                f" wait {seconds} s before sending more.",
                seconds,
            )

    def accept(self, delivery: Delivery, fingerprint: str) -> Accepted:
        """Store the request in Redis, or keep it in the spool; raise 503 only if neither can."""
        if self.spool.active:
            return self._spool(delivery, fingerprint)
        reading = self.memory.reading()
        if self._within_headroom(reading):
            log.warning("%s: spooled", self._memory_note(reading))
            return self._spool(delivery, fingerprint)
        try:
            outcome = self.intake.accept(
                delivery,
                fingerprint,
                window_seconds=self.settings.dedup_window_seconds,
                quotas=self._quotas(reading),
            )
        except redis.RedisError as error:
            log.warning("redis did not take a request (%s): spooled", why_not_writable(error))
            return self._spool(delivery, fingerprint)
        if outcome.result in (ORG_FULL, ORG_BYTES_FULL, FULL):
            raise self._over_quota(outcome.result, reading)
        settling = outcome.settling or self.settling
        return Accepted(
            outcome.delivery_id, duplicate=outcome.result == DUPLICATE, settling=settling
        )

    def _quotas(self, reading: MemoryReading | None) -> Quotas:
        settings = self.settings
        return Quotas(
            settings.max_pending_per_org,
            settings.max_pending_deliveries,
            self.org_byte_budget(reading),
        )

    def org_byte_budget(self, reading: MemoryReading | None) -> int:
        """Return the bytes of undelivered messages each organization may keep; 0: no limit."""
        if self.settings.max_pending_bytes_per_org:
            return self.settings.max_pending_bytes_per_org
        if reading is None or not reading.max_bytes:
            return 0
        share = reading.max_bytes * self.settings.pending_bytes_share
        return int(share / len(self.settings.orgs))

    def _within_headroom(self, reading: MemoryReading | None) -> bool:
        return reading is not None and reading.within_headroom(self.settings.redis_headroom)

    def _memory_note(self, reading: MemoryReading | None) -> str:
        """Say how full Redis is, against the headroom kept for delivery."""
        if reading is None:
            return "Redis memory unknown"
        return (
            f"Redis memory: {mebibytes(reading.used_bytes)} of {mebibytes(reading.max_bytes)}"
            f" used, inside the {self.settings.redis_headroom:.0%} kept free for delivery"
        )

    def hold(self, delivery: Delivery) -> None:
        """Store a held request beside the dead letters, or keep it in the spool."""
        if self.spool.active:
            self._spool(delivery, "")
            return
        reading = self.memory.reading()
        if self._within_headroom(reading):
            log.warning("%s: held request spooled", self._memory_note(reading))
            self._spool(delivery, "")
            return
        try:
            self.store.held.keep(delivery, self.settings.dead_letter_retention_seconds)
        except redis.RedisError as error:
            log.warning("redis did not take a held request (%s): spooled", why_not_writable(error))
            self._spool(delivery, "")

    def _spool(self, delivery: Delivery, fingerprint: str) -> Accepted:
        self.spool.append(SpoolEntry(delivery, fingerprint))
        return Accepted(delivery.id, duplicate=False, spooled=True)

    def _over_quota(self, result: str, reading: MemoryReading | None) -> ServiceUnavailable:
        if result == ORG_FULL:
            held = f"{self.settings.max_pending_per_org} undelivered messages for this organization"
        elif result == ORG_BYTES_FULL:
            budget = mebibytes(self.org_byte_budget(reading))
            held = f"{budget} of undelivered messages for this organization"
        else:
            held = f"{self.settings.max_pending_deliveries} undelivered messages in all"
        return ServiceUnavailable(
            f"The relay holds {held}, its limit; try again later.",
            headers={"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)},
        )

    def store_spooled(self, entry: SpoolEntry) -> str | None:
        """Store a spooled request: no quota (it was answered 200), dedup as if it came now.

        Returns None once Redis has it, or the reason Redis refused it for good. Not while
        Redis is inside its headroom: the request waits in the spool, so draining never takes
        the room the workers need to deliver.
        """
        reading = self.memory.reading()
        if self._within_headroom(reading):
            raise redis.exceptions.OutOfMemoryError(self._memory_note(reading))
        try:
            if entry.delivery.state == DeliveryState.HELD:
                self.store.held.keep(entry.delivery, self.settings.dead_letter_retention_seconds)
                return None
            self.intake.accept(
                entry.delivery,
                entry.fingerprint,
                window_seconds=self.settings.dedup_window_seconds,
                quotas=NO_QUOTAS,
                spooled=True,
            )
        except redis.ResponseError as error:
            if refuses_writes(error):
                raise
            return str(error)[:200]
        return None

    def readiness(self) -> str | None:
        """Return why this process should not get traffic, or None when it is ready."""
        reading = self.memory.reading()
        full = f"{self._memory_note(reading)}; " if self._within_headroom(reading) else ""
        entries, _ = self.spool.depth()
        if entries:
            return f"{full}spooling: {entries} accepted requests wait for Redis"
        try:
            self.store.probe_writes()
        except redis.RedisError as error:
            return why_not_writable(error)
        return f"{full}new requests are spooled" if full else None

    def close(self, drain_seconds: float = defaults.SPOOL_EXIT_DRAIN_SECONDS) -> None:
        """Write pending metrics and drain the spool as far as Redis allows in the time given."""
        self._stopping.set()
        self.store.stats.tally.flush()
        self.spool.close(drain_seconds)
