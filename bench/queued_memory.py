"""Redis memory of 100,000 queued deliveries, each from a new contact (the target: they fit
in 100 MB), beside stock RQ's `Queue.enqueue` of the same bodies.

The relay's deliveries go through its own accept script (`relay.storage.intake`, as ingest
stores them, without HTTP), on a private redis-server; used_memory is read before and after.

Run: python -m bench.queued_memory [--count 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.baselines import TASK
from bench.harness import ORG_A
from relay.core.delivery import Delivery
from relay.devtools.localredis import start_local_redis
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.store import Store
from relay.web.ingest import dated

ENDPOINT = "default-reply"
WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Footprint:
    """What `count` queued requests left in Redis."""

    count: int
    used_bytes: int
    seconds: float

    @property
    def per_request(self) -> float:
        """Return the bytes each queued request costs."""
        return self.used_bytes / self.count

    @property
    def megabytes(self) -> float:
        """Return the total in MB (10**6 bytes, as hosting plans count)."""
        return self.used_bytes / 1e6


def body(index: int) -> dict[str, str]:
    """Return a default-reply of a contact of its own, as ManyChat sends it (no message_date)."""
    return {
        "username": f"lead_{index:06}",
        "manychat_id": str(50_000_000 + index),
        "message_content": f"Reply {index}: how much is the coaching?",
    }


def relay_footprint(connection: redis.Redis, count: int) -> Footprint:
    """Accept `count` deliveries with the relay's accept script; return what they take."""
    store = Store(connection)
    return _footprint(connection, count, lambda index: _accept(store, index))


def stock_footprint(connection: redis.Redis, count: int) -> Footprint:
    """Enqueue `count` bodies with stock `Queue.enqueue`; return what they take."""
    queue = Queue("bench-baseline", connection=connection, serializer=JSONSerializer)
    return _footprint(connection, count, lambda index: queue.enqueue(TASK, body(index)))


def _accept(store: Store, index: int) -> None:
    """Store one as ingest does: the organization and the reception time filled in."""
    received_at = time.time()
    payload = body(index) | {"organization_id": ORG_A.id}
    payload = dated(ENDPOINT, payload, received_at)
    delivery = Delivery.new(
        ORG_A.id, ENDPOINT, payload, received_at, request_id=f"req_{index:016x}"
    )
    same = fingerprint(ORG_A.id, ENDPOINT, json.dumps(payload, sort_keys=True))
    store.intake.accept(delivery, same, window_seconds=WINDOW_SECONDS, quotas=NO_QUOTAS)


def _footprint(connection: redis.Redis, count: int, add: Callable[[int], object]) -> Footprint:
    connection.flushall()
    before = int(connection.info("memory")["used_memory"])
    started = time.monotonic()
    for index in range(count):
        add(index)
    seconds = time.monotonic() - started
    used = int(connection.info("memory")["used_memory"]) - before
    return Footprint(count, used, seconds)


def measure(count: int) -> tuple[Footprint, Footprint]:
    """Return the relay's footprint and stock RQ's, each on a fresh private redis-server."""
    with tempfile.TemporaryDirectory(prefix="dmrelay-queued-") as scratch:
        server = start_local_redis(Path(scratch) / "redis")
        try:
            connection = redis.Redis.from_url(server.url)
            return relay_footprint(connection, count), stock_footprint(connection, count)
        finally:
            server.stop()


def main() -> None:
    """Measure and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    count = parser.parse_args().count
    relay, stock = measure(count)
    print(f"\n{count:,} queued default-replies, each from a new contact, private redis-server\n")
    print("| figure | dmrelay | stock `Queue.enqueue` | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| Redis used_memory, MB | {relay.megabytes:.1f} | {stock.megabytes:.1f} |"
        f" {relay.megabytes / stock.megabytes:.2f}x | <= 120 MB for 100,000 |"
    )
    print(
        f"| bytes per queued request | {relay.per_request:,.0f} | {stock.per_request:,.0f} |"
        f" {relay.per_request / stock.per_request:.2f}x | <= 1,200 |"
    )


if __name__ == "__main__":
    main()
