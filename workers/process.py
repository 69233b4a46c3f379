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

from relay.alerting import start_watch
from relay.core import defaults
from relay.logs import close_context, open_context
from relay.storage.inflight import GONE, START, Lease, Taken
from relay.storage.rqjobs import RQWorkerEntry
from workers.deliverer import Deliverer
from workers.maintenance import Heartbeat, Maintenance
from workers.outage import RedisOutage

log = logging.getLogger("dmrelay.worker")
IDLE_SLEEP_SECONDS = 0.05
REDIS_DOWN_SLEEP_SECONDS = 1.0
ALIVE_FILE_EVERY_SECONDS = 1.0


class WorkerProcess:
    """Take deliveries round-robin across organizations and run them on a thread pool."""

    def __init__(
        self,
        deliverer: Deliverer,
        org_ids: list[str],
        *,
        concurrency: int,
        shutdown_grace_seconds: float,
        heartbeat_ttl_seconds: int,
        name: str | None = None,
        alive_file: Path | None = None,
    ) -> None:
        self.deliverer = deliverer
        self.store = deliverer.store
        self.org_ids = org_ids
        self.concurrency = concurrency
        self.grace = shutdown_grace_seconds
        self.alive_file = alive_file
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        # Set while this worker's registration holds: only then does it take work.
        self.registered = threading.Event()
        self._slots = threading.BoundedSemaphore(concurrency)
        # The lease of each delivery running on a thread, and its organization.
        self._working: dict[Lease, str] = {}
        self._org_in_flight: Counter[str] = Counter()
        # No organization may hold every slot: an outage that makes its calls hang for the
        # full timeout must leave room for the others.
        self.org_cap = concurrency if len(org_ids) < 2 else max(1, concurrency * 3 // 4)
        self._lock = threading.Lock()  # guards the counts above
        # A take, the orphan check and a hand-back never overlap: each sees the others' work.
        self._take_lock = threading.Lock()
        self._turn = 0
        self.outage = RedisOutage()
        # Set after a Redis error on the take or finish path: a take whose reply was lost, or a
        # result not recorded, leaves an entry in our processing list that no thread runs.
        self._reconcile_due = threading.Event()
        self._next_schedule_poll = 0.0
        self._next_alive_touch = 0.0
        self.heartbeat = Heartbeat(
            deliverer,
            heartbeat_ttl_seconds,
            lambda: self.name,
            self.registered.set,
            self._registration_lost,
            self.outage,
            self._show_to_rq,
        )
        self.rq_entry = RQWorkerEntry(self.store.redis, org_ids)
        self._rq_ttl = heartbeat_ttl_seconds
        self.maintenance = Maintenance(
            deliverer,
            org_ids,
            heartbeat_ttl_seconds / 3,
            self.requeue_orphans,
            self.name,
            self.outage,
        )

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
        self.heartbeat.start()
        self.maintenance.start()
        alert_watch = start_watch(self.store, self.deliverer.settings)  # if a channel is set
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery") as pool:
            while not self.stopping.is_set():
                self._tick(pool)
            self._drain()
        self.maintenance.stop()
        if alert_watch is not None:
            alert_watch.stop()
        self.heartbeat.stop()  # beats on while draining, so nobody reclaims what finishes
        self._hand_back()
        self.maintenance.flush_counts()  # the last second's counts, summed but not written yet
        self.deliverer.client.close()  # its pooled connections to DmTracker
        log.info("worker %s stopped", self.name)

    def _tick(self, pool: ThreadPoolExecutor) -> None:
        if not self.registered.wait(0.1):  # not registered yet
            return
        self._touch_alive_file()
        try:
            self._reconcile_if_due()
        except redis.RedisError as error:
            self._redis_down(error, "reconciling its processing list")
            return
        try:
            self._move_due_retries()
        except redis.RedisError as error:
            self._redis_down(error, "moving due retries")
            return
        if not self._slots.acquire(timeout=0.1):
            return
        started = False
        try:
            taken = self._take()
            started = taken is not None and taken.verdict == START
            if taken is None:
                self.stopping.wait(IDLE_SLEEP_SECONDS)
            elif started:
                pool.submit(self._run_one, taken)
            else:
                self._passed_over(taken)
            self.outage.answered()
        except redis.RedisError as error:
            self._reconcile_due.set()  # the take may have run, its reply lost
            self._redis_down(error, "taking a delivery")
        finally:
            if not started:
                self._slots.release()  # nothing runs on it: a Redis error never costs a slot

    def _redis_down(self, error: redis.RedisError, doing: str) -> None:
        self.outage.failed(error, doing)
        self.stopping.wait(REDIS_DOWN_SLEEP_SECONDS)

    def _reconcile_if_due(self) -> None:
        """After a Redis error on the take or finish path, requeue what no thread runs."""
        if not self._reconcile_due.is_set():
            return
        self._reconcile_due.clear()  # before: an error meanwhile asks for another turn
        try:
            self.requeue_orphans(after_outage=True)
        except redis.RedisError:
            self._reconcile_due.set()
            raise

    def _touch_alive_file(self) -> None:
        """Show a container health check that the loop itself goes round, not just a thread."""
        now = time.monotonic()
        if self.alive_file and now >= self._next_alive_touch:
            self.alive_file.touch()
            self._next_alive_touch = now + ALIVE_FILE_EVERY_SECONDS

    def _move_due_retries(self) -> None:
        now = time.monotonic()
        if now >= self._next_schedule_poll:
            self.store.schedule.move_due(self.org_ids)
            self._next_schedule_poll = now + defaults.SCHEDULER_POLL_SECONDS

    def _take(self) -> Taken | None:
        """Take the next delivery, trying organizations from the next one in turn."""
        with self._take_lock:
            org_ids = self._orgs_in_turn()
            taken = self.deliverer.gate.take_probe(
                self._take_from, self.name, org_ids, self._passed_over
            )
            if taken is None:
                passable = self.deliverer.gate.passable(org_ids)  # not paused, breaker closed
                taken = self._take_from(passable) if passable else None
            if taken is None:
                return None
            if taken.verdict == START:
                with self._lock:
                    self._working[taken.lease] = taken.org_id
                    self._org_in_flight[taken.org_id] += 1
            if taken.org_id in self.org_ids:
                self._turn = (self.org_ids.index(taken.org_id) + 1) % len(self.org_ids)
            return taken

    def _take_from(self, org_ids: list[str]) -> Taken | None:
        return self.store.inflight.take(self.name, org_ids)

    def _orgs_in_turn(self) -> list[str]:
        """Return the organizations below their share of slots, from the one whose turn it is."""
        count = len(self.org_ids)
        rotated = [self.org_ids[(self._turn + i) % count] for i in range(count)]
        with self._lock:
            return [org for org in rotated if self._org_in_flight[org] < self.org_cap]

    def _passed_over(self, taken: Taken) -> None:
        """Count a take that starts nothing; a vanished record may have left its contact stuck."""
        self.deliverer.note(taken)
        if taken.verdict == GONE:
            self.maintenance.release_stuck_chains()

    def _run_one(self, taken: Taken) -> None:
        log_context = open_context(delivery_id=taken.delivery_id, organization=taken.org_id)
        unrecorded = False
        try:
            outcome = self.deliverer.run(taken)
            log.debug("delivery %s: %s", taken.delivery_id, outcome)
        except redis.RedisError as error:
            self.outage.failed(error, f"recording the outcome of {taken.delivery_id}")
            unrecorded = True
        except Exception:
            # Left in the processing list under its lease: requeue_orphans hands it back.
            log.exception("delivery %s failed inside the worker", taken.delivery_id)
        finally:
            with self._lock:
                del self._working[taken.lease]
                self._org_in_flight -= Counter({taken.org_id: 1})  # drops it at zero
            if unrecorded:  # no thread runs it now: reconciling requeues it
                self._reconcile_due.set()
            self._slots.release()
            self.deliverer.gate.finish(taken.delivery_id)
            close_context(log_context)

    def requeue_orphans(self, after_outage: bool = False) -> int:
        """Requeue entries of our own processing list that no thread is working on."""
        with self._take_lock:
            with self._lock:
                working = list(self._working)
            count = self.store.inflight.requeue_orphans(self.name, working)
        if count and after_outage:  # expected: the outage itself was warned of
            log.info("requeued %d deliveries a Redis error left in %s's list", count, self.name)
        elif count:
            log.warning("requeued %d deliveries no thread of %s works on", count, self.name)
        return count

    def _registration_lost(self) -> None:
        """Keep the leases our threads run on, and have the loop requeue what none of them runs.

        Our heartbeat expired, but we are alive: the beat that found it registers us again
        under the same name. Others wait for our calls to time out before they reclaim, so a
        delivery is never sent twice at once; if one did reclaim, the thread that ran it finds
        its lease gone and drops its result.
        """
        self._reconcile_due.set()  # on the loop's thread: the heartbeat never waits for a take
        with self._lock:
            running = len(self._working)
        log.warning(
            "worker %s found its heartbeat expired: registered again, keeping the %d deliveries"
            " its threads run",
            self.name,
            running,
        )

    def _drain(self) -> None:
        """Give deliveries in flight the grace period to finish."""
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._working:
                    return
            time.sleep(0.05)

    def _show_to_rq(self, name: str) -> None:
        """Register where `rq info` lists workers: busy while a delivery runs, else idle."""
        with self._lock:
            state = "busy" if self._working else "idle"
        self.rq_entry.beat(name, state, self._rq_ttl)

    def _hand_back(self) -> None:
        """Put back anything still in flight and leave the worker registry."""
        try:
            count = self.store.inflight.requeue_processing(self.name)
            self.store.inflight.forget_worker(self.name)
            self.rq_entry.leave(self.name)
        except redis.RedisError as error:
            log.warning(
                "could not hand back in-flight deliveries, Redis unavailable (%s); other"
                " workers will reclaim them",
                type(error).__name__,
            )
            return
        if count:
            log.warning("handed back %d unfinished deliveries", count)
