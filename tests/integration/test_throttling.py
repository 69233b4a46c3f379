"""Throttling has bounds: hints are capped, 429s have a budget, and no stored time makes a route
or page answer 500."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.web.admin import tokens
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    SECRET,
    headers,
    sign_in,
    wait_until,
    with_settings,
)

DEFAULT_REPLY_PATH = "contact/default-reply"
ENDLESS_TIMES = [1e12, float("inf"), float("nan"), -1e12]


def post(client, body: dict[str, Any] = DEFAULT_REPLY) -> str:  # type: ignore[no-untyped-def]
    response = client.post(f"/api/v1/{DEFAULT_REPLY_PATH}", json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["delivery_id"])


def in_state(store, delivery_id: str, state: str) -> Delivery:  # type: ignore[no-untyped-def]
    found = wait_until(lambda: (d := store.history.load(delivery_id)) and d.state == state and d)
    assert isinstance(found, Delivery)
    return found


@pytest.mark.parametrize(
    "fault",
    [
        {"body": {"retry_after": 1e12}},
        {"headers": {"Retry-After": "99999999999"}},
        {"headers": {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}},
    ],
    ids=["body 1e12 s", "header 99999999999 s", "header year 9999"],
)
def test_a_huge_hint_waits_no_longer_than_the_cap(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker, fault
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=1, **fault)
    start_worker(with_settings(settings, max_retry_after_seconds=60))
    delivery_id = post(client)

    delivery = in_state(store, delivery_id, DeliveryState.RETRYING)
    assert delivery.next_attempt_at is not None
    assert 0 < delivery.next_attempt_at - delivery.attempts[-1].at <= 60 + 0.5  # + jitter
    status = client.get(f"/api/v1/deliveries/{delivery_id}", headers=headers(ORG_A.token))
    assert status.status_code == 200
    assert status.get_json()["data"]["next_attempt_at"].startswith(time.strftime("%Y-"))


def test_429s_past_the_throttle_budget_end_as_a_dead_letter(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=-1, body={"retry_after": 0.1})
    start_worker(with_settings(settings, throttle_budget_seconds=1.0))
    started = time.monotonic()

    delivery = in_state(store, post(client), DeliveryState.DEAD)

    assert time.monotonic() - started < 5
    assert delivery.reason == "throttled by DmTracker (429) past the throttle budget of 1 s"
    assert {a.status for a in delivery.attempts} == {429}
    assert delivery.attempts[-1].at - delivery.attempts[0].at >= 1.0
    assert store.dead.ids() == [delivery.id]


def test_a_replay_gives_a_fresh_throttle_budget(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=-1, body={"retry_after": 0.1})
    start_worker(with_settings(settings, throttle_budget_seconds=0.5))
    delivery_id = in_state(store, post(client), DeliveryState.DEAD).id
    requests_before = len(sandbox.requests())
    requests.delete(f"{sandbox.control}/faults", timeout=5).raise_for_status()  # 429s end

    assert store.dead.replay(delivery_id)
    in_state(store, delivery_id, DeliveryState.DELIVERED)
    assert len(sandbox.requests()) == requests_before + 1


def stored_with(store, when: float) -> Delivery:  # type: ignore[no-untyped-def]
    """Store a retrying delivery whose times are `when`, as a hand-edited record could be."""
    delivery = Delivery.new(
        ORG_A.id, "default-reply", {**DEFAULT_REPLY, "organization_id": ORG_A.id}
    )
    delivery.state, delivery.reason = DeliveryState.RETRYING, "throttled by DmTracker (429)"
    delivery.next_attempt_at = when
    delivery.attempts.append(Attempt(when, 429, 12.0, "throttled", '{"retry_after": 1e12}'))
    store.history.save(delivery)
    store.redis.zadd(store.keys.index, {delivery.id: time.time()})
    return delivery


@pytest.mark.parametrize("when", ENDLESS_TIMES, ids=["1e12", "inf", "nan", "-1e12"])
def test_no_stored_time_makes_the_status_route_answer_500(client, store, when: float) -> None:  # type: ignore[no-untyped-def]
    delivery = stored_with(store, when)

    response = client.get(f"/api/v1/deliveries/{delivery.id}", headers=headers(ORG_A.token))

    assert response.status_code == 200
    assert response.get_json()["data"]["next_attempt_at"] is None


@pytest.mark.parametrize("when", ENDLESS_TIMES, ids=["1e12", "inf", "nan", "-1e12"])
def test_no_stored_time_makes_a_dashboard_page_answer_500(client, store, when: float) -> None:  # type: ignore[no-untyped-def]
    delivery = stored_with(store, when)
    sign_in(client)

    for page in (f"/dashboard/deliveries/{delivery.id}", "/dashboard/deliveries"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert delivery.id in response.text


@pytest.mark.parametrize("when", ENDLESS_TIMES, ids=["1e12", "inf", "nan", "-1e12"])
def test_no_stored_time_makes_the_admin_api_answer_500_or_invalid_json(  # type: ignore[no-untyped-def]
    client, store, when: float
) -> None:
    delivery = stored_with(store, when)
    auth = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 600)}"}

    response = client.get(f"/api/v1/admin/deliveries/{delivery.id}", headers=auth)

    assert response.status_code == 200
    assert b"Infinity" not in response.data and b"NaN" not in response.data
