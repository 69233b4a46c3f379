"""Waits are fair: one organization's long waits never starve another's answers."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from relay.devtools.localredis import LocalRedis
from relay.devtools.sandbox import SandboxServer
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    Sandbox,
    headers,
    make_settings,
    with_settings,
)
from tests.webprocess import dmrelay_web

STATUS_URL = "/api/v1/contact/contact-status?wait=8"
REPLY_URL = "/api/v1/contact/default-reply"


@contextmanager
def run_web(redis_server: LocalRedis, sandbox_server: SandboxServer, **env: str) -> Iterator[str]:
    """Run `dmrelay web` for both organizations: 2 processes x 8 threads, default waits."""
    with dmrelay_web(
        redis_server.url,
        [ORG_A, ORG_B],
        sandbox_server.url,
        WEB_CONCURRENCY="2",
        DMRELAY_WEB_THREADS="8",
        DMRELAY_INGEST_RATE_PER_ORG="0",
        **env,
    ) as url:
        yield url


@pytest.fixture
def retrying_worker(
    start_worker, redis_server: LocalRedis, sandbox_server: SandboxServer, tmp_path: Path
):  # type: ignore[no-untyped-def]
    """Start a worker that keeps retrying transient failures for the whole run."""
    settings = make_settings(redis_server.url, sandbox_server.url, tmp_path / "spool")
    return start_worker(
        with_settings(settings, max_attempts=35, backoff_base_seconds=1.0, backoff_cap_seconds=2.0)
    )


def greedy_waits(url: str, stop: threading.Event, number: int) -> None:
    """Ask, again and again, for contact-status with an 8 s wait that DmTracker never ends."""
    body = {"manychat_id": f"unknown-{number}", "lead_status": "won"}
    while not stop.is_set():
        with contextlib.suppress(requests.RequestException):
            requests.post(
                f"{url}{STATUS_URL}",
                data=json.dumps(body),
                headers=headers(ORG_A.token),
                timeout=15,
            )
        stop.wait(0.2)  # refused a slot, A comes straight back: only not in a busy loop


def answered_contact_types(url: str, loops: int = 12, replies: int = 20) -> int:
    """Run A's greedy loops and send B's default-replies; count those with DmTracker's answer."""
    stop = threading.Event()
    greedy = [threading.Thread(target=greedy_waits, args=(url, stop, n)) for n in range(loops)]
    for thread in greedy:
        thread.start()
    try:
        time.sleep(3)  # A's waits fill whatever slots it may hold
        carried = 0
        for number in range(replies):
            body = {
                **DEFAULT_REPLY,
                "manychat_id": f"b-{number}",
                "username": f"b_user_{number}",
                "page_name": "Page B",
            }
            response = requests.post(
                f"{url}{REPLY_URL}", data=json.dumps(body), headers=headers(ORG_B.token), timeout=15
            )
            assert response.status_code == 200
            carried += "contact_type" in response.json().get("data", {})
    finally:
        stop.set()
        for thread in greedy:
            thread.join(timeout=30)
    return carried


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_greedy_organization_cannot_starve_another_of_answers(
    redis_server: LocalRedis,
    sandbox_server: SandboxServer,
    sandbox: Sandbox,
    retrying_worker,  # type: ignore[no-untyped-def]
) -> None:
    sandbox.fault(endpoint="contact/contact-status", status=503, count=-1)  # A's never finish
    with run_web(redis_server, sandbox_server) as url:
        assert answered_contact_types(url) >= 18


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_without_shares_the_same_run_starves_the_other_organization(
    redis_server: LocalRedis,
    sandbox_server: SandboxServer,
    sandbox: Sandbox,
    retrying_worker,  # type: ignore[no-untyped-def]
) -> None:
    # The control: a share so large that one organization may take every slot, as before.
    sandbox.fault(endpoint="contact/contact-status", status=503, count=-1)
    with run_web(redis_server, sandbox_server, DMRELAY_ORG_WAIT_SHARE="100") as url:
        assert answered_contact_types(url) < 18
