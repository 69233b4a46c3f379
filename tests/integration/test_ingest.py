"""The ManyChat-facing surface against a real Redis: auth, bad input, filtering."""

from __future__ import annotations

import json

import pytest
from rq import Queue

from relay.core.delivery import Delivery
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    assert_held,
    headers,
    queued_ids,
    with_settings,
)

URL = "/api/v1/contact/default-reply"


def test_accepts_and_stores_a_normalized_delivery(client, redis_conn, store) -> None:  # type: ignore[no-untyped-def]
    response = client.post(URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token))

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "queued"
    delivery_id = body["data"]["delivery_id"]
    assert queued_ids(redis_conn) == [delivery_id]
    delivery = store.history.load(delivery_id)
    assert delivery.endpoint == "default-reply"
    assert delivery.payload["username"] == "john_doe"
    assert delivery.payload["organization_id"] == ORG_A.id
    assert delivery.request_id == response.headers["X-Request-Id"]


def test_the_queue_is_rqs_and_nothing_stored_holds_a_token(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    delivery_id = client.post(URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token)).get_json()[
        "data"
    ]["delivery_id"]

    # RQ's own queue, as `rq info` reads it: the id on RQ's list, the list in RQ's registry.
    (queue,) = Queue.all(connection=redis_conn)
    assert queue.name == f"dmrelay-{ORG_A.id}"
    assert queue.count == 1
    assert queue.get_job_ids() == [delivery_id]
    assert queue.fetch_job(delivery_id).get_status() == "queued"  # a job RQ reads; no payload
    assert DEFAULT_REPLY["message_content"].encode() not in b"".join(
        redis_conn.hvals(f"rq:job:{delivery_id}")
    )
    for key in redis_conn.keys("*"):
        dumped = redis_conn.dump(key) or b""
        assert ORG_A.token.encode() not in dumped


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("", 401), ("wrong-token-0000000000", 401), (ORG_A.token[:-1], 401)],
)
def test_rejects_missing_or_unknown_token(client, redis_conn, token, status) -> None:  # type: ignore[no-untyped-def]
    sent = {"Content-Type": "application/json"}
    if token is not None:
        sent["x-org-auth-token"] = token
    response = client.post(URL, json=DEFAULT_REPLY, headers=sent)

    assert response.status_code == status
    assert response.get_json() == {
        "error": "Unauthorized",
        "message": "Missing or invalid x-org-auth-token header.",
    }
    assert queued_ids(redis_conn) == []


def test_rejects_token_of_another_organization(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "organization_id": ORG_A.id}
    response = client.post(URL, json=body, headers=headers(ORG_B.token))

    assert response.status_code == 403
    assert response.get_json()["error"] == "Forbidden"
    assert queued_ids(redis_conn, ORG_B.id) == []


def test_page_name_of_another_organization_is_forbidden(client) -> None:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "page_name": "Page B"}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 403


@pytest.mark.parametrize(
    "raw", ["{not json", '{"username": "a", "message_content": "m", "extra": NaN}', "[Infinity]"]
)
def test_malformed_json_is_held_as_text(client, redis_conn, raw) -> None:  # type: ignore[no-untyped-def]
    response = client.post(URL, data=raw, headers=headers(ORG_A.token))
    held = assert_held(response, redis_conn, "The request body is not valid JSON.")
    assert response.get_json()["message"] == (
        "Bad Request — Missing required fields, invalid field values, or malformed JSON"
    )
    assert held.received_body == raw


def test_body_over_64_kib_is_413(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "padding": "x" * (64 * 1024)}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 413
    assert response.get_json()["error"] == "Request Entity Too Large"
    assert queued_ids(redis_conn) == []


def test_body_just_under_the_limit_is_accepted(client) -> None:  # type: ignore[no-untyped-def]
    overhead = len(json.dumps({**DEFAULT_REPLY, "padding": ""}))
    body = {**DEFAULT_REPLY, "padding": "x" * (64 * 1024 - overhead)}
    assert len(json.dumps(body)) == 64 * 1024
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200


def nested(levels: int) -> dict:
    """Return a body whose unknown field makes it `levels` containers deep."""
    value: dict = {}  # the body is one level, "extra" the second
    for _ in range(levels - 2):
        value = {"k": value}
    return {**DEFAULT_REPLY, "extra": value}


