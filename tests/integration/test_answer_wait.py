"""Wait, then answer: DmTracker's own answer when it comes in time, the queued body otherwise."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from werkzeug.serving import make_server

from relay.config import Settings
from relay.core.delivery import DeliveryState
from relay.storage.answers import AnswerListener, Answers, Outcome
from relay.storage.connection import dedicated_client
from relay.storage.keys import Keys
from relay.web.answer import ANSWERS_CLIENT_NAME
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, free_port_url, headers, wait_until, with_settings

REPLY_URL = "/api/v1/contact/default-reply"
CONTACT_URL = "/api/v1/organization/create-contact"
INBOUND_CONTACT = {
    "username": "new_lead",
    "manychat_id": "5550001",
    "had_outreach": False,
    "last_response_at": "2026-11-30T10:00:00Z",
    "last_message_content": "Hi! Is the course still open?",
}


def waiting(settings: Settings, **changes: Any) -> Settings:
    """Return settings with the documented default waits (5 s for the two routed endpoints)."""
    waits = {"default-reply": 5.0, "create-contact": 5.0, "update-tags": 0.0, "contact-status": 0.0}
    return with_settings(settings, answer_wait_seconds=waits, **changes)


def post(client, url: str, body: dict[str, Any], **extra: str) -> tuple[int, dict, float]:  # type: ignore[no-untyped-def]
    """Send one request; return its status, JSON body and seconds taken."""
    started = time.monotonic()
    response = client.post(url, json=body, headers=headers(ORG_A.token, **extra))
    return response.status_code, response.get_json(), time.monotonic() - started


def connections_named(redis_conn: redis.Redis, name: str) -> int:
    """Return how many connections with this client name Redis holds right now."""
    return sum(1 for client in redis_conn.client_list() if client.get("name") == name)


def test_dmtracker_in_time_answers_its_own_body(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    status, body, seconds = post(client, REPLY_URL, DEFAULT_REPLY)

    assert status == 200
    assert body["status"] == "success"
    assert body["message"] == "Contact processed successfully"
    assert body["data"]["contact_type"] == "inbound"  # what $.data.contact_type maps
    assert body["data"]["username"] == "john_doe"
    assert body["relay"]["state"] == "delivered"
    assert body["relay"]["delivery_id"].startswith("dlv_")
    assert seconds < 3


def test_a_created_contact_answers_200_with_its_id(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    status, body, _ = post(client, CONTACT_URL, INBOUND_CONTACT)

    # DmTracker answered 201; ManyChat maps only from a 200.
    assert status == 200
    assert body["message"] == "Contact created successfully"
    assert body["data"]["id"] == sandbox.contacts(ORG_A.id)[0]["id"]
    assert body["relay"]["state"] == "delivered"


def test_the_wait_comes_from_the_query_or_the_header(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    client = create_app(settings, redis_conn).test_client()  # defaults of 0: answer at once
    start_worker(settings)

    _, at_once, _ = post(client, REPLY_URL, DEFAULT_REPLY)
    _, by_query, _ = post(client, f"{REPLY_URL}?wait=4", {**DEFAULT_REPLY, "username": "query"})
    _, by_header, _ = post(
        client, REPLY_URL, {**DEFAULT_REPLY, "username": "header"}, **{"X-Dmrelay-Wait": "4"}
    )

    assert at_once["status"] == "queued"
    assert at_once["data"]["state"] == "queued"
    assert by_query["data"]["username"] == "query"
    assert by_header["data"]["username"] == "header"


@pytest.mark.parametrize("given", ["soon", "-3", "nan", "1e999", ""])
def test_a_wait_that_is_not_a_number_never_costs_the_lead(client, redis_conn, given) -> None:  # type: ignore[no-untyped-def]
    status, body, seconds = post(client, f"{REPLY_URL}?wait={given}", DEFAULT_REPLY)

    assert status == 200
    assert body["status"] == "queued"
    assert redis_conn.llen(f"rq:queue:dmrelay-{ORG_A.id}") == 1
    assert seconds < 1  # the default of these settings, 0


def test_dmtracker_too_slow_answers_queued_then_delivers(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)
    sandbox.configure(latency_ms=1200)

    status, body, seconds = post(client, f"{REPLY_URL}?wait=0.5", DEFAULT_REPLY)

    assert status == 200
    assert body["status"] == "queued"
    assert body["message"] == "Message queued."
    assert body["data"]["state"] == "queued"
    # The same JSONPath as in DmTracker's answer tells a flow where the message stands.
    assert body["relay"] == {
        "delivery_id": body["data"]["delivery_id"],
        "state": "queued",
        "duplicate": False,
    }
    assert 0.45 <= seconds < 1.1
    wait_until(lambda: sandbox.requests(), timeout=10)
    assert sandbox.requests()[0]["body"]["username"] == "john_doe"


def test_dmtracker_down_answers_queued_within_the_wait(settings, redis_conn, start_worker) -> None:  # type: ignore[no-untyped-def]
    own = waiting(settings, dmtracker_base_url=free_port_url(), max_attempts=35)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    status, body, seconds = post(client, f"{REPLY_URL}?wait=1", DEFAULT_REPLY)

    assert status == 200
    assert body["status"] == "queued"
    assert body["data"]["state"] == "retrying"  # tried, failed, will try again
    assert 0.95 <= seconds < 2


def test_a_create_contact_throttled_by_dmtracker_answers_queued(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)
    body_429 = {"error": "Rate limit exceeded", "message": "Slow down.", "retry_after": 30}
    sandbox.fault(endpoint="organization/create-contact", status=429, body=body_429)

    status, body, seconds = post(client, f"{CONTACT_URL}?wait=1", INBOUND_CONTACT)

    assert status == 200
    assert body["status"] == "queued"
    assert body["data"]["state"] == "retrying"
    assert seconds < 2
    assert [r["status"] for r in sandbox.requests()] == [429]


def test_a_create_contact_held_by_the_relays_rate_limit_answers_queued(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings, rate_limits_per_minute={"create-contact": 1})
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    _, first, _ = post(client, CONTACT_URL, INBOUND_CONTACT)
    second_contact = {**INBOUND_CONTACT, "username": "second_lead", "manychat_id": "5550002"}
    _, second, seconds = post(client, f"{CONTACT_URL}?wait=1", second_contact)

    assert first["relay"]["state"] == "delivered"
    assert second["status"] == "queued"
    assert second["data"]["state"] == "queued"  # waiting for its slot, not yet tried
    assert seconds < 2
    assert len(sandbox.requests()) == 1


@pytest.mark.parametrize("refusal", [400, 422])
def test_a_permanent_refusal_in_time_answers_200_queued_with_the_reason(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker, store, refusal
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)
    said = {"error": "Unprocessable Entity", "message": "Invalid Instagram username format."}
    sandbox.fault(endpoint="contact/default-reply", status=refusal, body=said)

    status, body, _ = post(client, REPLY_URL, DEFAULT_REPLY)

    assert status == 200  # the flow carries on; the lead waits in the dead letters
    assert body["status"] == "queued"
    assert body["data"]["state"] == "dead"
    assert body["data"]["reason"] == (
        f"DmTracker answered {refusal}: Invalid Instagram username format."
    )
    assert "dead letters" in body["message"]
    assert store.dead.ids() == [body["data"]["delivery_id"]]


def test_a_duplicate_gets_the_first_ones_answer(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    _, first, _ = post(client, REPLY_URL, DEFAULT_REPLY)
    _, again, seconds = post(client, REPLY_URL, DEFAULT_REPLY)
    redis_conn.delete(f"dmrelay:answer:{first['relay']['delivery_id']}")  # its TTL, 15 s later
    _, later, _ = post(client, REPLY_URL, DEFAULT_REPLY)

    assert again["data"] == first["data"]
    assert again["relay"] == {**first["relay"], "duplicate": True}
    assert seconds < 0.5  # known at once: no wait
    assert later["data"]["contact_type"] == "inbound"  # read back from the delivery's record
    assert later["relay"]["duplicate"] is True
    assert len(sandbox.requests()) == 1


def test_a_duplicate_of_a_delivery_in_flight_waits_for_it(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = waiting(settings)
    client = create_app(own, redis_conn).test_client()
    start_worker(own)
    sandbox.configure(latency_ms=1500)

    _, first, _ = post(client, f"{REPLY_URL}?wait=0.2", DEFAULT_REPLY)
    _, again, seconds = post(client, REPLY_URL, DEFAULT_REPLY)

    assert first["data"]["state"] == "queued"
    assert again["relay"] == {
        "delivery_id": first["data"]["delivery_id"],
        "state": "delivered",
        "duplicate": True,
        "status": 200,
    }
    assert seconds < 3


class Served:
    """The web app of some settings, served over real HTTP by a threaded server."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.server = make_server("127.0.0.1", 0, create_app(settings, connection), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def serve(redis_conn: redis.Redis) -> Iterator[Any]:
    """Return a function serving an app of given settings; all are stopped at teardown."""
    started: list[Served] = []

    def start(settings: Settings) -> Served:
        started.append(Served(settings, redis_conn))
        return started[-1]

    yield start
    for served in started:
        served.close()


