"""Budgets in bytes: one organization's large bodies never fill Redis for another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.devtools.sandbox import SandboxServer
from relay.storage.keys import Keys
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    RunningWorker,
    Sandbox,
    headers,
    make_settings,
    wait_until,
)
from tests.webprocess import dmrelay_web

REPLY_URL = "/api/v1/contact/default-reply"
MAXMEMORY_BYTES = 20 * 2**20
BODY_BYTES = 63 * 1024


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a private redis-server with `maxmemory 20mb noeviction`."""
    server = start_local_redis(tmp_path / "redis")
    redis.Redis.from_url(server.url).config_set("maxmemory", MAXMEMORY_BYTES)
    yield server
    server.stop()


def large_body(number: int) -> str:
    """Return a default-reply of 63 KB for organization A."""
    body = {**DEFAULT_REPLY, "manychat_id": f"a-{number}", "username": f"a_user_{number}"}
    padding = BODY_BYTES - len(json.dumps({**body, "padding": ""}))
    return json.dumps({**body, "padding": "x" * padding})


def post(url: str, token: str, body: str) -> requests.Response:
    return requests.post(f"{url}{REPLY_URL}", data=body, headers=headers(token), timeout=10)


def fill_byte_budget(url: str) -> list[int]:
    """Send A's large bodies until the relay refuses one; return the statuses."""
    statuses: list[int] = []
    for number in range(1000):
        response = post(url, ORG_A.token, large_body(number))
        statuses.append(response.status_code)
        if response.status_code != 200:
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "60"
            assert "of undelivered messages for this organization" in response.json()["message"]
            assert response.json()["error"]
            break
        assert response.json()["status"] == "queued"
    return statuses


def test_one_organization_filling_its_byte_budget_leaves_room_for_another(
    small_redis: LocalRedis, sandbox_server: SandboxServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    connection = redis.Redis.from_url(small_redis.url)
    with dmrelay_web(
        small_redis.url,
        [ORG_A, ORG_B],
        sandbox_server.url,
        DMRELAY_ANSWER_WAIT_SECONDS="0",
        DMRELAY_INGEST_RATE_PER_ORG="0",
    ) as url:
        statuses = fill_byte_budget(url)  # no worker yet: nothing is delivered meanwhile
        # Its budget is a quarter of maxmemory (half of it, divided between two organizations).
        assert statuses[-1] == 503
        assert 60 <= statuses.count(200) <= MAXMEMORY_BYTES // 4 // BODY_BYTES
        assert post(url, ORG_A.token, large_body(5000)).status_code == 503  # A, and only A
        answers = [
            post(
                url,
                ORG_B.token,
                json.dumps(
                    {
                        **DEFAULT_REPLY,
                        "manychat_id": f"b-{n}",
                        "username": f"b_user_{n}",
                        "page_name": "Page B",
                    }
                ),
            )
            for n in range(100)
        ]
        assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "queued")] * 100
        settings = make_settings(small_redis.url, sandbox_server.url, tmp_path / "spool")
        worker = RunningWorker(settings, connection).start()
        try:
            wait_until(lambda: len(sandbox.contacts(ORG_B.id)) == 100, timeout=120, interval=0.5)
            keys = Keys()
            wait_until(lambda: not any(int(n) for n in connection.hvals(keys.pending)), timeout=60)
            # Every delivery counted in was counted out: the budget is free again.
            assert [int(n) for n in connection.hvals(keys.pending_bytes)] == [0, 0]
            assert connection.hlen(keys.pending_sizes) == 0
            assert post(url, ORG_A.token, large_body(6000)).json()["status"] == "queued"
        finally:
            worker.stop()