def test_a_body_32_levels_deep_is_accepted(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(URL, json=nested(32), headers=headers(ORG_A.token))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("levels", [33, 900])
def test_a_body_nested_deeper_is_held_as_text(client, redis_conn, levels) -> None:  # type: ignore[no-untyped-def]
    response = client.post(URL, json=nested(levels), headers=headers(ORG_A.token))
    held = assert_held(response, redis_conn, "The request body nests deeper than 32 levels.")
    assert held.payload == {} and json.loads(held.received_body) == nested(levels)


@pytest.mark.parametrize(
    "raw",
    [
        '"message_content": "hi \\ud800"',
        '"manychat_data": {"note": ["\\udc00"]}',
        '"\\ud800key": "x"',
    ],
)
def test_an_unpaired_surrogate_is_held_as_text(client, redis_conn, raw) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(DEFAULT_REPLY)[:-1] + ", " + raw + "}"
    response = client.post(
        URL, data=body, headers={**headers(ORG_A.token), "Content-Type": "application/json"}
    )
    held = assert_held(response, redis_conn, "unpaired surrogate")
    assert held.received_body == body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/contact/default-reply"),
        ("PUT", "/api/v1/organization/create-contact"),
        ("DELETE", "/api/v1/contact/update-tags-external"),
        ("GET", "/api/v1/contact/contact-status"),
    ],
)
def test_wrong_method_is_405_in_dmtracker_shape(client, method, path) -> None:  # type: ignore[no-untyped-def]
    response = client.open(path, method=method, headers=headers(ORG_A.token))
    assert response.status_code == 405
    assert response.get_json() == {
        "error": "Method Not Allowed",
        "message": f"{method} is not allowed on this endpoint.",
    }


def test_unknown_path_is_404_in_dmtracker_shape(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/contact/nope", headers=headers(ORG_A.token))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found", "message": "No such endpoint."}


def test_a_held_request_names_the_field_and_quotes_dmtracker(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {key: value for key, value in DEFAULT_REPLY.items() if key != "manychat_id"}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    held = assert_held(response, redis_conn, "The 'manychat_id' field is required.")
    assert response.get_json()["message"] == (
        "Missing required fields (manychat_id, username, organization_id or page_name)"
    )
    assert held.payload == body


@pytest.mark.parametrize(
    "message",
    [None, "", "   ", "{{last_input_text}}", "##{{last_input_text}}", "<<last_input_text>>"],
)
def test_outreach_messages_are_skipped_not_queued(client, redis_conn, message) -> None:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "message_content": message}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))

    assert response.status_code == 200
    assert response.get_json()["status"] == "skipped"
    assert response.get_json()["data"]["reason"]
    assert queued_ids(redis_conn) == []


def test_an_overlong_idempotency_key_is_kept_by_its_digest(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    sent = headers(ORG_A.token, **{"Idempotency-Key": "k" * 201})
    first = client.post(URL, json=DEFAULT_REPLY, headers=sent)
    changed = {**DEFAULT_REPLY, "message_content": "a different text"}
    second = client.post(URL, json=changed, headers=sent)
    assert first.status_code == second.status_code == 200
    assert second.get_json()["data"]["duplicate"] is True
    assert len(queued_ids(redis_conn)) == 1


def test_queue_depth_limit_answers_503_and_queues_nothing(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    app = create_app(with_settings(settings, max_pending_deliveries=2), redis_conn)
    client = app.test_client()
    responses = [
        client.post(
            URL, json={**DEFAULT_REPLY, "message_content": f"m{i}"}, headers=headers(ORG_A.token)
        )
        for i in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 503]
    assert responses[2].get_json()["error"] == "Service Unavailable"
    assert responses[2].headers["Retry-After"] == "60"
    assert len(queued_ids(redis_conn)) == 2


def test_a_delivery_finished_twice_frees_one_place_in_the_depth_limit(client, store) -> None:  # type: ignore[no-untyped-def]
    # At-least-once: a reclaimed delivery can be finished by two workers.
    ids = [
        client.post(
            URL, json={**DEFAULT_REPLY, "message_content": f"m{i}"}, headers=headers(ORG_A.token)
        ).get_json()["data"]["delivery_id"]
        for i in range(2)
    ]
    finished = store.history.load(ids[0])
    store.history.finish(finished, "delivered", retention_seconds=60)
    store.history.finish(finished, "delivered", retention_seconds=60)
    assert store.stats.totals()["pending"] == 1


def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "redis": "ok"}


def test_contact_status_accepts_post_and_put(client, store) -> None:  # type: ignore[no-untyped-def]
    for method, stage in (("POST", "Contacted"), ("PUT", "Qualified"), ("PATCH", "Closed")):
        body = {"manychat_id": "777", "pipeline_stage": stage}
        response = client.open(
            "/api/v1/contact/contact-status", method=method, json=body, headers=headers(ORG_A.token)
        )
        assert response.status_code == 200, response.get_json()
        delivery: Delivery = store.history.load(response.get_json()["data"]["delivery_id"])
        assert delivery.endpoint == "contact-status"
        assert delivery.payload["pipeline_stage"] == stage


@pytest.mark.parametrize(
    "raw",
    ["[" * 50_000, '{"manychat_id": ' + "9" * 5000 + "}", b'{"a": "\xff"}'],
    ids=["deep-nesting", "huge-integer", "bad-utf8"],
)
def test_pathological_json_is_held_not_500(client, redis_conn, raw) -> None:  # type: ignore[no-untyped-def]
    response = client.post(URL, data=raw, headers=headers(ORG_A.token))
    assert_held(response, redis_conn, "The request body is not valid JSON.")
