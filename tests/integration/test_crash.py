"""Real worker processes: SIGTERM finishes or hands back, SIGKILL is recovered, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay.core.delivery import DeliveryState
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    RunningWorker,
    headers,
    wait_until,
    with_settings,
)


@pytest.fixture
def spawn_worker(settings, sandbox) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Start `dmrelay worker` processes with a short heartbeat; kill leftovers at teardown."""
    processes: list[subprocess.Popen] = []
    orgs = [{"id": o.id, "token": o.token} for o in (ORG_A, ORG_B)]

    def spawn(grace_seconds: float = 10.0) -> subprocess.Popen:
        env = {
            **os.environ,
            "REDIS_URL": settings.redis_url,
            "DMRELAY_ORGS": json.dumps(orgs),
            "DMRELAY_SECRET_KEY": SECRET,
            "DMTRACKER_BASE_URL": settings.dmtracker_base_url,
            "DMRELAY_WORKER_HEARTBEAT_TTL_SECONDS": "3",
            # A dead worker is reclaimed once a call it may still run has timed out.
            "DMRELAY_HTTP_READ_TIMEOUT_SECONDS": "4",
            "DMRELAY_WORKER_SHUTDOWN_GRACE_SECONDS": str(grace_seconds),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "relay", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def post_many(client, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(count):
        body = {**DEFAULT_REPLY, "username": f"lead_{i}", "manychat_id": str(1000 + i)}
        response = client.post(
            "/api/v1/contact/default-reply", json=body, headers=headers(ORG_A.token)
        )
        # A repeat of a delivered request gets DmTracker's answer: the id is under "relay".
        ids.append(response.get_json()["relay"]["delivery_id"])
    return ids


def in_flight(redis_conn) -> int:  # type: ignore[no-untyped-def]
    return sum(redis_conn.llen(key) for key in redis_conn.keys("dmrelay:processing:*"))


def all_delivered(store, ids: list[str]) -> bool:  # type: ignore[no-untyped-def]
    return all(
        (d := store.history.load(i)) is not None and d.state == DeliveryState.DELIVERED for i in ids
    )


def test_sigterm_lets_the_delivery_in_flight_finish(  # type: ignore[no-untyped-def]
    client, store, redis_conn, sandbox, spawn_worker
) -> None:
    sandbox.configure(latency_ms=1500)
    worker = spawn_worker()
    ids = post_many(client, 3)
    wait_until(lambda: in_flight(redis_conn) == 3)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert all_delivered(store, ids)
    assert len(sandbox.requests()) == 3
    assert in_flight(redis_conn) == 0


def test_sigterm_past_the_grace_hands_work_back(  # type: ignore[no-untyped-def]
    client, store, redis_conn, sandbox, spawn_worker
) -> None:
    sandbox.configure(latency_ms=3000)
    worker = spawn_worker(grace_seconds=0.5)
    ids = post_many(client, 2)
    wait_until(lambda: in_flight(redis_conn) == 2)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    sandbox.configure(latency_ms=0)
    spawn_worker()
    wait_until(lambda: all_delivered(store, ids), timeout=20)


def test_sigkill_is_recovered_by_another_worker_within_bounds(  # type: ignore[no-untyped-def]
    client, store, redis_conn, sandbox, spawn_worker
) -> None:
    sandbox.configure(latency_ms=2000)
    victim = spawn_worker()
    ids = post_many(client, 5)
    wait_until(lambda: in_flight(redis_conn) == 5)

    victim.kill()
    victim.wait()
    killed_at = time.monotonic()
    sandbox.configure(latency_ms=0)
    spawn_worker()
    wait_until(lambda: all_delivered(store, ids), timeout=30)
    # Heartbeat TTL 3 s, then the calls it may still run time out (3.05 s + 4 s), checked
    # every second: recovered well inside the bound.
    assert time.monotonic() - killed_at < 16
    wait_until(lambda: in_flight(redis_conn) == 0)


def test_worker_reconnects_after_redis_restarts(settings, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import redis

    from relay.devtools.localredis import start_local_redis
    from relay.storage.store import Store
    from relay.web.app import create_app

    server = start_local_redis(tmp_path / "redis", persist=True)
    own = with_settings(settings, redis_url=server.url)
    connection = redis.Redis.from_url(server.url)
    worker = RunningWorker(own, connection).start()
    client = create_app(own, connection).test_client()
    store = Store(connection)
    try:
        first = post_many(client, 1)
        wait_until(lambda: all_delivered(store, first))

        server.stop()
        time.sleep(1.5)  # the worker sees Redis gone and keeps retrying
        server = start_local_redis(tmp_path / "redis", port=server.port, persist=True)

        second = post_many(client, 2)[1:]
        wait_until(lambda: all_delivered(store, second), timeout=15)
        assert worker.thread.is_alive()
    finally:
        worker.stop()
        server.stop()
