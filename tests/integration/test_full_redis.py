"""Headroom for delivery: a Redis filled with queued deliveries empties itself, no operator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.devtools.sandbox import SandboxServer
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    RunningWorker,
    Sandbox,
    headers,
    make_settings,
    wait_until,
    with_settings,
)
from tests.webprocess import dmrelay_web

REPLY_URL = "/api/v1/contact/default-reply"
MAXMEMORY_BYTES = 25 * 2**20
HEADROOM = 0.10
SENDERS = 4


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a private redis-server with `maxmemory 25mb noeviction`."""
    server = start_local_redis(tmp_path / "redis")
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("maxmemory", MAXMEMORY_BYTES)
    yield server
    server.stop()


def reply(org_index: int, number: int) -> tuple[str, str]:
    """Return an organization's token and a 4 KB default-reply of a new contact."""
    org = (ORG_A, ORG_B)[org_index]
    body = {
        **DEFAULT_REPLY,
        "manychat_id": f"{org_index}-{number}",
        "username": f"user_{org_index}_{number}",
        "page_name": org.page_name,
        "padding": "x" * 4000,
    }
    return org.token, json.dumps(body)


class Filler:
    """Send new contacts' replies from both organizations until ingest spools them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = [0, 0]  # by organization
        self.spooled = threading.Event()
        self._lock = threading.Lock()

    def next_reply(self) -> tuple[str, str]:
        with self._lock:
            org_index = sum(self.sent) % 2
            number = self.sent[org_index]
            self.sent[org_index] += 1
        return reply(org_index, number)

    def send_until_spooled(self) -> None:
        with requests.Session() as session:
            while not self.spooled.is_set():
                token, body = self.next_reply()
                response = session.post(
                    f"{self.url}{REPLY_URL}", data=body, headers=headers(token), timeout=10
                )
                assert response.status_code == 200
                if response.json()["status"] == "spooled":
                    self.spooled.set()

    def fill(self) -> None:
        threads = [threading.Thread(target=self.send_until_spooled) for _ in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)


def ready(url: str) -> requests.Response:
    return requests.get(f"{url}/readyz", timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(360)  # filling 25 MB through gunicorn takes a minute on a busy machine
def test_a_full_redis_is_emptied_by_a_fresh_worker_and_ingest_resumes_by_itself(
    small_redis: LocalRedis,
    sandbox_server: SandboxServer,
    sandbox: Sandbox,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    connection = redis.Redis.from_url(small_redis.url)
    request.addfinalizer(connection.close)
    with dmrelay_web(
        small_redis.url,
        [ORG_A, ORG_B],
        sandbox_server.url,
        DMRELAY_ANSWER_WAIT_SECONDS="0",
        DMRELAY_INGEST_RATE_PER_ORG="0",
        DMRELAY_PENDING_BYTES_SHARE="1",  # here memory runs out before any byte budget
        DMRELAY_REDIS_HEADROOM=str(HEADROOM),
    ) as url:
        filler = Filler(url)
        filler.fill()  # no worker: Redis fills with queued deliveries up to the headroom
        used = int(connection.info("memory")["used_memory"])
        assert used >= MAXMEMORY_BYTES * (1 - HEADROOM) * 0.95
        assert used < MAXMEMORY_BYTES  # never full: the headroom is the workers'
        answer = ready(url)
        assert answer.status_code == 503
        assert answer.json()["reason"].startswith("Redis memory: ")

        settings = make_settings(small_redis.url, sandbox_server.url, tmp_path / "spool")
        production_like = with_settings(settings, full_record_sample_rate=0.01)
        worker = RunningWorker(production_like, connection).start()
        try:
            wait_until(worker.process.registered.is_set, timeout=30)
            # Everything answered 200 is delivered: queued and spooled alike.
            for org_index, org in enumerate((ORG_A, ORG_B)):
                wait_until(
                    lambda org=org, n=filler.sent[org_index]: len(sandbox.contacts(org.id)) >= n,
                    timeout=300,
                    interval=1,
                )
            wait_until(lambda: ready(url).status_code == 200, timeout=60, interval=0.5)
            token, body = reply(0, 10**6)
            response = requests.post(
                f"{url}{REPLY_URL}", data=body, headers=headers(token), timeout=10
            )
            assert response.json()["status"] == "queued"  # stored in Redis again
        finally:
            worker.stop()
