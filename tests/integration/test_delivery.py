"""The worker against the real sandbox: retries, dead letters, 429s, ordering, fairness."""

from __future__ import annotations

import itertools
import time

import pytest

from relay.core.delivery import DeliveryState
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    free_port_url,
    headers,
    wait_until,
    with_settings,
)

DEFAULT_REPLY_PATH = "contact/default-reply"


def post(client, path: str, body: dict, org=ORG_A) -> str:  # type: ignore[no-untyped-def]
    response = client.post(f"/api/v1/{path}", json=body, headers=headers(org.token))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["delivery_id"])


def create_contact(client, username: str) -> str:  # type: ignore[no-untyped-def]
    body = {
        "username": username,
        "had_outreach": True,
        "outreach_reason": "r",
        "outreach_text": "t",
    }
    return post(client, "organization/create-contact", body)


def settled(store, delivery_id: str, state: str):  # type: ignore[no-untyped-def]
    return wait_until(lambda: (d := store.history.load(delivery_id)) and d.state == state and d)


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504])
def test_transient_statuses_are_retried_until_delivered(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, status
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=status, count=2)
    start_worker()
    delivery = settled(
        store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DELIVERED
    )

    assert [a.status for a in delivery.attempts] == [status, status, 200]
    assert [a.outcome for a in delivery.attempts] == ["retry", "retry", "delivered"]
    assert delivery.attempts_used == 2
    assert len(sandbox.requests()) == 3


def test_connection_errors_are_retried(client, store, settings, start_worker) -> None:  # type: ignore[no-untyped-def]

    unreachable = with_settings(settings, dmtracker_base_url=free_port_url(), max_attempts=2)
    start_worker(unreachable)
    delivery = settled(store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DEAD)

    assert [a.status for a in delivery.attempts] == [None, None]
    assert delivery.attempts[0].error == "connection error"
    assert delivery.reason == "gave up after 2 attempts: DmTracker unreachable (connection error)"


# 401 and 403 open the circuit breaker instead: tests/integration/test_gates.py.
@pytest.mark.parametrize("status", [400, 405, 422])
def test_permanent_statuses_go_straight_to_dead_letters(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, status
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=status, count=1, body={"error": "x"})
    start_worker()
    delivery = settled(store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DEAD)

    assert len(delivery.attempts) == 1
    assert delivery.reason == f"DmTracker answered {status}"
    assert delivery.attempts[0].body == '{"error":"x"}' or '"error"' in delivery.attempts[0].body
    assert delivery.id in store.dead.ids()


def test_transient_failures_exhaust_into_a_dead_letter(
    client, store, sandbox, start_worker
) -> None:  # type: ignore[no-untyped-def]
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=-1)
    start_worker()
    delivery = settled(store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DEAD)

    assert [a.status for a in delivery.attempts] == [503, 503, 503, 503]
    assert delivery.reason == "gave up after 4 attempts: DmTracker answered 503"


def test_retries_wait_according_to_the_backoff(client, store, sandbox, start_worker) -> None:  # type: ignore[no-untyped-def]
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=-1)
    start_worker()
    delivery = settled(store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DEAD)

    gaps = [b.at - a.at for a, b in zip(delivery.attempts, delivery.attempts[1:], strict=False)]
    # Ceilings 0.05, 0.1, 0.2 s (base 0.05, cap 0.2) plus scheduler polling (0.2 s).
    assert all(gap <= ceiling + 0.5 for gap, ceiling in zip(gaps, [0.05, 0.1, 0.2], strict=True))


@pytest.mark.parametrize(
    "fault",
    [
        {"body": {"error": "Rate limit exceeded", "retry_after": 1}},
        {"headers": {"Retry-After": "1"}, "body": {"error": "Rate limit exceeded"}},
    ],
    ids=["body", "header"],
)
def test_429_waits_as_asked_and_uses_no_attempt(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, fault
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=1, **fault)
    start_worker()
    delivery = settled(
        store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DELIVERED
    )

    throttled, delivered = delivery.attempts
    assert (throttled.status, throttled.outcome) == (429, "throttled")
    assert delivered.status == 200
    assert 1.0 <= delivered.at - throttled.at <= 2.5
    assert delivery.attempts_used == 0


def test_429_does_not_consume_the_attempt_budget(client, store, sandbox, start_worker) -> None:  # type: ignore[no-untyped-def]
    # Five 429s with max_attempts=4 would dead-letter if 429s counted.
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=5, body={"retry_after": 0})
    start_worker()
    delivery = settled(
        store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DELIVERED
    )
    assert [a.status for a in delivery.attempts] == [429] * 5 + [200]