def test_at_most_half_the_threads_wait_the_others_answer_at_once(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker, serve
) -> None:
    # Two waiting slots, either of which one organization may take (shares: test_wait_shares).
    own = waiting(settings, web_threads=4, org_wait_share=1.0)
    subscriptions_before = connections_named(redis_conn, ANSWERS_CLIENT_NAME)
    relay = serve(own)
    start_worker(own)
    sandbox.configure(latency_ms=1500)
    answers: list[tuple[float, dict]] = []

    def send(index: int) -> None:
        body = {**DEFAULT_REPLY, "username": f"lead_{index}", "manychat_id": str(index)}
        started = time.monotonic()
        response = requests.post(
            f"{relay.url}{REPLY_URL}?wait=4", json=body, headers=headers(ORG_A.token), timeout=10
        )
        answers.append((time.monotonic() - started, response.json()))

    senders = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # every request has arrived; the two waiters wait for DmTracker
    subscriptions = connections_named(redis_conn, ANSWERS_CLIENT_NAME) - subscriptions_before
    for sender in senders:
        sender.join(timeout=10)

    waited = [seconds for seconds, body in answers if body.get("status") == "success"]
    at_once = [seconds for seconds, body in answers if body.get("status") == "queued"]
    assert subscriptions == 1  # one connection for every waiting thread of the process
    assert len(waited) == 2 and all(1.4 < seconds < 4 for seconds in waited)
    assert len(at_once) == 4 and all(seconds < 1 for seconds in at_once)


