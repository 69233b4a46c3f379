"""What a delivery costs Redis: bytes per queued delivery, round trips per delivery, bytes kept
per delivered message, and what the compact record of a delivered message still tells (issue
11, targets 2, 3 and 6)."""

from __future__ import annotations

import json
import time

import pytest
import redis

from relay.core import defaults
from relay.core.delivery import Attempt, DeliveryState
from relay.core.policy import Verdict
from relay.devtools.counting import CountingConnection
from relay.logs import log_context
from relay.storage.server import QUEUED_DELIVERY_BYTES
from relay.storage.store import Store
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
from workers.bootstrap import build_deliverer

URL = "/api/v1/contact/default-reply"
# DmTracker's documented answer to a default-reply: the routing fields ManyChat maps.
ANSWER = {
    "status": "success",
    "message": "Contact processed successfully",
    "data": {
        "manychat_id": "123456",
        "username": "john_doe",
        "organization_id": ORG_A.id,
        "created_at": "2025-01-12T10:00:00.000Z",
        "last_response_at": "2025-01-12T10:30:00.000Z",
        "last_message_content": "Sure, send me more details about pricing.",
        "contact_type": "outreach",
        "outreach_reason": "New Follower",
        "outreach_message": "Hey, thanks for following!",
    },
}

NO_OUTREACH = {"outreach_reason": None, "outreach_message": None}


def accept(client, name: str) -> str:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "username": name, "manychat_id": f"{name}-id"}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    return str(response.get_json()["data"]["delivery_id"])


def test_a_delivery_takes_at_most_three_round_trips(  # type: ignore[no-untyped-def]
    client, settings, redis_server, sandbox
) -> None:
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    deliverer = build_deliverer(
        with_settings(settings, full_record_sample_rate=0), redis.Redis(connection_pool=pool)
    )
    inflight = deliverer.store.inflight
    trips = []
    for name in ("warm_up", "measured"):  # the first loads the Lua scripts into Redis
        delivery_id = accept(client, name)
        CountingConnection.sent = 0
        taken = inflight.take("counted", [ORG_A.id])
        assert taken is not None and taken.delivery_id == delivery_id
        with log_context():  # as the worker runs each delivery: what it binds ends here
            assert deliverer.run(taken) == DeliveryState.DELIVERED
        trips.append(CountingConnection.sent)

    assert trips[1] <= 3
    assert trips[1] == 2  # take (queue, lease, order gate, record), finish (the rest, answer too)


def test_a_queued_delivery_of_a_new_contact_costs_at_most_1200_bytes(client, store: Store) -> None:  # type: ignore[no-untyped-def]
    accept(client, "warm_up")  # the first request creates the shared keys
    before = int(store.redis.info("memory")["used_memory"])
    for index in range(1000):
        body = {
            "username": f"lead_{index:04}",
            "manychat_id": str(5_000_000 + index),
            "message_content": f"Reply {index}: how much is the coaching?",
        }
        assert client.post(URL, json=body, headers=headers(ORG_A.token)).status_code == 200
    used = (int(store.redis.info("memory")["used_memory"]) - before) / 1000

    assert store.redis.llen(store.keys.queue(ORG_A.id)) == 1001
    assert used <= QUEUED_DELIVERY_BYTES == 1200, used  # 100,000 queued fit in 120 MB


@pytest.mark.parametrize(
    "answer",
    [ANSWER, {**ANSWER, "data": {**ANSWER["data"], "contact_type": "inbound"} | NO_OUTREACH}],
    ids=["outreach contact (DmTracker's example)", "inbound contact"],
)
def test_a_delivered_message_keeps_at_most_540_bytes(client, store: Store, answer) -> None:  # type: ignore[no-untyped-def]
    ids = [accept(client, f"lead_{i:04}") for i in range(300)]  # past the index's small form
    for _ in ids:
        taken = store.inflight.take("w", [ORG_A.id])
        assert taken is not None and taken.delivery is not None
        taken.delivery.add_attempt(
            Attempt(time.time(), 200, 231.4, Verdict.DELIVERED, json.dumps(answer))
        )
        store.history.finish(
            taken.delivery, DeliveryState.DELIVERED, 7 * 86400, taken.lease, summary=True
        )

    record = sum(store.redis.memory_usage(store.keys.delivery(i)) or 0 for i in ids) / len(ids)
    index = (store.redis.memory_usage(store.keys.index, samples=0) or 0) / len(ids)
    # The summary keeps DmTracker's message, data.id and pipeline_stage besides the routing
    # fields, so a repeat answered after the answer key lapsed still gets them (about 30 B).
    assert record + index <= 540, (record, index)


def test_a_summary_still_answers_the_status_route_search_and_pages(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker
) -> None:
    sandbox.fault(endpoint="contact/default-reply", status=503, count=1)
    start_worker(with_settings(settings, full_record_sample_rate=0))
    delivery_id = accept(client, "summarised")
    delivery = wait_until(
        lambda: (d := store.history.load(delivery_id)) and d.state == DeliveryState.DELIVERED and d
    )

    assert delivery.is_summary
    assert (delivery.attempt_count, delivery.attempts_used) == (2, 1)
    assert delivery.payload == {"username": "summarised", "manychat_id": "summarised-id"}
    status = client.get(f"/api/v1/deliveries/{delivery_id}", headers=headers(ORG_A.token))
    data = status.get_json()["data"]
    assert (data["state"], data["attempts"], data["response"]["status"]) == ("delivered", 2, 200)
    assert data["response"]["body"] == {
        "status": "success",
        "message": "Contact processed successfully",
        "data": {"contact_type": "inbound"},
    }
    auth = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 600)}"}
    found = client.get("/api/v1/admin/deliveries?username=summarised", headers=auth).get_json()
    assert [(d["id"], d["summary"]) for d in found["data"]] == [(delivery_id, True)]
    sign_in(client)
    page = client.get(f"/dashboard/deliveries/{delivery_id}").text
    assert "Not kept: a delivered message keeps a summary" in page
    assert "Failed attempt" in page and "503" in page  # from the log of failed attempts


def test_the_failed_attempt_log_keeps_the_latest_thousand(client, store) -> None:  # type: ignore[no-untyped-def]
    accept(client, "retried")
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    for index in range(defaults.FAILED_ATTEMPTS_KEPT + 5):
        entry = json.dumps({"id": taken.delivery_id, "at": index, "status": 503})
        store.schedule.put(taken.delivery, time.time() + 60, failed_attempt=entry)

    kept = store.history.failed_attempts(taken.delivery_id)
    assert len(kept) == defaults.FAILED_ATTEMPTS_KEPT
    assert kept[0]["at"] == defaults.FAILED_ATTEMPTS_KEPT + 4  # newest first
