"""Counts a worker adds up in memory and writes to Redis at most once a second.

The overview's outcome counters and the Prometheus metrics of every delivery would otherwise
cost Redis a round trip or two per delivery; one flush a second costs one in all.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.storage.metrics import Metrics
from relay.storage.stats import Stats

if TYPE_CHECKING:
    from relay.storage.store import Store


class Tally:
    """Outcome counts, latency samples and metric changes waiting to be written."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._outcomes: Counter[tuple[int, str]] = Counter()
        self._latencies: list[float] = []
        self._metrics: Counter[str] = Counter()

    def record(
        self, org_id: str, endpoint: str, outcome: str, latency_ms: float | None = None
    ) -> None:
        """Count one outcome in this minute, and keep the latency sample."""
        minute = int(time.time() // 60)
        with self._lock:
            self._outcomes[(minute, f"{org_id}|{endpoint}|{outcome}")] += 1
            if latency_ms is not None:
                self._latencies.append(latency_ms)

    def add_metrics(self, changes: Mapping[str, float]) -> None:
        """Add to metric values."""
        with self._lock:
            self._metrics.update(changes)

    def flush(self) -> None:
        """Write everything counted since the last flush in one round trip.

        On a Redis error the counts are kept for the next flush, and the error is raised.
        """
        with self._lock:
            outcomes, latencies, metrics = self._outcomes, self._latencies, self._metrics
            self._outcomes, self._latencies, self._metrics = Counter(), [], Counter()
        if not (outcomes or latencies or metrics):
            return
        try:
            self.stats.add_counts(outcomes, latencies, metrics)
        except Exception:
            with self._lock:
                self._outcomes.update(outcomes)
                self._latencies[:0] = latencies
                self._metrics.update(metrics)
            raise


class TalliedMetrics(Metrics):
    """Metrics that go through a Tally instead of a round trip each."""

    def __init__(self, store: Store, tally: Tally) -> None:
        super().__init__(store)
        self.tally = tally

    def _add(self, changes: dict[str, float]) -> None:
        self.tally.add_metrics(changes)
