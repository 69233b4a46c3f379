"""Counters for the overview: outcomes per minute, latency samples, depths and totals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

import redis

from relay.storage.codec import text
from relay.storage.keys import Keys
from relay.storage.tally import Increments, Tally

LATENCY_SAMPLES = 1000
STATS_RETENTION_SECONDS = 25 * 3600

Counts = dict[tuple[str, str, str], int]


class Stats:
    """Read and write the numbers the dashboard, admin API and metrics show."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self.tally = Tally(self._write_increments)
        self._latencies: list[float] = []  # samples waiting for the tally's next write
        self._latency_lock = threading.Lock()

    def count_later(self, org_id: str, endpoint: str, outcome: str) -> None:
        """Count one outcome in this minute's bucket, written with the next metrics flush."""
        bucket = self.keys.stats(int(time.time() // 60))
        self.tally.add({(bucket, f"{org_id}|{endpoint}|{outcome}"): 1})

    def record_later(
        self, org_id: str, endpoint: str, outcome: str, latency_ms: float | None = None
    ) -> None:
        """Count one outcome and keep its latency sample, both written with the next flush."""
        if latency_ms is not None:
            with self._latency_lock:
                self._latencies.append(latency_ms)
        self.count_later(org_id, endpoint, outcome)

    def minute_counts(self, minutes: int) -> list[tuple[int, Counts]]:
        """Return the last minutes' buckets, oldest first, keyed by (org, endpoint, outcome)."""
        current = int(time.time() // 60)
        minutes_wanted = range(current - max(1, minutes) + 1, current + 1)
        with self.redis.pipeline(transaction=False) as pipe:
            for minute in minutes_wanted:
                pipe.hgetall(self.keys.stats(minute))
            buckets = pipe.execute()
        unwritten = self.tally.pending()
        return [
            (minute, _with_unwritten(bucket, unwritten, self.keys.stats(minute)))
            for minute, bucket in zip(minutes_wanted, buckets, strict=True)
        ]

    def counts_since(self, seconds: int) -> tuple[Counts, float]:
        """Sum the counters of the last `seconds` by (org, endpoint, outcome), and the span.

        Buckets are whole minutes, so the sum covers that many complete minutes plus the
        current one so far; the span returned is what it really covers, for rates.
        """
        totals: Counts = {}
        for _, bucket in self.minute_counts(seconds // 60 + 1):
            for key, count in bucket.items():
                totals[key] = totals.get(key, 0) + count
        return totals, seconds // 60 * 60 + time.time() % 60

    def latency_samples(self) -> list[float]:
        """Return the most recent DmTracker call latencies, in milliseconds."""
        return [float(v) for v in self.redis.lrange(self.keys.latency, 0, -1)]

    def depths(self, org_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Return queued and scheduled counts per organization."""
        org_ids = list(org_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for org_id in org_ids:
                pipe.llen(self.keys.queue(org_id))
                pipe.zcard(self.keys.scheduled(org_id))
            results = pipe.execute()
        return {
            org_id: {"queued": results[2 * i], "scheduled": results[2 * i + 1]}
            for i, org_id in enumerate(org_ids)
        }

    def totals(self) -> dict[str, int]:
        """Return pending, parked, in-flight and dead-letter totals."""
        workers = [text(w) for w in self.redis.smembers(self.keys.workers)]
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hvals(self.keys.pending)
            pipe.scard(self.keys.parked)
            pipe.zcard(self.keys.dead)
            for worker in workers:
                pipe.llen(self.keys.processing(worker))
            pending, parked, dead, *in_flight = pipe.execute()
        return {
            "pending": _total(pending),
            "parked": int(parked),
            "dead_letters": int(dead),
            "in_flight": sum(in_flight),
            "workers": len(workers),
        }

    def pending_count(self) -> int:
        """Return how many accepted deliveries are not finished yet."""
        return _total(self.redis.hvals(self.keys.pending))

    def read_metrics(self) -> dict[str, float]:
        """Return every shared metric value, with this process's increments not written yet."""
        raw = self.redis.hgetall(self.keys.metrics)
        values = {text(field): float(value) for field, value in raw.items()}
        for (key, field), amount in self.tally.pending().items():
            if key == self.keys.metrics:
                values[field] = values.get(field, 0.0) + amount
        return values

    def _write_increments(self, changes: Increments) -> None:
        """Write summed increments in one round trip: metric values, outcome buckets, latencies."""
        with self._latency_lock:
            latencies, self._latencies = self._latencies[-LATENCY_SAMPLES:], []
        with self.redis.pipeline(transaction=False) as pipe:
            if latencies:  # samples are best effort: a failed write does not keep them
                pipe.lpush(self.keys.latency, *latencies)
                pipe.ltrim(self.keys.latency, 0, LATENCY_SAMPLES - 1)
            for (key, field), amount in changes.items():
                if key == self.keys.metrics:
                    pipe.hincrbyfloat(key, field, amount)
                else:
                    pipe.hincrby(key, field, int(amount))
                    pipe.expire(key, STATS_RETENTION_SECONDS)
            pipe.execute()

    def hit_window(self, name: str, window_seconds: int) -> tuple[int, int]:
        """Count one hit in a fixed window; return (hits so far, epoch second it resets)."""
        window = int(time.time() // window_seconds)
        key = self.keys.hits(name, window)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds + 1)
            hits, _ = pipe.execute()
        return int(hits), (window + 1) * window_seconds


def _total(counts: Iterable[bytes | str]) -> int:
    """Sum per-organization counts (never below 0 per organization)."""
    return sum(max(0, int(count)) for count in counts)


def _with_unwritten(bucket: Mapping[bytes, bytes], unwritten: Increments, key: str) -> Counts:
    """Return a minute's counts by (org, endpoint, outcome), adding this process's unwritten."""
    counts = {_stat_key(field): int(count) for field, count in bucket.items()}
    for (bucket_key, field), amount in unwritten.items():
        if bucket_key == key:
            name = _stat_key(field)
            counts[name] = counts.get(name, 0) + int(amount)
    return counts


def _stat_key(field: bytes | str) -> tuple[str, str, str]:
    org_id, endpoint, outcome = text(field).split("|")
    return org_id, endpoint, outcome
