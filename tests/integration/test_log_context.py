"""Every log line of a real request and of a real delivery carries the ids bound for it."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from relay.config import Settings
from relay.core.delivery import DeliveryState
from relay.logs import CONTEXT_KEYS
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, CapturedLog, headers, wait_until, with_settings

URL = "/api/v1/contact/default-reply"
log = logging.getLogger("dmrelay.test")


def ids(line: dict[str, Any]) -> dict[str, Any]:
    """Return the four context ids of a log line (a missing one shows as 'absent')."""
    return {key: line.get(key, "absent") for key in CONTEXT_KEYS}


def this_thread() -> CapturedLog:
    """Capture what the test's own thread logs: the Flask test client runs requests on it."""
    ident = threading.get_ident()
    return CapturedLog(lambda record: record.thread == ident)


def test_every_line_of_an_accepted_request_carries_its_ids(client) -> None:  # type: ignore[no-untyped-def]
    with this_thread() as captured:
        response = client.post(
            URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token, **{"X-Request-Id": "req-ctx-1"})
        )
        log.info("after the request")

    delivery_id = response.get_json()["data"]["delivery_id"]
    *inside, after = captured.lines  # the library lines inside (RQ, redis-py) count too
    *accepting, last = inside
    assert last["message"] == f"POST {URL} 200"
    assert ids(last) == {
        "request_id": "req-ctx-1",
        "delivery_id": delivery_id,
        "organization": ORG_A.id,
        "endpoint": "default-reply",
    }
    for line in accepting:  # logged while the store was still accepting: no id yet
        assert ids(line) == {**ids(last), "delivery_id": None}, line["message"]
    assert ids(after) == dict.fromkeys(CONTEXT_KEYS, "absent")  # the request left nothing behind


def test_the_status_route_logs_the_delivery_it_looked_up(client) -> None:  # type: ignore[no-untyped-def]
    accepted = client.post(URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token))
    delivery_id = accepted.get_json()["data"]["delivery_id"]
    with this_thread() as captured:
        client.get(
            f"/api/v1/deliveries/{delivery_id}",
            headers=headers(ORG_A.token, **{"X-Request-Id": "req-ctx-2"}),
        )

    (line,) = captured.lines
    assert ids(line) == {
        "request_id": "req-ctx-2",
        "delivery_id": delivery_id,
        "organization": ORG_A.id,
        "endpoint": None,
    }


def test_every_line_of_a_request_that_meets_a_redis_outage_carries_its_ids(
    settings: Settings,
) -> None:
    app = create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0"))
    with this_thread() as captured:
        response = app.test_client().post(
            URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token, **{"X-Request-Id": "req-ctx-3"})
        )
    app.extensions["dmrelay.front_door"].spool.close(drain_seconds=0)

    assert response.status_code == 200
    assert response.get_json()["status"] == "spooled"
    messages = captured.messages()
    assert messages[-1] == f"POST {URL} 200"
    assert "redis did not take a request (Redis is unreachable): spooled" in messages[:-1]
    for line in captured.lines:
        assert ids(line) == {
            "request_id": "req-ctx-3",
            "delivery_id": response.get_json()["data"]["delivery_id"],  # kept in the spool
            "organization": ORG_A.id,
            "endpoint": "default-reply",
        }


@pytest.mark.parametrize(
    ("faults", "final", "expected_attempts"),
    [
        pytest.param([{"status": 503}], DeliveryState.DELIVERED, 2, id="retried-then-delivered"),
        pytest.param([{"status": 400}], DeliveryState.DEAD, 1, id="dead-lettered"),
    ],
)
def test_every_line_of_a_delivery_carries_its_ids(  # type: ignore[no-untyped-def]
    client, store: Store, sandbox, start_worker, faults, final, expected_attempts
) -> None:
    for fault in faults:
        sandbox.fault(endpoint="contact/default-reply", count=1, **fault)
    response = client.post(
        URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token, **{"X-Request-Id": "req-ctx-4"})
    )
    delivery_id = response.get_json()["data"]["delivery_id"]
    finished = f"delivery {delivery_id}: {final}"

    # The worker runs each delivery on a pool thread named delivery_N.
    with CapturedLog(lambda record: record.threadName.startswith("delivery")) as captured:
        start_worker()
        wait_until(lambda: finished in captured.messages())

    attempts = [m for m in captured.messages() if m.startswith("attempt default-reply")]
    assert len(attempts) == expected_attempts
    if final == DeliveryState.DEAD:
        assert any(m.startswith(f"dead letter {delivery_id}") for m in captured.messages())
    for line in captured.lines:
        assert ids(line) == {
            "request_id": "req-ctx-4",
            "delivery_id": delivery_id,
            "organization": ORG_A.id,
            "endpoint": "default-reply",
        }, line["message"]
    assert store.history.load(delivery_id).state == final  # type: ignore[union-attr]
