"""Increments summed in the process and written to Redis hashes at most once a second.

Recording a metric or a count never waits for Redis, and never fails: a Tally keeps what it
could not write for the next try.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping

FLUSH_INTERVAL_SECONDS = 1.0
# A flusher with nothing to write for this many intervals ends; the next increment restarts it.
IDLE_FLUSHES_BEFORE_EXIT = 10

log = logging.getLogger(__name__)

Increments = dict[tuple[str, str], float]  # (hash key, field) -> amount
TALLIES: weakref.WeakSet[Tally] = weakref.WeakSet()  # every Tally of this process


def discard_unwritten() -> None:
    """Make every Tally of the process forget what it has not written (tests share a Redis)."""
    for tally in list(TALLIES):
        tally.discard()


class Tally:
    """Increments to Redis hashes, summed in the process and written at most once a second."""

    def __init__(
        self,
        write: Callable[[Increments], None],
        interval_seconds: float = FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._write = write
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held while a flush writes
        self._pending: Counter[tuple[str, str]] = Counter()
        self._flusher: threading.Thread | None = None
        self._failing = False  # a failed write is logged once, not once a second
        TALLIES.add(self)

    def add(self, changes: Mapping[tuple[str, str], float]) -> None:
        """Add increments; they reach Redis within about a second."""
        with self._lock:
            self._pending.update(changes)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._run, name="dmrelay-metrics", daemon=True
                )
                self._flusher.start()

    def pending(self) -> Increments:
        """Return the increments not written yet, so a reader can add them to what it reads."""
        with self._lock:
            return dict(self._pending)

    def flush(self) -> bool:
        """Write what is pending in one round trip; keep it for the next try if Redis fails."""
        with self._writing:
            with self._lock:
                changes, self._pending = self._pending, Counter()
            if not changes:
                return False
            try:
                self._write(dict(changes))
            except Exception as error:  # the flusher must outlive any failure: counts wait
                if not self._failing:
                    log.info("metrics not written yet, kept for later: %s", type(error).__name__)
                self._failing = True
                with self._lock:
                    self._pending.update(changes)
                return True
            self._failing = False
            return True

    def discard(self) -> None:
        """Forget what is not written yet, once any write under way has ended."""
        with self._writing, self._lock:
            self._pending.clear()

    def _run(self) -> None:
        idle = 0
        while True:
            time.sleep(self._interval)
            idle = 0 if self.flush() else idle + 1
            if idle >= IDLE_FLUSHES_BEFORE_EXIT:
                with self._lock:
                    if not self._pending:
                        self._flusher = None  # decided under the lock add() starts one under
                        return
