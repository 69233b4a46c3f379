"""Pause and resume, and the circuit breaker per organization, against the real sandbox."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from relay import cli
from relay.config import Org, Settings
from relay.core.delivery import DeliveryState
from relay.storage.store import Store
from relay.web.admin import tokens
from tests.helpers import (
    ORG_A,
    ORG_B,
    SECRET,
    Sandbox,
    csrf_of,
    headers,
    point_cli_at,
    sign_in,
    wait_until,
    with_settings,
)

REPLY = "contact/default-reply"
ADMIN = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.ADMIN], 3600, subject='ops')}"}
READ = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 3600, subject='ops')}"}


def reply(client: FlaskClient, text: str, org: Org = ORG_A, username: str = "jane_doe") -> str:
    """Send one default reply; return its delivery id (the answer must be queued)."""
    body = {"manychat_id": f"mc-{username}", "username": username, "message_content": text}
    response = client.post(f"/api/v1/{REPLY}", json=body, headers=headers(org.token))
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["status"] == "queued", answer
    return str(answer["data"]["delivery_id"])


def calls(sandbox: Sandbox, org: Org) -> list[dict[str, Any]]:
    """Return the sandbox's journal entries of one organization's calls, in arrival order."""
    return [r for r in sandbox.requests() if r["headers"].get("x-org-auth-token") == org.token]


def texts(entries: list[dict[str, Any]]) -> list[str]:
    """Return the message of each journaled default reply that was answered 200."""
    return [e["body"]["message_content"] for e in entries if e["status"] == 200]


def all_in(store: Store, ids: list[str], state: str) -> bool:
    """Tell whether every delivery has reached the state."""
    return all((d := store.history.load(i)) is not None and d.state == state for i in ids)


def delivered(store: Store, ids: list[str], timeout: float = 30.0) -> None:
    """Wait until every delivery is delivered."""
    wait_until(lambda: all_in(store, ids, DeliveryState.DELIVERED), timeout=timeout, interval=0.1)


# -- pause and resume -------------------------------------------------------------------------
def test_a_paused_organization_accepts_delivers_nothing_then_all_in_order(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    paused = client.post(f"/api/v1/admin/organizations/{ORG_A.id}/pause", headers=ADMIN)
    assert paused.status_code == 200
    assert paused.get_json()["data"]["paused"] is True
    assert paused.get_json()["data"]["pausedAt"].endswith("Z")
    start_worker()

    ids = [reply(client, f"message {i}") for i in range(100)]
    # The other organization goes on; once its message is through, the worker has had its
    # chances at the paused one's.
    delivered(store, [reply(client, "other", ORG_B)])
    time.sleep(0.5)  # a few more rounds of the worker's loop

    assert calls(sandbox, ORG_A) == []
    assert all(store.history.load(i).attempts_used == 0 for i in ids)
    assert all(store.history.load(i).state == DeliveryState.QUEUED for i in ids)

    resumed = client.post(f"/api/v1/admin/organizations/{ORG_A.id}/resume", headers=ADMIN)
    assert resumed.get_json()["data"]["paused"] is False
    delivered(store, ids)

    assert texts(calls(sandbox, ORG_A)) == [f"message {i}" for i in range(100)]


def test_pause_needs_the_admin_scope_and_a_served_organization(client) -> None:  # type: ignore[no-untyped-def]
    refused = client.post(f"/api/v1/admin/organizations/{ORG_A.id}/pause", headers=READ)
    unknown = client.post(
        "/api/v1/admin/organizations/33333333-3333-4333-8333-333333333333/pause", headers=ADMIN
    )
    listed = client.get("/api/v1/admin/organizations", headers=READ).get_json()

    assert refused.status_code == 403
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert [o["id"] for o in listed["data"]] == [ORG_A.id, ORG_B.id]
    assert listed["data"][0]["paused"] is False
    assert listed["meta"] == {"total": 2, "skip": 0, "take": 2, "hasMore": False}
    assert "token" not in str(listed).lower()


def test_the_dashboard_pauses_shows_and_resumes(client, store) -> None:  # type: ignore[no-untyped-def]
    sign_in(client)
    token = csrf_of(client, "/dashboard/")
    client.post(f"/dashboard/organizations/{ORG_B.id}/pause", data={"csrf_token": token})

    page = client.get("/dashboard/").text
    assert store.gates.read().paused.keys() == {ORG_B.id}
    assert page.count('class="badge badge-paused"') == 1
    assert "Resume" in page

    client.post(f"/dashboard/organizations/{ORG_B.id}/resume", data={"csrf_token": token})
    assert store.gates.read().paused == {}


def test_the_cli_pauses_and_resumes(monkeypatch, settings, store, capsys) -> None:  # type: ignore[no-untyped-def]
    point_cli_at(monkeypatch, settings)

    assert cli.main(["pause", ORG_A.id]) == 0
    assert ORG_A.id in store.gates.read().paused
    assert cli.main(["resume", ORG_A.id]) == 0
    assert store.gates.read().paused == {}
    assert cli.main(["pause", "nobody"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"paused {ORG_A.id}", f"resumed {ORG_A.id}"]


# -- circuit breaker ----------------------------------------------------------------------------
def outage_settings(settings: Settings) -> Settings:
    """Return settings with the default attempt budget and breaker, probes every 1 to 2 s."""
    return with_settings(
        settings,
        max_attempts=35,
        backoff_base_seconds=0.5,
        backoff_cap_seconds=2.0,
        breaker_probe_seconds=1.0,
        breaker_probe_max_seconds=2.0,
    )


def test_an_outage_opens_the_breaker_and_spends_few_calls(  # type: ignore[no-untyped-def]
    client, store, sandbox, settings, start_worker
) -> None:
    """A 10-minute outage shortened to 8 s, probes every 1-2 s (not 30 s-5 min)."""
    sandbox.fault(endpoint="*", status=503, count=-1)
    ids = [reply(client, f"m{i}", username=f"lead_{i % 20}") for i in range(200)]
    start_worker(outage_settings(settings))

    wait_until(lambda: ORG_A.id in store.gates.read().breakers, timeout=20)
    time.sleep(8)  # the outage goes on; only probes reach DmTracker now
    during = len(calls(sandbox, ORG_A))
    requests.delete(f"{sandbox.control}/faults", timeout=5).raise_for_status()
    recovered = time.monotonic()
    delivered(store, ids, timeout=60)

    assert during < 40, f"{during} calls reached DmTracker during the outage"
    assert time.monotonic() - recovered < 60
    assert store.dead.ids() == []
    assert ORG_A.id not in store.gates.read().breakers
    for username in {f"lead_{i}" for i in range(20)}:  # each contact's messages in order
        mine = [e for e in calls(sandbox, ORG_A) if e["body"]["username"] == username]
        sent = [int(t[1:]) for t in texts(mine)]
        assert sent == sorted(sent)


def test_a_refused_token_holds_one_organization_and_spends_no_attempts(  # type: ignore[no-untyped-def]
    client, store, sandbox, settings, start_worker
) -> None:
    sandbox.fault(endpoint="*", status=401, count=-1, organization_id=ORG_A.id)
    start_worker(outage_settings(settings))
    held = [reply(client, f"a{i}") for i in range(30)]
    others = [reply(client, f"b{i}", ORG_B) for i in range(30)]

    delivered(store, others)
    breaker = wait_until(lambda: store.gates.read().breakers.get(ORG_A.id))
    time.sleep(2.5)  # a probe or two
    refused = len(calls(sandbox, ORG_A))

    assert breaker.reason == "auth"
    assert refused <= 5  # the first call and one probe a second or less
    assert all(store.history.load(i).attempts_used == 0 for i in held)
    assert store.dead.ids() == []

    requests.delete(f"{sandbox.control}/faults", timeout=5).raise_for_status()
    delivered(store, held)

    assert texts(calls(sandbox, ORG_A)) == [f"a{i}" for i in range(30)]
    assert texts(calls(sandbox, ORG_B)) == [f"b{i}" for i in range(30)]
    assert store.gates.read().breakers == {}


@pytest.mark.parametrize("failures", [3])
def test_the_breaker_opens_after_n_transient_failures_in_a_row(  # type: ignore[no-untyped-def]
    store, failures
) -> None:
    gates = store.gates
    options = {
        "auth": False,
        "threshold": failures,
        "window_seconds": 120,
        "probe_seconds": 30,
        "max_probe_seconds": 300,
        "was_probe": False,
        "error": "503",
    }
    outcomes = [gates.record_failure(ORG_A.id, now=100, **options)[0] for _ in range(failures)]
    assert outcomes == ["closed", "closed", "opened"]
    assert not gates.claim_probe(ORG_A.id, "w1", 60, now=120)  # not due before 30 s
    assert gates.claim_probe(ORG_A.id, "w1", 60, now=131)
    assert not gates.claim_probe(ORG_A.id, "w2", 60, now=200)  # one probe at a time
    _, breaker = gates.record_failure(ORG_A.id, now=132, **{**options, "was_probe": True})
    assert breaker is not None and (breaker.interval, breaker.next_probe_at) == (60, 192)
    assert gates.record_success(ORG_A.id)
    assert gates.read().breakers == {}
    # A success in between starts the count again.
    gates.record_failure(ORG_A.id, now=300, **options)
    gates.record_success(ORG_A.id)
    assert gates.record_failure(ORG_A.id, now=301, **options)[0] == "closed"
