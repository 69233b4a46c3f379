"""The worker process: many deliveries in flight on threads, fed from RQ queues."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import redis

from relay.core import defaults
from relay.logs import close_context, open_context
from workers.deliverer import Deliverer

log = logging.getLogger("dmrelay.worker")
IDLE_SLEEP_SECONDS = 0.05
REDIS_DOWN_SLEEP_SECONDS = 1.0
# A record outlives its reception by its retention plus its time in retries (at most ~2 days).
INDEX_GRACE_SECONDS = 2 * 24 * 3600


class WorkerProcess:
    """Take deliveries round-robin across organizations and run them on a thread pool."""

    def __init__(
        self,
        deliverer: Deliverer,
        org_ids: list[str],
        *,
        concurrency: int = defaults.WORKER_CONCURRENCY,
        shutdown_grace_seconds: float = defaults.WORKER_SHUTDOWN_GRACE_SECONDS,
        heartbeat_ttl_seconds: int = defaults.WORKER_HEARTBEAT_TTL_SECONDS,
        name: str | None = None,
        alive_file: Path | None = None,
    ) -> None:
        self.deliverer = deliverer
        self.store = deliverer.store
        self.org_ids = org_ids
        self.concurrency = concurrency
        self.grace = shutdown_grace_seconds
        self.heartbeat_ttl = heartbeat_ttl_seconds
        self.alive_file = alive_file
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(concurrency)
        # A count per id, not a set: a delivery rescheduled a moment ago can be taken again
        # before the thread that scheduled it is done, and must still count as in flight.
        self._in_flight: Counter[str] = Counter()
        self._org_in_flight: Counter[str] = Counter()
        # No organization may hold every slot: an outage that makes its calls hang for the
        # full timeout must leave room for the others.
        self.org_cap = concurrency if len(org_ids) < 2 else max(1, concurrency * 3 // 4)
        self._lock = threading.Lock()
        self._turn = 0
        self._next_heartbeat = 0.0
        self._next_schedule_poll = 0.0

    def install_signal_handlers(self) -> None:
        """Stop taking work on SIGTERM or SIGINT (Heroku sends SIGTERM before SIGKILL)."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("worker %s stopping on signal %s", self.name, signum)
        self.stopping.set()

    def run(self) -> None:
        """Work until asked to stop, then finish or hand back what is in flight."""
        log.info("worker %s started, %d in flight at most", self.name, self.concurrency)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery") as pool:
            while not self.stopping.is_set():
                self._tick(pool)
            self._drain()
        self._hand_back()
        self.store.stats.tally.flush()  # the last second's counts, summed but not written yet
        log.info("worker %s stopped", self.name)

    def _tick(self, pool: ThreadPoolExecutor) -> None:
        try:
            self._maintain()
            if not self._slots.acquire(timeout=0.1):
                return
            taken = self._take_next()
        except redis.RedisError as error:
            log.warning("redis unavailable (%s); retrying", type(error).__name__)
            self.stopping.wait(REDIS_DOWN_SLEEP_SECONDS)
            return
        if taken is None:
            self._slots.release()
            self.stopping.wait(IDLE_SLEEP_SECONDS)
            return
        org_id, delivery_id = taken
        with self._lock:
            self._in_flight[delivery_id] += 1
            self._org_in_flight[org_id] += 1
        pool.submit(self._run_one, org_id, delivery_id)

    def _take_next(self) -> tuple[str, str] | None:
        """Take the next delivery, starting each time from the next organization."""
        count = len(self.org_ids)
        for offset in range(count):
            org_id = self.org_ids[(self._turn + offset) % count]
            with self._lock:
                if self._org_in_flight[org_id] >= self.org_cap:
                    continue
            delivery_id = self.store.inflight.take(org_id, self.name)
            if delivery_id:
                self._turn = (self._turn + offset + 1) % count
                return org_id, delivery_id
        return None

    def _run_one(self, org_id: str, delivery_id: str) -> None:
        log_context = open_context(delivery_id=delivery_id, organization=org_id)
        try:
            outcome = self.deliverer.process(delivery_id)
            log.debug("delivery %s: %s", delivery_id, outcome)
            self.store.inflight.done(delivery_id, self.name)
        except Exception:
            # Left in the processing list: _reclaim_orphans hands it back to its queue.
            log.exception("delivery %s failed inside the worker", delivery_id)
        finally:
            with self._lock:
                self._in_flight -= Counter({delivery_id: 1})  # drops it at zero
                self._org_in_flight -= Counter({org_id: 1})
            self._slots.release()
            close_context(log_context)

    def _maintain(self) -> None:
        now = time.monotonic()
        if now >= self._next_schedule_poll:
            self.store.schedule.move_due(self.org_ids)
            self._next_schedule_poll = now + defaults.SCHEDULER_POLL_SECONDS
        if now >= self._next_heartbeat:
            self.store.inflight.heartbeat(self.name, self.heartbeat_ttl)
            if self.alive_file:
                self.alive_file.touch()  # for a container health check
            self._reclaim_dead_workers()
            self._reclaim_orphans()
            self._forget_expired_index_entries()
            self._trim_history()
            # Beat three times per TTL so one slow beat never looks like a death.
            self._next_heartbeat = now + self.heartbeat_ttl / 3

    def _reclaim_dead_workers(self) -> None:
        """Requeue what workers that died without a goodbye had in flight."""
        for worker in self.store.inflight.dead_workers():
            count = self.store.inflight.requeue_processing(worker)
            log.warning("requeued %d deliveries of dead worker %s", count, worker)

    def _trim_history(self) -> None:
        """Keep delivered history within its memory budget, so it never crowds out leads."""
        history = self.store.history
        trimmed = history.trim(history.budget_bytes(self.deliverer.settings.history_max_mb))
        if trimmed:
            log.info("trimmed %d delivered records to stay within the history budget", trimmed)

    def _forget_expired_index_entries(self) -> None:
        """Keep the search index from growing forever: its records expire, its entries not."""
        settings = self.deliverer.settings
        kept = max(settings.delivered_retention_seconds, settings.dead_letter_retention_seconds)
        self.store.history.forget_index_before(time.time() - kept - INDEX_GRACE_SECONDS)

    def _reclaim_orphans(self) -> None:
        """Requeue entries of our own processing list that no thread is working on."""
        # Look at the threads before the list: an id whose thread ended earlier has left the
        # list already (done() runs first), and requeue_one requeues only what is still listed.
        with self._lock:
            working = set(self._in_flight)
        orphans = [d for d in self.store.inflight.processing(self.name) if d not in working]
        for delivery_id in orphans:
            self.store.inflight.requeue_one(delivery_id, self.name)

    def _drain(self) -> None:
        """Give deliveries in flight the grace period to finish."""
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.05)

    def _hand_back(self) -> None:
        """Put back anything still in flight and leave the worker registry."""
        try:
            count = self.store.inflight.requeue_processing(self.name)
            self.store.inflight.forget_worker(self.name)
        except redis.RedisError:
            log.exception("could not hand back in-flight deliveries; others will reclaim them")
            return
        if count:
            log.warning("handed back %d unfinished deliveries", count)
