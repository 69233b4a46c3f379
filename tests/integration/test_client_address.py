"""Anonymous admin callers behind the platform's router each pay from their own budget, keyed
on the address the trusted proxies saw, never on an entry the caller wrote itself."""

from __future__ import annotations

import time

import pytest

from relay.web.admin import api
from relay.web.app import create_app
from tests.helpers import with_settings

PATH = "/api/v1/admin/deliveries"
ROUTER = "10.1.45.23"  # the socket peer: the platform's router, the same for every caller


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allow two anonymous reads a minute, in a window that will not end during the test."""
    monkeypatch.setattr(api, "READS_PER_MINUTE", 2)
    left = api.RATE_WINDOW_SECONDS - time.time() % api.RATE_WINDOW_SECONDS
    if left < 3:
        time.sleep(left + 0.05)


def client_behind(settings, redis_conn, proxies: int):  # type: ignore[no-untyped-def]
    """Return a test client of an app that trusts `proxies` proxies."""
    return create_app(with_settings(settings, trusted_proxies=proxies), redis_conn).test_client()


def remaining(client, forwarded_for: str | None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Make one anonymous read through the router; return its status and remaining budget."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    response = client.get(PATH, headers=headers, environ_overrides={"REMOTE_ADDR": ROUTER})
    return response.status_code, response.headers["X-RateLimit-Remaining"]


def test_behind_herokus_router_each_client_has_its_own_budget(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = client_behind(settings, redis_conn, 1)

    first = [remaining(client, "198.51.100.1") for _ in range(3)]
    other = remaining(client, "198.51.100.2")
    # A caller writing its own X-Forwarded-For only adds entries on the left: still itself.
    spoofing = remaining(client, "203.0.113.9, 198.51.100.1")

    assert first == [(401, "1"), (401, "0"), (429, "0")]
    assert other == (401, "1")
    assert spoofing == (429, "0")


def test_behind_render_the_client_is_the_entry_before_the_edge(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = client_behind(settings, redis_conn, 2)

    assert remaining(client, "198.51.100.1, 104.22.17.40") == (401, "1")
    assert remaining(client, "198.51.100.2, 104.22.17.41") == (401, "1")
    assert remaining(client, "203.0.113.9, 198.51.100.1, 104.22.17.42") == (401, "0")


def test_with_no_trusted_proxy_the_header_is_ignored(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = client_behind(settings, redis_conn, 0)

    assert remaining(client, "198.51.100.1") == (401, "1")
    assert remaining(client, "198.51.100.2") == (401, "0")  # the router's budget: shared


def test_a_request_that_skipped_the_proxies_pays_as_its_peer(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = client_behind(settings, redis_conn, 2)

    assert remaining(client, None) == (401, "1")
    assert remaining(client, "198.51.100.1") == (401, "0")  # one entry, two proxies: the peer
