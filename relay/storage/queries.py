"""The read model the admin API and the dashboard share: search, dead letters, overview."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from relay.config import Settings
from relay.core.delivery import Delivery
from relay.core.filters import DeliveryQuery

if TYPE_CHECKING:
    from relay.storage.store import Store

SCAN_LIMIT = 50_000  # newest deliveries a search looks through
EVERY_DELIVERY = DeliveryQuery()  # no filter
WINDOWS_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def search(store: Store, query: DeliveryQuery, skip: int, take: int) -> tuple[list[Delivery], int]:
    """Return one page of matching deliveries, newest first, and how many match in all."""
    ids = store.history.recent_ids(SCAN_LIMIT, query.since, query.until)
    matched = [d for d in store.history.iter_deliveries(ids) if query.matches(d)]
    return matched[skip : skip + take], len(matched)


def dead_letters(store: Store, query: DeliveryQuery) -> list[Delivery]:
    """Return every matching dead letter, newest first."""
    return list(iter_dead_letters(store, query))


def iter_dead_letters(store: Store, query: DeliveryQuery) -> Iterator[Delivery]:
    """Yield every matching dead letter, newest first, reading them a batch at a time."""
    return (d for d in store.dead.each() if query.matches(d))


def search_dead_letters(
    store: Store, query: DeliveryQuery, skip: int, take: int
) -> tuple[list[Delivery], int]:
    """Return one page of matching dead letters, newest first, and the total."""
    if query == EVERY_DELIVERY:  # the index is the list: read only the page
        return store.dead.page(skip, take)
    # A filter can only be checked on the records, and the total needs them all.
    matched = dead_letters(store, query)
    return matched[skip : skip + take], len(matched)


def overview(store: Store, settings: Settings) -> dict[str, Any]:
    """Return what an operator wants first: depths, totals, rates, latency."""
    org_ids = [org.id for org in settings.orgs]
    depths = store.stats.depths(org_ids)
    return {
        "generated_at": time.time(),
        "totals": store.stats.totals(),
        "queued": sum(d["queued"] for d in depths.values()),
        "scheduled_retries": sum(d["scheduled"] for d in depths.values()),
        "organizations": depths,
        "windows": {name: _window(store, seconds) for name, seconds in WINDOWS_SECONDS.items()},
        "latency_ms": latency_percentiles(store.stats.latency_samples()),
    }


def _window(store: Store, seconds: int) -> dict[str, Any]:
    counts, span = store.stats.counts_since(seconds)
    by_outcome: dict[str, int] = {}
    for (_, _, outcome), count in counts.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + count
    return {
        "seconds": round(span),
        "counts": by_outcome,
        "per_minute": {k: round(v * 60 / span, 2) for k, v in by_outcome.items()},
        "by_endpoint": _group(counts, 1),
        "by_organization": _group(counts, 0),
    }


def _group(counts: dict[tuple[str, str, str], int], index: int) -> dict[str, dict[str, int]]:
    grouped: dict[str, dict[str, int]] = {}
    for key, count in counts.items():
        outcomes = grouped.setdefault(key[index], {})
        outcomes[key[2]] = outcomes.get(key[2], 0) + count
    return grouped


def latency_percentiles(samples: Iterable[float]) -> dict[str, float | None]:
    """Return p50, p90 and p99 of latency samples (None without samples)."""
    ordered = sorted(samples)
    if len(ordered) < 2:
        value = ordered[0] if ordered else None
        return {"p50": value, "p90": value, "p99": value}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p90": round(cuts[89], 1), "p99": round(cuts[98], 1)}


def throughput_series(store: Store, minutes: int = 60) -> list[dict[str, Any]]:
    """Return per-minute counts by outcome for a chart, oldest first."""
    series = []
    for minute, bucket in store.stats.minute_counts(minutes):
        counts: dict[str, int] = {}
        for (_, _, outcome), count in bucket.items():
            counts[outcome] = counts.get(outcome, 0) + count
        series.append({"minute": minute * 60, **counts})
    return series
