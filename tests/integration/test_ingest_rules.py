"""The front door refuses only what DmTracker documents, and keeps secrets out of everything."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient

from relay.config import Settings
from relay.core.delivery import DeliveryState
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    CapturedLog,
    assert_held,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)

REPLY_URL = "/api/v1/contact/default-reply"
METRICS_TOKEN = "metrics-token-0123456789"

# Each of these was refused at the edge before, though DmTracker's docs never forbid it.
ONCE_REFUSED = [
    pytest.param(
        "contact/default-reply",
        {**DEFAULT_REPLY, "message_content": "x" * 8001},
        {"message_content": "x" * 8001},
        id="message-over-8000",
    ),
    pytest.param(
        "contact/default-reply",
        {**DEFAULT_REPLY, "message_date": "2026-11-30"},
        {"message_date": "2026-11-30T00:00:00.000Z"},
        id="date-only-message-date",
    ),
    pytest.param(
        "contact/default-reply",
        {**DEFAULT_REPLY, "username": " @@ John_Doe"},
        {"username": "john_doe"},
        id="username-with-two-ats-and-spaces",
    ),
    pytest.param(
        "organization/create-contact",
        {
            "username": "prospect",
            "had_outreach": True,
            "outreach_reason": "Q1",
            "outreach_text": "y" * 2001,
            "tag_color": "a colour name far longer than thirty-two characters",
            "tags": [f"t{i}" for i in range(51)],
        },
        {
            "outreach_text": "y" * 2001,
            "tag_color": "a colour name far longer than thirty-two characters",
            "tags": [f"t{i}" for i in range(51)],
        },
        id="outreach-text-tag-color-and-51-tags",
    ),
    pytest.param(
        "organization/create-contact",
        {
            "username": "inbound",
            "had_outreach": False,
            "last_response_at": "2026-11-30",
            "last_message_content": "hello",
        },
        {"last_response_at": "2026-11-30T00:00:00.000Z"},
        id="date-only-last-response-at",
    ),
    pytest.param(
        "contact/update-tags-external",
        {"username": "john_doe", "mode": "set", "tag_names": []},
        {"mode": "set", "tag_names": []},
        id="empty-tag-names-for-set",
    ),
]


def post_json(client: FlaskClient, path: str, body: Any, **extra: str) -> Any:
    return client.post(f"/api/v1/{path}", json=body, headers=headers(ORG_A.token, **extra))


def nothing_stored(redis_conn: redis.Redis) -> bool:
    return queued_ids(redis_conn) == [] and redis_conn.keys("dmrelay:d:*") == []


# -- refuse only what DmTracker would refuse -----------------------------------------------------


@pytest.mark.parametrize(("path", "body", "forwarded"), ONCE_REFUSED)
def test_what_dmtracker_never_forbids_is_queued_and_delivered(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, path, body, forwarded
) -> None:
    if path.endswith("update-tags-external"):
        post_json(client, "contact/default-reply", DEFAULT_REPLY)  # the contact must exist
    start_worker()
    response = post_json(client, path, body)

    assert response.status_code == 200, response.get_json()
    delivery_id = response.get_json()["data"]["delivery_id"]
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)
    (received,) = [r for r in sandbox.requests() if r["path"] == f"/api/v1/{path}"]
    assert {key: received["body"][key] for key in forwarded} == forwarded


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-8",
    ],
)
def test_a_json_body_is_accepted_whatever_its_content_type(
    client: FlaskClient, store: Store, content_type: str | None
) -> None:
    sent = {"x-org-auth-token": ORG_A.token}
    if content_type is not None:
        sent["Content-Type"] = content_type
    response = client.post(REPLY_URL, data=json.dumps(DEFAULT_REPLY), headers=sent)

    assert response.status_code == 200, response.get_json()
    delivery = store.history.load(response.get_json()["data"]["delivery_id"])
    assert delivery.payload["message_content"] == DEFAULT_REPLY["message_content"]


def test_json_without_a_content_type_reaches_dmtracker_over_http(
    relay_url: str, sandbox: Any, start_worker: Any
) -> None:
    start_worker()
    # requests sends a str body with no Content-Type at all.
    response = requests.post(
        f"{relay_url}{REPLY_URL}",
        data=json.dumps(DEFAULT_REPLY),
        headers={"x-org-auth-token": ORG_A.token},
        timeout=5,
    )
    assert response.request.headers.get("Content-Type") is None
    assert response.status_code == 200, response.text
    (received,) = wait_until(sandbox.requests)
    assert received["body"]["message_content"] == DEFAULT_REPLY["message_content"]


def test_a_body_that_is_not_json_is_held_whatever_its_type(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    sent = {"x-org-auth-token": ORG_A.token, "Content-Type": "text/plain"}
    response = client.post(REPLY_URL, data="hello", headers=sent)
    held = assert_held(response, redis_conn, "The request body is not valid JSON.")
    assert held.received_body == "hello"


@pytest.mark.parametrize("given", ["0999-12-31T10:00:00Z", "0001-01-01", "1000-01-01T00:30+01:00"])
def test_a_date_before_the_year_1000_is_held_and_not_queued(
    client: FlaskClient, redis_conn: redis.Redis, given: str
) -> None:
    response = post_json(client, "contact/default-reply", {**DEFAULT_REPLY, "message_date": given})
    assert_held(
        response, redis_conn, "The 'message_date' field must be a date from the year 1000 on."
    )


def test_what_dmtracker_documents_is_held_in_its_words(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    note = {
        "username": "x",
        "had_outreach": True,
        "outreach_reason": "r",
        "outreach_text": "t",
        "note": "n" * 1001,
    }
    response = post_json(client, "organization/create-contact", note)
    assert_held(response, redis_conn, "The 'note' field must be at most 1000 characters.")
    assert response.get_json()["message"] == (
        "Missing/invalid required fields, validation errors, type mismatch"
    )
    long_name = {**DEFAULT_REPLY, "username": "a" * 31}
    response = post_json(client, "contact/default-reply", long_name)
    assert_held(response, redis_conn, "The 'username' field must be 1-30 characters")
    assert response.get_json()["message"].startswith("Unprocessable Entity — Request is well")
    status = {"manychat_id": "1", "lead_status": "closed"}
    response = post_json(client, "contact/contact-status", status)
    assert_held(response, redis_conn, "The 'lead_status' field must be one of")
    assert response.get_json()["message"] == "Missing required fields or invalid status/stage value"


# -- secrets, no false alarms, no leaks ----------------------------------------------------------


@pytest.fixture
def short_secret_client(settings: Settings, redis_conn: redis.Redis) -> FlaskClient:
    """Return a client of an app whose metrics token is an ordinary word, as one used to be."""
    # Start-up now refuses such a token; built directly, the settings show the matcher's own rule.
    return create_app(with_settings(settings, metrics_token="prices"), redis_conn).test_client()


def test_an_ordinary_word_is_never_taken_for_a_secret(
    short_secret_client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = {**DEFAULT_REPLY, "message_content": "what are your prices?"}
    response = short_secret_client.post(REPLY_URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200, response.get_json()
    assert queued_ids(redis_conn) == [response.get_json()["data"]["delivery_id"]]


SECRET_IN_BODY = [
    *(
        pytest.param({"message_content": f"my key is {secret}, thanks"}, id=f"text holds {name}")
        for name, secret in (
            ("org A token", ORG_A.token),
            ("org B token", ORG_B.token),
            ("secret key", SECRET),
            ("metrics token", METRICS_TOKEN),
        )
    ),
    pytest.param({"x-org-auth-token": ORG_A.token}, id="a field holds the token"),
    pytest.param({"manychat_data": {"headers": [f"token {ORG_B.token}"]}}, id="nested"),
    pytest.param({ORG_A.token: True}, id="a key is the token"),
]


@pytest.mark.parametrize("extra", SECRET_IN_BODY)
def test_a_body_holding_any_configured_secret_is_400_and_stored_nowhere(
    settings: Settings, redis_conn: redis.Redis, extra: dict[str, Any]
) -> None:
    app = create_app(with_settings(settings, metrics_token=METRICS_TOKEN), redis_conn)
    body = {**DEFAULT_REPLY, **extra}
    response = app.test_client().post(REPLY_URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Bad Request",
        "message": "The request body holds one of the relay's secrets; send the organization"
        " token only in the x-org-auth-token header.",
    }
    assert nothing_stored(redis_conn)


@pytest.mark.parametrize("key", [ORG_A.token, f"evt-{ORG_B.token}-1", SECRET])
def test_an_idempotency_key_holding_a_secret_is_400_and_stored_nowhere(
    client: FlaskClient, redis_conn: redis.Redis, key: str
) -> None:
    response = post_json(client, "contact/default-reply", DEFAULT_REPLY, **{"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Bad Request",
        "message": "The Idempotency-Key header holds one of the relay's secrets; send the"
        " organization token only in the x-org-auth-token header.",
    }
    assert nothing_stored(redis_conn)
    for name in redis_conn.keys("*"):
        assert key.encode() not in (redis_conn.dump(name) or b"")


def test_a_request_id_holding_a_secret_is_replaced_and_the_lead_kept(  # type: ignore[no-untyped-def]
    client, store, redis_conn, sandbox, start_worker
) -> None:
    start_worker()
    with CapturedLog() as log:
        response = post_json(
            client, "contact/default-reply", DEFAULT_REPLY, **{"X-Request-Id": ORG_A.token}
        )
        assert response.status_code == 200, response.get_json()
        delivery_id = response.get_json()["data"]["delivery_id"]
        wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)

    given_back = response.headers["X-Request-Id"]
    assert re.fullmatch("req_[0-9a-f]{16}", given_back)  # short: it is stored with the lead
    assert store.history.load(delivery_id).request_id == given_back
    (received,) = sandbox.requests()
    assert received["headers"]["x-request-id"] == given_back
    for name in redis_conn.keys("*"):
        assert ORG_A.token.encode() not in (redis_conn.dump(name) or b"")
    assert "X-Request-Id holds one of the relay's secrets; a new id is used instead" in (
        log.messages()
    )
    request_lines = [line for line in log.lines if line.get("request_id") == given_back]
    assert request_lines, "the request's lines carry the new id"
    assert [line for line in log.lines if ORG_A.token in json.dumps(line)] == []


def test_a_plain_request_id_is_kept_and_forwarded(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    start_worker()
    response = post_json(
        client, "contact/default-reply", DEFAULT_REPLY, **{"X-Request-Id": "mc-evt-42"}
    )
    assert response.headers["X-Request-Id"] == "mc-evt-42"
    delivery_id = response.get_json()["data"]["delivery_id"]
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)
    (received,) = sandbox.requests()
    assert received["headers"]["x-request-id"] == "mc-evt-42"