def test_redis_lost_during_the_wait_still_answers_queued(  # type: ignore[no-untyped-def]
    settings, redis_conn, start_worker
) -> None:
    own = waiting(settings)
    app = create_app(own, redis_conn)
    # The subscription points where no Redis listens: no wait, the message is stored.
    waits = app.extensions["dmrelay.answer_waits"]
    nowhere = redis.Redis(port=1, socket_connect_timeout=0.5)
    waits.listener.subscriber = dedicated_client(nowhere, "nowhere")

    try:
        status, body, seconds = post(app.test_client(), REPLY_URL, DEFAULT_REPLY)
    finally:
        waits.listener.close()

    assert status == 200
    assert body["status"] == "queued"
    assert seconds < 2
    assert redis_conn.llen(f"rq:queue:dmrelay-{ORG_A.id}") == 1


@pytest.fixture
def listener(redis_conn: redis.Redis) -> AnswerListener:
    """Return an answer listener on the test Redis, with a subscription of its own."""
    # Named once per test: listeners of earlier tests keep their connections until the end.
    name = f"test-answers-{uuid.uuid4().hex[:8]}"
    return AnswerListener(dedicated_client(redis_conn, name), Answers(redis_conn, Keys()))


def test_waiting_sends_no_command_while_it_waits(listener, redis_conn) -> None:  # type: ignore[no-untyped-def]
    assert listener.wait("dlv_warm_up", 0.2) is None  # subscribes
    before = redis_conn.info("stats")["total_commands_processed"]

    assert listener.wait("dlv_never_published", 1.0) is None

    after = redis_conn.info("stats")["total_commands_processed"]
    assert after - before <= 2  # the first INFO and one GET of the answer key; no polling


def test_many_waiters_share_one_connection_and_each_gets_its_answer(  # type: ignore[no-untyped-def]
    listener, redis_conn
) -> None:
    answers = Answers(redis_conn, Keys())
    got: dict[int, Outcome | None] = {}
    ids = [f"dlv_{i % 5}" for i in range(10)]  # two waiters for each delivery

    def wait(index: int) -> None:
        got[index] = listener.wait(ids[index], 5)

    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(10)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)
    for i in range(5):
        answers.publish(Outcome(DeliveryState.DELIVERED, 200, f'{{"n": {i}}}'), f"dlv_{i}")
    for waiter in waiters:
        waiter.join(timeout=5)

    assert {i: o.body if o else None for i, o in got.items()} == {
        i: f'{{"n": {i % 5}}}' for i in range(10)
    }
    assert (
        connections_named(redis_conn, listener.subscriber.get_connection_kwargs()["client_name"])
        == 1
    )


def test_an_answer_published_before_the_wait_is_found_at_once(listener, redis_conn) -> None:  # type: ignore[no-untyped-def]
    Answers(redis_conn, Keys()).publish(Outcome(DeliveryState.DELIVERED, 201, "{}"), "dlv_early")
    started = time.monotonic()

    found = listener.wait("dlv_early", 5)

    assert found == Outcome(DeliveryState.DELIVERED, 201, "{}")
    assert time.monotonic() - started < 1
    assert 0 < redis_conn.ttl("dmrelay:answer:dlv_early") <= 15
