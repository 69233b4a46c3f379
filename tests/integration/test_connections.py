"""Redis connections stay within their per-process budget under load (small plans allow 20)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from relay.config import Settings
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, Sandbox, headers, served, wait_until, with_settings
from workers.bootstrap import build_worker

URL = "/api/v1/contact/default-reply"


def connections_named(client: redis.Redis, name: str) -> int:
    """Return how many connections a process role holds right now."""
    return sum(1 for c in client.client_list() if c.get("name") == name)


class PeakSampler:
    """Sample a count on a thread and keep its peak."""

    def __init__(self, sample: Callable[[], int]) -> None:
        self.sample, self.peak = sample, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.01)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def served_app(settings: Settings, redis_conn: redis.Redis) -> Iterator[str]:
    """Serve an app that opens its own bounded pool of 3 connections."""
    app = create_app(with_settings(settings, web_redis_connections=3))
    with served(app) as url:
        yield url


def test_web_process_holds_at_most_its_budget_under_load(
    served_app: str, redis_conn: redis.Redis
) -> None:
    def send(i: int) -> int:
        body = {
            **DEFAULT_REPLY,
            "message_content": f"message {i}",
            "username": f"user_{i}",
            "manychat_id": str(i),
        }
        return requests.post(
            served_app + URL, json=body, headers=headers(ORG_A.token), timeout=10
        ).status_code

    sample = lambda: connections_named(redis_conn, "dmrelay-web")  # noqa: E731
    with PeakSampler(sample) as sampler, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(400)))
    assert statuses == [200] * 400
    assert 1 <= sampler.peak <= 3


def test_worker_holds_at_most_its_budget_with_32_in_flight(
    settings: Settings,
    redis_conn: redis.Redis,
    client,
    sandbox: Sandbox,  # type: ignore[no-untyped-def]
) -> None:
    sandbox.configure(latency_ms=200)
    for i in range(96):
        body = {
            **DEFAULT_REPLY,
            "message_content": f"message {i}",
            "username": f"user_{i}",
            "manychat_id": str(i),
        }
        assert client.post(URL, json=body, headers=headers(ORG_A.token)).status_code == 200
    custom = with_settings(settings, worker_concurrency=32, worker_redis_connections=4)
    worker = build_worker(custom)
    thread = threading.Thread(target=worker.run, daemon=True)
    with PeakSampler(lambda: connections_named(redis_conn, "dmrelay-worker")) as sampler:
        thread.start()
        try:
            wait_until(lambda: len(sandbox.requests()) >= 96, timeout=30)
        finally:
            worker.stopping.set()
            thread.join(timeout=30)
    assert 1 <= sampler.peak <= 4


def test_the_web_process_talks_to_redis_through_hiredis(settings: Settings) -> None:
    # redis-py falls back to its pure-Python parser when hiredis is missing: ingest would still
    # work, only slower (packing the accept script's call and parsing its reply).
    app = create_app(settings)
    connection = app.extensions["dmrelay.store"].redis.connection_pool.make_connection()
    assert type(connection._parser).__name__ == "_HiredisParser"
    assert type(connection._command_packer).__name__ == "HiredisRespSerializer"