def test_429s_without_a_hint_wait_longer_each_time(  # type: ignore[no-untyped-def]
    client, store, sandbox, settings, start_worker
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=429, count=-1, body={"error": "slow down"})
    start_worker(with_settings(settings, backoff_base_seconds=1.0, backoff_cap_seconds=60.0))
    delivery_id = post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY)
    delivery = wait_until(
        lambda: (d := store.history.load(delivery_id)) and len(d.attempts) == 2 and d
    )

    first, second = delivery.attempts
    jitter = 0.5 + 0.3  # the relay's own jitter, and the worker's scheduling slack
    assert 1.0 <= second.at - first.at <= 1.0 + jitter
    assert 2.0 <= delivery.next_attempt_at - second.at <= 2.0 + 0.5
    assert delivery.attempts_used == 0


def test_a_retried_first_delivery_keeps_its_successors_behind_it(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=3)
    first = post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY)
    tags = post(
        client,
        "contact/update-tags-external",
        {"username": "john_doe", "mode": "add", "tag_names": ["hot-lead"]},
    )
    status = post(client, "contact/contact-status", {"manychat_id": "123456", "lead_status": "won"})
    start_worker()

    settled(store, status, DeliveryState.DELIVERED)
    arrived = [r for r in sandbox.requests() if r["status"] < 300]
    assert [r["path"].rsplit("/", 1)[1] for r in arrived] == [
        "default-reply",
        "update-tags-external",
        "contact-status",
    ]
    assert store.history.load(first).state == DeliveryState.DELIVERED
    assert store.history.load(tags).state == DeliveryState.DELIVERED


def test_unrelated_contacts_do_not_wait_for_each_other(
    client, store, sandbox, start_worker
) -> None:  # type: ignore[no-untyped-def]
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=-1)
    blocked = post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY)
    other = create_contact(client, "someone_else")
    start_worker()
    settled(store, other, DeliveryState.DELIVERED)
    assert store.history.load(blocked).state in (DeliveryState.RETRYING, DeliveryState.DEAD)


def test_rate_limit_is_never_exceeded_by_several_workers(  # type: ignore[no-untyped-def]
    client, store, sandbox, settings, start_worker
) -> None:
    limited = with_settings(settings, rate_limits_per_minute={"create-contact": 10})
    sandbox.configure(create_contact_limit_per_minute=10)
    ids = [create_contact(client, f"lead_{i}") for i in range(16)]
    for _ in range(3):
        start_worker(limited)

    wait_until(lambda: len(sandbox.requests()) >= 10)
    time.sleep(1.0)  # give the workers time to overstep if they were going to
    received = sandbox.requests()
    assert len(received) == 10
    assert all(r["status"] == 201 for r in received)
    waiting = [
        store.history.load(i) for i in ids if store.history.load(i).state != DeliveryState.DELIVERED
    ]
    assert len(waiting) == 6
    # Each waiter holds a reserved slot, spaced by the limit's interval (6 s for 10/min).
    slots = sorted(d.next_attempt_at for d in waiting)
    assert all(5.5 <= b - a <= 6.5 for a, b in itertools.pairwise(slots))
    assert all(d.attempts_used == 0 and d.attempts == [] for d in waiting)


def test_a_throttled_organization_does_not_delay_another(  # type: ignore[no-untyped-def]
    client, store, sandbox, settings, start_worker
) -> None:
    limited = with_settings(settings, rate_limits_per_minute={"create-contact": 5})
    for i in range(40):
        create_contact(client, f"lead_{i}")
    start_worker(limited)
    wait_until(lambda: len(sandbox.requests()) >= 5)

    started = time.monotonic()
    other = post(client, DEFAULT_REPLY_PATH, {**DEFAULT_REPLY, "page_name": "Page B"}, org=ORG_B)
    settled(store, other, DeliveryState.DELIVERED)
    assert time.monotonic() - started < 1.0


def test_an_organization_whose_calls_hang_leaves_slots_for_another(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    # DmTracker hangs 2 s on create-contact, then fails: org A soon has a call in every slot
    # it may take (6 of the 8), never all of them.
    sandbox.fault(endpoint="organization/create-contact", status=504, count=-1, latency_ms=2000)
    for i in range(20):
        create_contact(client, f"lead_{i}")
    start_worker()
    wait_until(lambda: store.stats.totals()["in_flight"] >= 6)

    started = time.monotonic()
    other = post(client, DEFAULT_REPLY_PATH, {**DEFAULT_REPLY, "page_name": "Page B"}, org=ORG_B)
    settled(store, other, DeliveryState.DELIVERED)
    assert time.monotonic() - started < 1.0


def test_a_delivery_that_breaks_the_worker_ends_as_a_dead_letter(  # type: ignore[no-untyped-def]
    client, store, start_worker
) -> None:
    worker = start_worker()

    def explode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    worker.deliverer.client.send = explode
    delivery = settled(store, post(client, DEFAULT_REPLY_PATH, DEFAULT_REPLY), DeliveryState.DEAD)

    assert [a.error for a in delivery.attempts] == ["internal error: RuntimeError"] * 4
    assert delivery.reason == "gave up after 4 attempts: internal error: RuntimeError"
