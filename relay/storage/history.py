"""Delivery records: load and save them, find them by time, and record their final state."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from relay.core.delivery import Delivery, DeliveryState
from relay.core.errors import LeaseLost
from relay.core.record import decode_record, record_json
from relay.core.summary import summary_json
from relay.storage import lua, server
from relay.storage.answers import Answers, outcome_of
from relay.storage.codec import text
from relay.storage.inflight import Lease, holder_of
from relay.storage.keys import Keys
from relay.storage.ordering import Ordering
from relay.storage.rqjobs import failed_key, finish_arg, job_key, results_key

TRIM_BATCH = 500
SIZE_SAMPLE = 64
# Index entries checked for an expired record per trim: the index's head, then onwards.
INDEX_SCAN_ENTRIES = 5000
INDEX_ENTRY_OVERHEAD_BYTES = 32


def decode(delivery_id: str, raw: bytes | str) -> Delivery:
    """Return the Delivery a stored record holds (a compact record or a summary)."""
    return decode_record(delivery_id, text(raw))


class History:
    """The record of every delivery, kept for its retention period."""

    def __init__(
        self, connection: redis.Redis, keys: Keys, ordering: Ordering, answers: Answers
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.ordering = ordering
        self.answers = answers
        self._finish = lua.register(connection, "record", "chains", "release_chains", "finish")
        self._index_offset = 0  # where the scan for expired records' index entries goes on

    def load(self, delivery_id: str) -> Delivery | None:
        """Return a stored delivery, or None if it is gone."""
        raw = self.redis.get(self.keys.delivery(delivery_id))
        return decode(delivery_id, raw) if raw else None

    def save(self, delivery: Delivery) -> None:
        """Store the delivery's current state."""
        self.redis.set(self.keys.delivery(delivery.id), record_json(delivery))

    def iter_deliveries(self, ids: Iterable[str]) -> Iterator[Delivery]:
        """Load many deliveries at once, skipping any that expired."""
        ids = list(ids)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            found = self.redis.mget([self.keys.delivery(i) for i in batch])
            for delivery_id, raw in zip(batch, found, strict=True):
                if raw:
                    yield decode(delivery_id, raw)

    def recent_ids(
        self, limit: int, since: float | None = None, until: float | None = None
    ) -> list[str]:
        """Return up to `limit` ids of deliveries received in [since, until), newest first."""
        newest = f"({until}" if until is not None else "+inf"
        oldest = since if since is not None else "-inf"
        found = self.redis.zrange(
            self.keys.index, newest, oldest, desc=True, byscore=True, offset=0, num=limit
        )
        return [text(i) for i in found]

    def forget_index_before(self, received_before: float) -> int:
        """Drop index entries of deliveries received before a time; return how many."""
        return int(self.redis.zremrangebyscore(self.keys.index, "-inf", f"({received_before}"))

    def finish(
        self,
        delivery: Delivery,
        state: DeliveryState,
        retention_seconds: int,
        lease: Lease | None = None,
        *,
        summary: bool = False,
        answer_body: str | None = None,
        patience_seconds: float = 0.0,
    ) -> list[str]:
        """Record a final state, keep it for the retention period, unblock the contact, and
        hand the outcome to web requests waiting for it (`answer_body`, else the last reply's).

        With `summary`, only the compact summary is kept. While Redis is unreachable it is
        tried again for `patience_seconds`. Raise LeaseLost, writing nothing, when the lease is
        no longer held; return the ids of the successors woken.
        """
        delivery.state = state
        delivery.finished_at = time.time()
        delivery.next_attempt_at = None
        record = summary_json(delivery) if summary else record_json(delivery)
        answer_key, answer_args = self.answers.script_args(
            outcome_of(delivery, answer_body), delivery.id
        )
        processing = self.keys.processing(lease.holder if lease else "")
        keys = [self.keys.delivery(delivery.id), self.keys.pending, self.keys.dead]
        keys += [processing, self.keys.leases, answer_key]
        keys += [self.keys.contacts(delivery.org_id), self.keys.pending_bytes]
        keys += [self.keys.pending_sizes]
        keys += [job_key(delivery.id), failed_key(delivery.org_id), results_key(delivery.id)]
        args: list[str | int] = [delivery.id, self.keys.parked, *self.ordering.queue_args()]
        args += [lease.value if lease else "", record, retention_seconds]
        args += [repr(delivery.finished_at) if state == DeliveryState.DEAD else ""]
        args += [*answer_args, delivery.org_id, finish_arg(delivery, state == DeliveryState.DEAD)]
        args += self.ordering.chain_fields(delivery)
        # Safe to run twice with the same arguments: a Redis blip need not cost a second call.
        done, *woken = lua.run_patiently(self._finish, keys, args, patience_seconds)
        if not int(done):
            raise LeaseLost(delivery.id, holder_of(woken[0]))
        return [text(item) for item in woken]

    def failed_attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        """Return the failed attempts of a delivery still in the log of the latest ones."""
        entries = (json.loads(raw) for raw in self.redis.lrange(self.keys.failed_attempts, 0, -1))
        return [entry for entry in entries if entry.get("id") == delivery_id]

    def budget_bytes(self, fallback_mb: int) -> int:
        """Return what delivered history may use: a quarter of maxmemory, else the fallback."""
        maxmemory = int(self.redis.info("memory").get("maxmemory", 0))
        return server.history_budget_bytes(maxmemory, fallback_mb)

    def cost(self, org_ids: Iterable[str]) -> HistoryCost:
        """Measure what delivered history holds now: records kept, the index, contact links."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.index)
            pipe.hvals(self.keys.pending)
            pipe.zcard(self.keys.dead)
            pipe.zrange(self.keys.index, 0, SIZE_SAMPLE - 1)
            # Every field counted (SAMPLES 0), not an estimate from five of them.
            for org_id in org_ids:
                pipe.memory_usage(self.keys.contacts(org_id), samples=0)
            indexed, pending, dead, oldest, *contacts = pipe.execute()
        ids = [text(i) for i in oldest]
        sizes = self._delivered_sizes(ids)
        pending_count = sum(max(0, int(count)) for count in pending)
        delivered = max(0, indexed - pending_count - dead) if sizes else 0
        average = sum(sizes) / len(sizes) if sizes else 0.0
        # An index entry costs its id twice (member, skiplist node) and a score and pointers;
        # counted per entry, as Redis's tables give memory back only when they shrink.
        entry_bytes = 2 * (sum(map(len, ids)) // max(1, len(ids))) + INDEX_ENTRY_OVERHEAD_BYTES
        return HistoryCost(
            delivered=delivered,
            records_bytes=int(delivered * average),
            index_bytes=indexed * entry_bytes,
            contacts_bytes=sum(int(size or 0) for size in contacts),
            index_entry_bytes=entry_bytes,
        )

    def trim(self, budget_bytes: int, org_ids: Iterable[str] = ()) -> int:
        """Delete the oldest delivered records, with their index entries, while delivered
        history (records, index, contact links) exceeds its budget.

        Only delivered records go: queued, retrying, held and dead-lettered ones are the leads
        themselves, and are never trimmed. Aliases older than the oldest record kept follow
        in the contacts upkeep (`oldest_kept_delivered`). Returns how many records went.
        """
        self.forget_gone_index_entries()  # so the measure below samples records that exist
        cost = self.cost(org_ids)
        excess = cost.total - budget_bytes
        if excess <= 0:
            return 0
        if not cost.delivered:  # contact links alone fill it: every idle alias may go
            self.redis.set(self.keys.history_trimmed_before, repr(time.time()))
            return 0
        per_record = cost.records_bytes / cost.delivered + cost.index_entry_bytes
        return self._delete_oldest_delivered(int(excess // per_record) + 1)

    def oldest_kept_delivered(self, floor: float) -> float:
        """Return when the oldest delivered record still kept was received, at least `floor`."""
        trimmed = self.redis.get(self.keys.history_trimmed_before)
        return max(floor, float(trimmed)) if trimmed else floor

    def forget_gone_index_entries(self, scan_entries: int = INDEX_SCAN_ENTRIES) -> int:
        """Drop the index entries of records that expired, oldest first; return how many.

        Resumes where the last call stopped, so old dead letters at the head of the index
        (kept, and scanned past) never hide the expired records behind them.
        """
        removed = scanned = 0
        while scanned < scan_entries:
            ids = [
                text(i)
                for i in self.redis.zrange(
                    self.keys.index, self._index_offset, self._index_offset + TRIM_BATCH - 1
                )
            ]
            if not ids:
                self._index_offset = 0
                break
            found = self.redis.exists(*(self.keys.delivery(i) for i in ids))
            gone = self._gone(ids) if found < len(ids) else []
            if gone:
                self.redis.zrem(self.keys.index, *gone)
            self._index_offset += len(ids) - len(gone)
            scanned, removed = scanned + len(ids), removed + len(gone)
        return removed

    def _gone(self, ids: list[str]) -> list[str]:
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.exists(self.keys.delivery(delivery_id))
            return [i for i, kept in zip(ids, pipe.execute(), strict=True) if not kept]

    def _delivered_sizes(self, ids: list[str]) -> list[int]:
        """Return the memory each delivered record among ids takes."""
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.get(self.keys.delivery(delivery_id))
                pipe.memory_usage(self.keys.delivery(delivery_id))
            replies = pipe.execute()
        records, sizes = replies[0::2], replies[1::2]
        return [
            int(size)
            for raw, size in zip(records, sizes, strict=True)
            if raw and size and _is_delivered(raw)
        ]

    def _delete_oldest_delivered(self, wanted: int) -> int:
        """Delete up to `wanted` delivered records, oldest received first; return how many."""
        deleted, start, newest_gone = 0, 0, 0.0
        while deleted < wanted:
            entries: Any = self.redis.zrange(
                self.keys.index, start, start + TRIM_BATCH - 1, withscores=True
            )
            if not entries:
                break
            ids = [text(i) for i, _ in entries]
            received = dict(zip(ids, (score for _, score in entries), strict=True))
            records = self.redis.mget([self.keys.delivery(i) for i in ids])
            doomed = [i for i, raw in zip(ids, records, strict=True) if raw and _is_delivered(raw)]
            doomed = doomed[: wanted - deleted]
            gone = [i for i, raw in zip(ids, records, strict=True) if not raw]
            self._forget(doomed, gone)
            if doomed:
                newest_gone = max(newest_gone, received[doomed[-1]])
            deleted += len(doomed)
            start += len(ids) - len(doomed) - len(gone)
        if newest_gone:
            self.redis.set(self.keys.history_trimmed_before, repr(newest_gone))
        return deleted

    def _forget(self, doomed: list[str], expired: list[str]) -> None:
        """Delete records and drop them, and index entries of expired ones, from the index."""
        if not doomed and not expired:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            if doomed:
                pipe.delete(*(self.keys.delivery(i) for i in doomed))
            pipe.zrem(self.keys.index, *doomed, *expired)
            pipe.execute()


@dataclass(frozen=True)
class HistoryCost:
    """What delivered history holds in Redis, in bytes, measured from what is there."""

    delivered: int  # delivered records kept
    records_bytes: int
    index_bytes: int  # the whole index by reception time
    contacts_bytes: int  # the contacts hashes: links, dedup marks, chains
    index_entry_bytes: int

    @property
    def total(self) -> int:
        """Return the bytes counted against the history budget."""
        return self.records_bytes + self.index_bytes + self.contacts_bytes


def _is_delivered(raw: bytes | str) -> bool:
    """Return True when a stored record is in its delivered state (a summary always is)."""
    return decode("", raw).state == DeliveryState.DELIVERED
