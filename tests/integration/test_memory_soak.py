"""A compressed soak: steady new contacts on an 8 MB Redis; memory levels off, every lead 200."""

from __future__ import annotations

import json
import time
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
    with_settings,
)
from tests.webprocess import dmrelay_web

REPLY_URL = "/api/v1/contact/default-reply"
MAXMEMORY_BYTES = 8 * 2**20
RETENTION_SECONDS = 120
SOAK_SECONDS = 7 * 60
REQUESTS_PER_SECOND = 15
SAMPLE_SECONDS = 10


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a private redis-server with `maxmemory 8mb noeviction`."""
    server = start_local_redis(tmp_path / "redis")
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("maxmemory", MAXMEMORY_BYTES)
    yield server
    server.stop()


def new_contact_reply(number: int) -> tuple[str, str]:
    """Return the token and body of a default-reply from a contact never seen before."""
    org = (ORG_A, ORG_B)[number % 2]
    body = {
        **DEFAULT_REPLY,
        "manychat_id": f"{10**9 + number}",
        "username": f"soak_user_{number}",
        "page_name": org.page_name,
    }
    return org.token, json.dumps(body)


def soak(url: str, connection: redis.Redis) -> tuple[list[int], list[int]]:
    """Send new contacts' replies at a steady rate; return the statuses and memory samples."""
    statuses: list[int] = []
    used: list[int] = []
    started = time.monotonic()
    next_sample = started
    with requests.Session() as session:
        while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
            number = len(statuses)
            token, body = new_contact_reply(number)
            response = session.post(
                f"{url}{REPLY_URL}", data=body, headers=headers(token), timeout=10
            )
            statuses.append(response.status_code)
            if time.monotonic() >= next_sample:
                used.append(int(connection.info("memory")["used_memory"]))
                next_sample += SAMPLE_SECONDS
            time.sleep(max(0.0, (number + 1) / REQUESTS_PER_SECOND - elapsed))
    return statuses, used


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 180)
def test_memory_levels_off_with_steady_new_contacts(
    small_redis: LocalRedis,
    sandbox_server: SandboxServer,
    sandbox: Sandbox,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    connection = redis.Redis.from_url(small_redis.url)
    request.addfinalizer(connection.close)
    settings = with_settings(
        make_settings(small_redis.url, sandbox_server.url, tmp_path / "spool"),
        delivered_retention_seconds=RETENTION_SECONDS,
        full_record_sample_rate=0.01,
        dedup_window_seconds=300,
    )
    worker = RunningWorker(settings, connection).start()
    try:
        with dmrelay_web(
            small_redis.url,
            [ORG_A, ORG_B],
            sandbox_server.url,
            DMRELAY_ANSWER_WAIT_SECONDS="0",
            DMRELAY_DELIVERED_RETENTION_SECONDS=str(RETENTION_SECONDS),
        ) as url:
            statuses, used = soak(url, connection)
    finally:
        worker.stop()
    assert statuses == [200] * len(statuses)
    assert len(statuses) >= SOAK_SECONDS * REQUESTS_PER_SECOND * 0.9
    assert max(used) < MAXMEMORY_BYTES * 0.75
    last_three_minutes = used[-(3 * 60 // SAMPLE_SECONDS) :]
    growth = last_three_minutes[-1] / last_three_minutes[0] - 1
    assert growth < 0.10, f"used_memory grew {growth:.1%} over the last 3 minutes: {used}"
