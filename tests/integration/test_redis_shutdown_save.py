"""Redis shut down with SHUTDOWN SAVE under a steady stream, and started again from its dump.

`dmrelay web` (gunicorn, two processes) and `dmrelay worker` run as production does; Redis keeps
its data only in the dump it writes on the way down. Requests keep coming at 2 a second while
Redis is away (the web spools them). Afterwards every request answered 200 reached DmTracker, in
each contact's order, no delivery sits in a processing list or holds a lease, nothing was called
twice at once, and `/readyz` says ready again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from relay.storage.keys import Keys
from tests.formation import (
    SETTLE_SECONDS,
    Formation,
    concurrent_calls,
    new_root,
    ordering_violations,
    received,
    send,
)
from tests.helpers import Sandbox, wait_until

PER_SECOND = 2
CONTACTS = 4  # few, so that a stranded message would hold its contact's later ones back
BEFORE_SECONDS = 5
DOWN_SECONDS = 20
AFTER_SECONDS = 5


@pytest.fixture
def formation(sandbox: Sandbox) -> Iterator[Formation]:
    """Return a formation whose Redis keeps its data in its dump only."""
    running = Formation(new_root(), sandbox.url, aof=False)
    yield running
    running.stop()


class Stream:
    """One sender at a steady rate, each contact's messages numbered in sending order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered: list[tuple[str, str]] = []
        self.statuses: list[str | None] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._send)

    def _send(self) -> None:
        started = time.monotonic()
        index = 0
        while not self.stopping.is_set():
            contact, number = index % CONTACTS, index // CONTACTS + 1
            status = send(self.url, contact, number, timeout=10)
            self.statuses.append(status)
            if status is not None:
                self.answered.append((f"lead_{contact}", f"message {number}"))
            index += 1
            # On a fixed beat, so a slow answer does not thin the stream afterwards.
            self.stopping.wait(max(0.0, started + index / PER_SECOND - time.monotonic()))


def stranded(connection: redis.Redis) -> dict[str, int]:
    """Return how many deliveries sit in processing lists and how many hold a lease."""
    keys = Keys()
    lists = connection.keys(keys.processing("*"))
    return {
        "in processing lists": sum(int(connection.llen(name)) for name in lists),
        "leases": int(connection.hlen(keys.leases)),
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_redis_shutdown_save_and_restart_from_its_dump_under_a_stream_strands_nothing(
    formation: Formation, sandbox: Sandbox, request: pytest.FixtureRequest
) -> None:
    formation.add_worker()
    web = formation.add_web()
    stream = Stream(web.url)
    stream.thread.start()
    try:
        time.sleep(BEFORE_SECONDS)
        formation.shutdown_redis()
        assert (formation.root / "redis" / "dump.rdb").is_file()
        time.sleep(DOWN_SECONDS)
        formation.start_redis()
        time.sleep(AFTER_SECONDS)
    finally:
        stream.stopping.set()
        stream.thread.join(timeout=30)

    answered = set(stream.answered)
    sent = len(stream.statuses)
    assert sent >= (BEFORE_SECONDS + DOWN_SECONDS + AFTER_SECONDS) * PER_SECOND * 0.8
    assert stream.statuses.count("spooled") >= DOWN_SECONDS  # the outage did reach the spool
    wait_until(
        lambda: answered <= set(received(sandbox.requests())),
        timeout=SETTLE_SECONDS + 60,
        interval=1.0,
    )
    journal = sandbox.requests()
    arrivals = received(journal)
    connection = redis.Redis.from_url(formation.redis.url)
    request.addfinalizer(connection.close)
    print(  # the figures for a report, with -s
        f"sent: {sent}, answered 200: {len(answered)}"
        f" ({stream.statuses.count('spooled')} spooled), arrivals: {len(arrivals)},"
        f" calls: {len(journal)}, left: {stranded(connection)}"
    )
    assert not answered - set(arrivals)
    assert ordering_violations(arrivals) == []
    overlaps = concurrent_calls(journal)
    assert not overlaps, "a delivery was called again while its call still ran:\n" + "\n".join(
        overlaps[:20]
    )
    nothing_left = {"in processing lists": 0, "leases": 0}
    wait_until(lambda: stranded(connection) == nothing_left, timeout=30)
    wait_until(lambda: web.answers("/readyz"), timeout=30)
