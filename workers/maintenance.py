"""Upkeep beside the delivery loop, on threads of its own so a slow loop never looks dead.

The heartbeat tells the other workers this one is alive. Maintenance writes the counts the
deliveries gathered, reclaims what dead workers held, frees contacts whose chain is headed by a
delivery that will never finish, deletes contacts' expired dedup marks and aliases, and trims
the search and dead-letter indexes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from relay.storage.deadletter_actions import apply_rq_deletions
from workers.deliverer import Deliverer
from workers.outage import RedisOutage

log = logging.getLogger("dmrelay.worker")
FLUSH_SECONDS = 1.0
# A record outlives its reception by its retention plus its time in retries (at most ~2 days).
INDEX_GRACE_SECONDS = 2 * 24 * 3600
# Pages of each organization's contacts hash looked at per upkeep, for expired entries.
CONTACT_PAGES_PER_UPKEEP = 20


class Heartbeat:
    """Beat every third of the TTL; when a beat finds this worker taken for dead, call on_lost.

    `name` gives the worker's current name; `on_registered` is called after the first beat of
    each name (the worker may take work from then on). on_lost is retried at every beat until
    it succeeds.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        ttl_seconds: int,
        name: Callable[[], str],
        on_registered: Callable[[], None],
        on_lost: Callable[[], None],
        outage: RedisOutage,
        on_beat: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.inflight = deliverer.store.inflight
        self.on_beat = on_beat  # after each beat, with the name: the worker's RQ entry
        self.ttl = ttl_seconds
        self.name, self.on_registered, self.on_lost = name, on_registered, on_lost
        self.outage = outage
        self.stopping = threading.Event()
        self._registered: str | None = None
        self._lost = False
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the worker then hands back what it holds and leaves)."""
        self.stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
                self.outage.answered()
            except redis.RedisError as error:
                self.outage.failed(error, "beating the heartbeat")
            except Exception:
                log.exception("heartbeat failed")
            if self.stopping.wait(self.ttl / 3):
                return

    def beat(self) -> None:
        """Beat once; hand back and register again if this worker was taken for dead."""
        for _ in range(2):  # the second turn registers the new name at once
            if self._lost:
                self.on_lost()
                self._lost = False
            name = self.name()
            intact = self.inflight.heartbeat(name, self.ttl)
            self.on_beat(name)
            if name != self._registered:  # the first beat of a name registers it
                self._registered = name
                self.on_registered()
                return
            if intact:
                return
            self._lost = True


class Maintenance:
    """Periodic upkeep on its own thread: counts every second, the rest every `period_seconds`."""

    def __init__(
        self,
        deliverer: Deliverer,
        org_ids: list[str],
        period_seconds: float,
        requeue_orphans: Callable[[], int],
        worker_name: str,
        outage: RedisOutage,
    ) -> None:
        self.deliverer = deliverer
        self.store = deliverer.store
        self.org_ids = org_ids
        self.period = period_seconds
        self.requeue_orphans = requeue_orphans
        self.worker_name = worker_name
        self.outage = outage
        # A worker whose heartbeat lapsed may still be running calls (a lapse is not a death):
        # its deliveries are requeued only once every call it could have started has ended.
        settings = deliverer.settings
        self.reclaim_after = settings.http_connect_timeout_seconds
        self.reclaim_after += settings.http_read_timeout_seconds
        self.stopping = threading.Event()
        self._contacts_cursor: dict[str, int] = {}
        self._index_rank = 0  # where the search for jobs deleted from an RQ tool goes on
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)

    def start(self) -> None:
        """Start the upkeep thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the upkeep thread."""
        self.stopping.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        next_upkeep = 0.0
        while not self.stopping.wait(FLUSH_SECONDS):
            self.flush_counts()
            if time.monotonic() >= next_upkeep:
                self.upkeep()
                next_upkeep = time.monotonic() + self.period

    def flush_counts(self) -> None:
        """Write the counts gathered since the last flush (kept for the next one on failure)."""
        self.deliverer.store.stats.tally.flush()

    def upkeep(self) -> None:
        """Run every periodic job; stop at the first Redis error, and go on next period."""
        jobs = (
            self.reclaim_dead_workers,
            self.requeue_orphans,
            self.release_stuck_chains,
            self.forget_expired_contact_entries,
            self.trim_indexes,
            self.trim_history,
            self.apply_rq_changes,
        )
        for job in jobs:
            try:
                job()
            except redis.RedisError as error:
                self.outage.failed(error, "running maintenance")  # it goes on next period
                return
            except Exception:
                log.exception("maintenance job %s failed", getattr(job, "__name__", job))

    def forget_expired_contact_entries(self) -> None:
        """Delete contacts' expired dedup marks and aliases, a few pages per organization.

        An alias goes with the delivered history too: once older than the oldest delivered
        record kept (retention, or the history budget's trim), and nothing of its contact is
        on its way, it links nothing anybody can still look up.
        """
        made_before = self.store.history.oldest_kept_delivered(
            time.time() - self.deliverer.settings.delivered_retention_seconds
        )
        for org_id in self.org_ids:
            cursor = self._contacts_cursor.get(org_id, 0)
            for _ in range(CONTACT_PAGES_PER_UPKEEP):
                cursor, _deleted = self.store.contacts.forget_expired(
                    org_id, cursor, aliases_made_before=made_before
                )
                if cursor == 0:
                    break
            self._contacts_cursor[org_id] = cursor

    def reclaim_dead_workers(self) -> None:
        """Requeue what workers that died without a goodbye had in flight, once the calls they
        may still be making have timed out (never this worker's own)."""
        inflight = self.store.inflight
        for worker in inflight.dead_workers(self.worker_name):
            if inflight.dead_for(worker) < self.reclaim_after:
                continue
            count = inflight.requeue_processing(worker)
            inflight.forget_dead_mark(worker)
            log.warning("requeued %d deliveries of dead worker %s", count, worker)

    def release_stuck_chains(self) -> None:
        """Free contacts parked behind a delivery whose record vanished or that is finished."""
        released = self.store.ordering.release_all_stuck()
        for head, chain in released.chains:
            log.warning("released contact chain %s: its head %s will never finish", chain, head)
        for delivery_id, chain in released.rejoined:
            log.warning(
                "put delivery %s back in contact chain %s, which it was missing from",
                delivery_id,
                chain,
            )
        if released.woken:
            log.warning("woke %d deliveries parked behind those", len(released.woken))

    def trim_indexes(self) -> None:
        """Keep the search and dead-letter indexes to what is still kept."""
        settings = self.deliverer.settings
        kept = max(settings.delivered_retention_seconds, settings.dead_letter_retention_seconds)
        self.store.history.forget_index_before(time.time() - kept - INDEX_GRACE_SECONDS)
        self.store.dead.trim(settings.dead_letter_retention_seconds)

    def apply_rq_changes(self) -> None:
        """Purge deliveries an RQ tool deleted; requeue jobs a stock `rq worker` refused."""
        purged, self._index_rank = apply_rq_deletions(self.store, self._index_rank)
        if purged:
            log.info("purged %d deliveries deleted from an RQ tool", purged)
        put_back = self.store.rqjobs.put_back_refused(self.org_ids)
        if put_back:
            log.warning("put back %d jobs a stock rq worker refused", put_back)

    def trim_history(self) -> None:
        """Keep delivered history within its memory budget, so it never crowds out leads."""
        history = self.store.history
        budget = history.budget_bytes(self.deliverer.settings.history_max_mb)
        trimmed = history.trim(budget, self.org_ids)
        if trimmed:
            log.info("trimmed %d delivered records to stay within the history budget", trimmed)
