"""Schemathesis fuzzes every route of /openapi.json on a relay with real Redis, sandbox, worker.

Each answer is checked: never a 5xx; its status, content type, body and headers are the ones
the description documents (so every error is in its documented shape); a method the route
does not declare answers 405; a request the description forbids is refused with a 4xx on the
admin, status and operations routes (ingest is lenient on purpose: ManyChat never retries).
Afterwards the relay must still be healthy: /healthz and /readyz answer, the worker thread
lives, no delivery failed inside the relay, and a new message is delivered to the sandbox.

Profiles, chosen by DMRELAY_FUZZ: `fast` (the default, part of `make test`: a few hundred
cases, deterministic) and `long` (`make fuzz`: many more cases, a new seed each run).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig

from relay.core import defaults
from relay.core.delivery import DeliveryState
from relay.devtools.localredis import LocalRedis
from relay.devtools.sandbox import SandboxServer
from relay.storage.store import Store
from relay.web.admin import api, tokens
from relay.web.apidoc import operations
from relay.web.apidoc.spec import build_spec, spec_operations
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    RunningWorker,
    Sandbox,
    headers,
    make_settings,
    served,
    wait_until,
)

# The fast profile fuzzes; the long one adds the coverage phase: boundary values, every
# parameter missing or malformed, and every undeclared method on every path.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {
        "generation": {"mode": "all", "max-examples": 15, "deterministic": True},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    },
    "long": {
        "generation": {"mode": "all", "max-examples": 400},
        "phases": {"stateful": {"enabled": False}},
    },
}
PROFILE = os.environ.get("DMRELAY_FUZZ", "fast")
ADMIN_TOKEN = tokens.mint(SECRET, [tokens.ADMIN], 6 * 3600, subject="fuzz")
CONFIG = SchemathesisConfig.from_dict(
    {
        **PROFILES[PROFILE],
        "auth": {
            "openapi": {
                operations.ADMIN_SCHEME: {"bearer": ADMIN_TOKEN},
                operations.SCRAPE_SCHEME: {"bearer": ADMIN_TOKEN},
                operations.ORG_SCHEME: {"api_key": ORG_A.token},
            }
        },
        "checks": {
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "unsupported_method": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            # 200 with the data as sent is not the contract: ingest refuses what DmTracker would.
            "positive_data_acceptance": {"enabled": False},
            # Flask's automatic OPTIONS lists every rule's methods, HEAD and OPTIONS included.
            "allow_header_conformance": {"enabled": False},
        },
        "operations": [
            {
                # Blank, null and placeholder fields count as absent, unknown fields pass on.
                "include-tag": operations.INGEST,
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
        ],
    }
)


def offline_description() -> dict[str, Any]:
    """Describe the relay without running it: routes and schemas need no Redis."""
    settings = make_settings("redis://unused", "http://unused")
    unconnected = redis.Redis(unix_socket_path="/nonexistent/never-connected.sock")
    return build_spec(create_app(settings, unconnected))


DESCRIPTION = offline_description()
schema = schemathesis.openapi.from_dict(DESCRIPTION, config=CONFIG)
ANSWERS: Counter[int] = Counter()


class FuzzedRelay:
    """The relay under fuzzing: its URL, store and worker."""

    def __init__(self, url: str, store: Store, worker: RunningWorker) -> None:
        self.url, self.store, self.worker = url, store, worker


@pytest.fixture(scope="module")
def relay(redis_server: LocalRedis, sandbox_server: SandboxServer) -> Iterator[FuzzedRelay]:
    """Serve a relay over HTTP with its own worker, seeded with a delivery in each state."""
    settings = make_settings(redis_server.url, sandbox_server.url)
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushdb()
    requests.delete(f"{Sandbox(sandbox_server).control}/state", timeout=5).raise_for_status()
    with pytest.MonkeyPatch.context() as patch:
        # The budgets have tests of their own; here every case should reach its route.
        for limit in ("READS_PER_MINUTE", "WRITES_PER_MINUTE", "BULK_PER_MINUTE"):
            patch.setattr(api, limit, 10**9)
        # So do the answer waits: a fuzzed ?wait=8 would otherwise hold a case for 8 s.
        patch.setattr(defaults, "MAX_ANSWER_WAIT_SECONDS", 0.2)
        with served(create_app(settings, connection)) as url:
            worker = RunningWorker(settings, connection).start()
            fuzzed = FuzzedRelay(url, Store(connection), worker)
            seed(fuzzed, Sandbox(sandbox_server))
            yield fuzzed
            worker.stop()
    connection.close()


def seed(relay: FuzzedRelay, sandbox: Sandbox) -> None:
    """Give the admin API data to answer with: a delivered message and a dead letter."""
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1, body={"error": "bad"})
    for manychat_id in ("900001", "900002"):
        body = {**DEFAULT_REPLY, "manychat_id": manychat_id}
        sent = requests.post(
            f"{relay.url}/api/v1/contact/default-reply",
            json=body,
            headers=headers(ORG_A.token),
            timeout=5,
        )
        delivery_id = sent.json()["data"]["delivery_id"]
        wait_until(lambda d=delivery_id: finished(relay.store, d))


def finished(store: Store, delivery_id: str) -> bool:
    """Return True once a delivery is delivered or dead."""
    delivery = store.history.load(delivery_id)
    return delivery is not None and delivery.state in ("delivered", "dead")


def test_the_fuzzed_description_is_the_one_the_relay_serves(relay: FuzzedRelay) -> None:
    served = requests.get(f"{relay.url}/openapi.json", timeout=5).json()

    # The prose differs (it quotes the budgets, raised here); operations and schemas may not.
    assert spec_operations(served) == spec_operations(DESCRIPTION)
    assert served["components"] == DESCRIPTION["components"]


@schema.parametrize()
def test_every_route_answers_as_described(case: Any, relay: FuzzedRelay) -> None:
    response = case.call_and_validate(base_url=relay.url)
    ANSWERS[response.status_code] += 1


def test_the_relay_is_healthy_after_fuzzing(
    relay: FuzzedRelay, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\nfuzz profile {PROFILE}: {sum(ANSWERS.values())} cases, answers {dict(ANSWERS)}")
    assert sum(ANSWERS.values()) > 0
    assert not any(status >= 500 for status in ANSWERS)
    for path in ("/healthz", "/readyz"):
        assert requests.get(f"{relay.url}{path}", timeout=5).status_code == 200
    assert relay.worker.thread.is_alive()
    probe = {**DEFAULT_REPLY, "username": "after_fuzz", "manychat_id": "999999"}
    probe["page_name"] = "Page B"
    sent = requests.post(
        f"{relay.url}/api/v1/contact/default-reply",
        json=probe,
        headers=headers(ORG_B.token),  # the fuzzing sent ORG_A's token only
        timeout=5,
    )
    probe_id = sent.json()["data"]["delivery_id"]
    delivered = wait_until(
        lambda: state_of(relay.store, probe_id) == DeliveryState.DELIVERED, timeout=30
    )
    assert delivered
    assert failures_inside_the_relay(relay.store) == []


def state_of(store: Store, delivery_id: str) -> str | None:
    """Return a delivery's state, or None if it is not kept."""
    delivery = store.history.load(delivery_id)
    return delivery.state if delivery else None


def failures_inside_the_relay(store: Store) -> list[str]:
    """Return the deliveries with an attempt that failed inside the relay, not at DmTracker."""
    ids = store.history.recent_ids(100_000, None, None)
    return [
        f"{d.id}: {a.error}"
        for d in store.history.iter_deliveries(ids)
        for a in d.attempts
        if (a.error or "").startswith("internal error")
    ]
