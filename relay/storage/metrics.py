"""Prometheus metrics kept in Redis, so every web and worker process adds to one total.

Each process sums its increments in memory (a Tally, relay/storage/tally.py) and writes them
at most once a second from a background thread: recording a metric never waits for Redis,
and never fails.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from relay.config import Settings

if TYPE_CHECKING:
    from relay.storage.store import Store

BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

COUNTERS = {
    "dmrelay_http_requests": (
        "HTTP requests answered, by route and status.",
        ("route", "method", "status"),
    ),
    "dmrelay_ingest": (
        "Ingest decisions: accepted, duplicate, skipped, held, rejected, by reason.",
        ("endpoint", "result", "reason"),
    ),
    "dmrelay_answers": (
        "How ingest answers were found: delivered or dead within the wait, timeout, busy"
        " (no waiting slot free), no_wait, settling (held back after a Redis outage), error.",
        ("endpoint", "result"),
    ),
    "dmrelay_deliveries": (
        "Delivery passes by endpoint and outcome.",
        ("organization", "endpoint", "outcome"),
    ),
    "dmrelay_rate_limit_waits": (
        "Deliveries rescheduled to wait for a rate-limit slot.",
        ("organization", "endpoint"),
    ),
}
HISTOGRAMS = {
    "dmrelay_enqueue_seconds": ("Time to store and enqueue an accepted request.", ("endpoint",)),
    "dmrelay_attempt_seconds": ("Latency of calls to DmTracker.", ("endpoint",)),
}


class Metrics:
    """Record counters and histogram observations, summed in the process (see Tally)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._hash = store.keys.metrics  # the one hash every process adds its values to

    def count(self, name: str, **labels: str) -> None:
        """Add one to a counter."""
        self._add(_one_more(self._hash, name, _key(labels)))

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        count, total, *buckets = _histogram_fields(self._hash, name, _key(labels))
        changes = {count: 1.0, total: seconds}
        for bound, field in zip(BUCKETS_SECONDS, buckets, strict=True):
            if seconds <= bound:
                changes[field] = 1
        self._add(changes)

    def _add(self, changes: Mapping[tuple[str, str], float]) -> None:
        # In memory only: a message already queued must never wait for, or fail on, a count.
        self.store.stats.tally.add(changes)


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# Cached: labels come from closed sets, and building the names cost a request ~50 us.
@functools.lru_cache(maxsize=4096)
def _one_more(
    hash_key: str, name: str, labels: tuple[tuple[str, str], ...]
) -> Mapping[tuple[str, str], float]:
    """Return the increment that adds one to a counter series (read-only: it is shared)."""
    return MappingProxyType({(hash_key, _field(name, labels, "total")): 1})


@functools.lru_cache(maxsize=4096)
def _histogram_fields(
    hash_key: str, name: str, labels: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """Return the hash fields of a histogram series: its count, sum and buckets."""
    parts = ["count", "sum", *(f"le={bound}" for bound in BUCKETS_SECONDS)]
    return tuple((hash_key, _field(name, labels, part)) for part in parts)


def _field(name: str, labels: tuple[tuple[str, str], ...], part: str) -> str:
    label_text = ",".join(f"{key}={_label(value)}" for key, value in labels)
    return f"{name}|{label_text}|{part}"


def _label(value: str) -> str:
    """Keep the field's separators out of a label value."""
    return re.sub(r"[|,=]", "_", value)


class RedisCollector(Collector):
    """Expose the Redis-held counters and the live queue gauges at scrape time."""

    def __init__(self, store: Store, settings: Settings, spool: tuple[int, int]) -> None:
        self.store = store
        self.settings = settings
        self.spool = spool

    def collect(self) -> Iterator[Any]:
        """Yield every metric family."""
        values = self.store.stats.read_metrics()
        yield from self._counters(values)
        yield from self._histograms(values)
        yield from self._gauges()

    def _counters(self, values: dict[str, float]) -> Iterator[CounterMetricFamily]:
        for name, (text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=label_names)
            for labels, part, value in _series(values, name):
                if part == "total":
                    family.add_metric([labels.get(n, "") for n in label_names], value)
            yield family

    def _histograms(self, values: dict[str, float]) -> Iterator[HistogramMetricFamily]:
        for name, (text, label_names) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, text, labels=label_names)
            for key, parts in _group_series(values, name).items():
                # Each observation was added to every bucket it fits: already cumulative.
                buckets = [(str(b), parts.get(f"le={b}", 0.0)) for b in BUCKETS_SECONDS]
                buckets.append(("+Inf", parts.get("count", 0.0)))
                family.add_metric(list(key), buckets, parts.get("sum", 0.0))
            yield family

    def _gauges(self) -> Iterator[GaugeMetricFamily]:
        org_ids = [org.id for org in self.settings.orgs]
        depths = self.store.stats.depths(org_ids)
        totals = self.store.stats.totals()
        queued = GaugeMetricFamily(
            "dmrelay_queue_depth", "Deliveries waiting on the queue.", labels=["organization"]
        )
        scheduled = GaugeMetricFamily(
            "dmrelay_scheduled_retries", "Deliveries scheduled for later.", labels=["organization"]
        )
        for org_id, depth in depths.items():
            queued.add_metric([org_id], depth["queued"])
            scheduled.add_metric([org_id], depth["scheduled"])
        yield queued
        yield scheduled
        yield GaugeMetricFamily(
            "dmrelay_dead_letters", "Dead letters kept.", totals["dead_letters"]
        )
        yield GaugeMetricFamily(
            "dmrelay_in_flight", "Deliveries being sent now.", totals["in_flight"]
        )
        yield GaugeMetricFamily(
            "dmrelay_pending", "Accepted and not yet finished.", totals["pending"]
        )
        entries, size = self.spool
        yield GaugeMetricFamily(
            "dmrelay_spool_entries",
            "Accepted requests in this machine's spool, waiting for Redis to take writes.",
            entries,
        )
        yield GaugeMetricFamily("dmrelay_spool_bytes", "Size of those requests.", size)


def _series(values: dict[str, float], name: str) -> Iterator[tuple[dict[str, str], str, float]]:
    for field, value in values.items():
        field_name, label_text, part = field.split("|", 2)
        if field_name == name:
            labels = dict(item.partition("=")[::2] for item in label_text.split(",") if item)
            yield labels, part, value


def _group_series(values: dict[str, float], name: str) -> dict[tuple[str, ...], dict[str, float]]:
    label_names = HISTOGRAMS[name][1]
    grouped: dict[tuple[str, ...], dict[str, float]] = {}
    for labels, part, value in _series(values, name):
        grouped.setdefault(tuple(labels.get(n, "") for n in label_names), {})[part] = value
    return grouped


def render(store: Store, settings: Settings, spool: tuple[int, int] = (0, 0)) -> bytes:
    """Return the Prometheus text exposition of every metric, with the spool's depth."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(store, settings, spool))
    return generate_latest(registry)
