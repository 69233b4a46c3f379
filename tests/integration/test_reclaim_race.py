"""A worker whose heartbeat lapsed while a call is in flight: nobody sends it again meanwhile,
neither the worker itself nor another one."""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from typing import Any

from relay.core.delivery import DeliveryState
from relay.storage.store import Store
from tests.helpers import DEFAULT_REPLY, ORG_A, headers, wait_until, with_settings

URL = "/api/v1/contact/default-reply"
CALL_MS = 3000  # longer than a heartbeat TTL of 3 s: the lapse falls inside the call


def accept(client: Any, name: str) -> str:
    body = {**DEFAULT_REPLY, "username": name, "manychat_id": name}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200
    return str(response.get_json()["data"]["delivery_id"])


def lease_holder(store: Store, delivery_id: str) -> str | None:
    lease = store.inflight.lease_of(delivery_id)
    return lease.split()[0] if lease else None


def overlapping_calls(journal: list[dict[str, Any]]) -> list[str]:
    """Return the request ids DmTracker saw a second call of while the first was running."""
    calls = defaultdict(list)
    for entry in journal:
        calls[entry["headers"].get("x-request-id")].append((entry["at"], entry["answered_at"]))
    overlapping = []
    for request_id, spans in calls.items():
        spans.sort()
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)):
            overlapping.append(request_id)
    return overlapping


def delivered(store: Store, delivery_id: str) -> bool:
    found = store.history.load(delivery_id)
    return found is not None and found.state == DeliveryState.DELIVERED


def test_a_lone_worker_never_reclaims_the_call_its_own_thread_runs(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    sandbox.configure(latency_ms=CALL_MS)
    worker = start_worker(with_settings(settings, worker_heartbeat_ttl_seconds=3))
    delivery_id = accept(client, "lapsed")
    wait_until(lambda: lease_holder(store, delivery_id))
    name = worker.process.name

    store.redis.delete(store.keys.worker(name))  # what a lapsed heartbeat does
    wait_until(lambda: "found its heartbeat expired" in caplog.text, timeout=5)

    wait_until(lambda: delivered(store, delivery_id), timeout=15)
    time.sleep(1.5)  # a maintenance pass or more after the delivery: nothing starts it again
    journal = sandbox.requests()
    assert overlapping_calls(journal) == []
    assert len(journal) == 1
    assert worker.process.name == name  # registered again under its name, lease kept
    assert store.inflight.workers() == [name]
    assert "lease lost" not in caplog.text


def test_another_worker_waits_for_the_lapsed_ones_call_to_end(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker
) -> None:
    sandbox.configure(latency_ms=CALL_MS)
    quick = with_settings(settings, worker_heartbeat_ttl_seconds=3)
    workers = [start_worker(quick), start_worker(quick)]
    delivery_id = accept(client, "lapsed")
    holder = wait_until(lambda: lease_holder(store, delivery_id))
    holder_worker = next(w for w in workers if w.process.name == holder)
    holder_worker.process.heartbeat.stopping.set()  # it beats no more, yet its call runs on

    store.redis.delete(store.keys.worker(holder))
    wait_until(lambda: delivered(store, delivery_id), timeout=15)
    holders = set()
    for _ in range(20):  # a second: the other's maintenance has passed a few times meanwhile
        holders.add(lease_holder(store, delivery_id))
        time.sleep(0.05)

    assert overlapping_calls(sandbox.requests()) == []
    assert len(sandbox.requests()) == 1
    assert holders == {None}


def test_a_dead_worker_is_reclaimed_once_its_calls_have_timed_out(store) -> None:  # type: ignore[no-untyped-def]
    store.inflight.heartbeat("gone", 30)
    store.redis.delete(store.keys.worker("gone"))

    assert store.inflight.dead_workers("gone") == []  # a worker never counts itself dead
    assert store.inflight.dead_workers("alive") == ["gone"]
    assert store.inflight.dead_for("gone") < 1
    store.redis.pexpire(store.keys.dead_since("gone"), 10_000)  # as if seen dead long ago
    assert store.inflight.dead_for("gone") > 3600
    store.inflight.heartbeat("gone", 30)  # it beats again: a later lapse starts over
    assert store.inflight.dead_for("gone") < 1
