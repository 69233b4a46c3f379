"""The admin API and the integrator status endpoint against real Redis, worker and sandbox."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from relay.config import Org, Settings
from relay.core.delivery import STATES, Delivery, DeliveryState
from relay.logs import JsonFormatter
from relay.storage import queries
from relay.storage.store import Store
from relay.web.admin import api, tokens
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    Sandbox,
    headers,
    store_dead_letter,
    wait_until,
    with_settings,
)

ADMIN = "/api/v1/admin"
DEFAULT_REPLY_PATH = "contact/default-reply"
StartWorker = Callable[..., Any]


# -- helpers -----------------------------------------------------------------------------------
def mint(*scopes: str, secret: str = SECRET) -> str:
    return tokens.mint(secret, list(scopes), 3600, subject="ops")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


READ = bearer(mint(tokens.READ))
ADMIN_AUTH = bearer(mint(tokens.ADMIN))


def reply(
    client: FlaskClient,
    org: Org = ORG_A,
    username: str = "John_Doe",
    manychat_id: str = "123456",
    message: str = "Tell me more",
) -> str:
    """Post a default reply through ingest and return its delivery id."""
    body = {
        **DEFAULT_REPLY,
        "username": username,
        "manychat_id": manychat_id,
        "message_content": message,
        "page_name": org.page_name,
    }
    response = client.post(f"/api/v1/{DEFAULT_REPLY_PATH}", json=body, headers=headers(org.token))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["delivery_id"])


def create_contact(client: FlaskClient, username: str) -> str:
    """Post a create-contact through ingest and return its delivery id."""
    body = {"username": username, "had_outreach": True}
    body |= {"outreach_reason": "Cold outreach", "outreach_text": "Hey!"}
    response = client.post(
        "/api/v1/organization/create-contact", json=body, headers=headers(ORG_A.token)
    )
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["delivery_id"])


def settled(store: Store, delivery_id: str, state: str) -> Delivery:
    """Wait until the delivery reaches a state and return it."""

    def reached() -> Delivery | None:
        delivery = store.history.load(delivery_id)
        return delivery if delivery is not None and delivery.state == state else None

    found = wait_until(reached)
    assert found is not None  # wait_until returns only a truthy value
    return found


def state_of(store: Store, delivery_id: str) -> str | None:
    delivery = store.history.load(delivery_id)
    return delivery.state if delivery else None


def ids(response: TestResponse) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["data"]]


def error_of(response: TestResponse) -> dict[str, Any]:
    """Return the admin error envelope, checking its request id matches the header."""
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "requestId"}
    assert error["requestId"] == response.headers["X-Request-Id"]
    return dict(error)


def fresh_rate_window() -> None:
    """Wait for a new one-minute window when this one is about to end, so counts stay put."""
    left = api.RATE_WINDOW_SECONDS - time.time() % api.RATE_WINDOW_SECONDS
    if left < 3:
        time.sleep(left + 0.05)


@pytest.fixture
def outcomes(
    client: FlaskClient, store: Store, sandbox: Sandbox, start_worker: StartWorker
) -> dict[str, str]:
    """Produce, one after another: a 400 dead letter (A), a delivery (A), a 422 dead letter (B)."""
    start_worker()
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=400, count=1, body={"error": "bad"})
    dead_400 = settled(
        store, reply(client, username="alice", manychat_id="1"), DeliveryState.DEAD
    ).id
    delivered = settled(
        store, reply(client, username="bob", manychat_id="2"), DeliveryState.DELIVERED
    ).id
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=422, count=1)
    dead_422 = settled(store, reply(client, ORG_B, "carol", "3"), DeliveryState.DEAD).id
    return {"dead_400": dead_400, "delivered": delivered, "dead_422": dead_422}


# -- authentication ----------------------------------------------------------------------------
def expired_token() -> str:
    past = int(time.time()) - 120
    claims = {"iss": "dmrelay", "sub": "ops", "iat": past - 60, "exp": past, "jti": "x"}
    return jwt.encode({**claims, "scope": tokens.READ}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("auth_headers", "message"),
    [
        ({}, "Send Authorization: Bearer <admin token>."),
        ({"Authorization": "Basic b3BzOnB3"}, "Send Authorization: Bearer <admin token>."),
        (bearer("garbage"), "The admin token is missing or invalid."),
        (bearer(expired_token()), "The admin token has expired."),
        (
            bearer(mint(tokens.ADMIN, secret="another-secret-0123456789abcdefgh")),
            "The admin token is missing or invalid.",
        ),
    ],
    ids=["missing", "not-bearer", "garbage", "expired", "wrong-secret"],
)
def test_requests_without_a_valid_token_get_401(
    client: FlaskClient, auth_headers: dict[str, str], message: str
) -> None:
    response = client.get(f"{ADMIN}/deliveries", headers=auth_headers)

    assert response.status_code == 401
    assert error_of(response) | {"requestId": None} == {
        "code": "UNAUTHORIZED",
        "message": message,
        "requestId": None,
    }
    # Without a token the client address pays, and the 401 says how much is left.
    assert response.headers["X-RateLimit-Limit"] == "1000"
    assert int(response.headers["X-RateLimit-Remaining"]) < 1000


def test_a_read_token_cannot_replay(client: FlaskClient, store: Store, outcomes: dict) -> None:
    response = client.post(f"{ADMIN}/dead-letters/{outcomes['dead_400']}/replay", headers=READ)

    assert response.status_code == 403
    error = error_of(response)
    assert (error["code"], error["message"]) == (
        "FORBIDDEN",
        "This action needs the relay:admin scope.",
    )
    assert state_of(store, outcomes["dead_400"]) == DeliveryState.DEAD


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/dead-letters/replay"),
        ("POST", "/dead-letters/purge"),
        ("DELETE", "/dead-letters/x"),
    ],
)
def test_a_read_token_cannot_change_anything(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(f"{ADMIN}{path}", method=method, json={}, headers=READ)

    assert response.status_code == 403
    assert error_of(response)["code"] == "FORBIDDEN"


def test_an_admin_token_may_also_read(client: FlaskClient) -> None:
    response = client.get(f"{ADMIN}/deliveries", headers=ADMIN_AUTH)

    assert response.status_code == 200
    assert response.get_json() == {
        "data": [],
        "meta": {"total": 0, "skip": 0, "take": 25, "hasMore": False},
    }


# -- lists and pagination ----------------------------------------------------------------------
def test_pages_are_newest_first_with_exact_meta(client: FlaskClient) -> None:
    first, second, third = (reply(client, manychat_id=str(n)) for n in range(3))

    page_one = client.get(f"{ADMIN}/deliveries?take=2", headers=READ).get_json()
    page_two = client.get(f"{ADMIN}/deliveries?skip=2&take=2", headers=READ).get_json()
    past_end = client.get(f"{ADMIN}/deliveries?skip=3", headers=READ).get_json()

    assert [d["id"] for d in page_one["data"]] == [third, second]
    assert page_one["meta"] == {"total": 3, "skip": 0, "take": 2, "hasMore": True}
    assert [d["id"] for d in page_two["data"]] == [first]
    assert page_two["meta"] == {"total": 3, "skip": 2, "take": 2, "hasMore": False}
    assert past_end == {"data": [], "meta": {"total": 3, "skip": 3, "take": 25, "hasMore": False}}


def test_take_may_be_exactly_the_maximum(client: FlaskClient) -> None:
    response = client.get(f"{ADMIN}/deliveries?take=100", headers=READ)

    assert response.get_json()["meta"]["take"] == 100


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("skip=-1", "'skip' must be a whole number from 0 to 999999999; got '-1'."),
        ("skip=abc", "'skip' must be a whole number from 0 to 999999999; got 'abc'."),
        ("take=0", "'take' must be a whole number from 1 to 100; got '0'."),
        ("take=101", "'take' must be a whole number from 1 to 100; got '101'."),
        ("take=2.5", "'take' must be a whole number from 1 to 100; got '2.5'."),
        ("take=", "'take' must be a whole number from 1 to 100; got ''."),
    ],
)
def test_bad_pagination_is_a_400(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"{ADMIN}/deliveries?{query}", headers=READ)

    assert response.status_code == 400
    assert error_of(response) | {"requestId": None} == {
        "code": "BAD_REQUEST",
        "message": message,
        "requestId": None,
    }


# -- filters -----------------------------------------------------------------------------------
def test_filters_by_tenant_username_manychat_id_and_endpoint(client: FlaskClient) -> None:
    john = reply(client, username="John_Doe", manychat_id="10")
    jane = reply(client, username="jane", manychat_id="11")
    other_org = reply(client, ORG_B, username="John_Doe", manychat_id="12")
    contact = create_contact(client, "prospect")

    def found(query: str) -> list[str]:
        return ids(client.get(f"{ADMIN}/deliveries?{query}", headers=READ))

    assert found(f"tenantId={ORG_B.id}") == [other_org]
    assert found(f"tenantId={ORG_A.id.upper()}") == [contact, jane, john]
    assert found("username=%40John_Doe") == [other_org, john]  # normalized as ingest does
    assert found("manychatId=11") == [jane]
    assert found("endpoint=create-contact") == [contact]
    assert found(f"tenantId={ORG_A.id}&username=john_doe") == [john]
    assert found("state=queued") == [contact, other_org, jane, john]


def test_filters_by_received_time_in_iso_or_epoch_seconds(client: FlaskClient) -> None:
    earlier = reply(client, manychat_id="20")
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    later = reply(client, manychat_id="21")
    iso = datetime.fromtimestamp(between, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def found(query: str) -> list[str]:
        return ids(client.get(f"{ADMIN}/deliveries?{query}", headers=READ))

    assert found(f"since={between}") == [later]
    assert found(f"until={between}") == [earlier]
    assert found(f"since={iso}") == [later]
    assert found(f"until={iso}") == [earlier]
    assert found(f"since={int(between) - 60}&until={between}") == [earlier]


def test_a_time_range_reaches_past_the_newest_deliveries_a_search_scans(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SCAN_LIMIT", 3)
    oldest = reply(client, manychat_id="30")
    time.sleep(0.05)
    between = time.time()
    newer = [reply(client, manychat_id=str(31 + i)) for i in range(5)]

    listed = client.get(f"{ADMIN}/deliveries?until={between}", headers=READ)
    assert ids(listed) == [oldest]
    recent = client.get(f"{ADMIN}/deliveries", headers=READ)
    assert ids(recent) == newer[::-1][:3]  # without a range, the newest SCAN_LIMIT


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tenantId=acme", "The 'tenantId' filter must be a UUID."),
        (
            "endpoint=contact%2Fdefault-reply",
            "The 'endpoint' filter must be one of: "
            "default-reply, create-contact, update-tags, contact-status.",
        ),
        ("httpStatus=99", "The 'httpStatus' filter must be an HTTP status code such as 400."),
        ("httpStatus=4xx", "The 'httpStatus' filter must be a non-negative integer."),
        (
            "since=yesterday",
            "The 'since' filter must be an ISO 8601 date-time such as "
            "2025-01-31T14:00:00Z, or epoch seconds.",
        ),
        ("since=2000&until=1000", "The 'since' filter must be earlier than 'until'."),
        # Year 999 used to reach datetime.fromisoformat unpadded and answer 500.
        (
            "since=0999-12-31T00:00:00",
            "The 'since' filter must be an ISO 8601 date-time such as "
            "2025-01-31T14:00:00Z, or epoch seconds.",
        ),
        (
            "until=1000-01-01T00:30:00%2B01:00",
            "The 'until' filter must be an ISO 8601 date-time such as "
            "2025-01-31T14:00:00Z, or epoch seconds.",
        ),
    ],
)
def test_bad_filters_are_a_400(client: FlaskClient, query: str, message: str) -> None:
    for path in ("/deliveries", "/dead-letters"):
        response = client.get(f"{ADMIN}{path}?{query}", headers=READ)

        assert response.status_code == 400
        assert error_of(response)["message"] == message


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/deliveries", "state=lost", f"The 'state' filter must be one of: {', '.join(STATES)}."),
        (
            "/deliveries",
            "tenant=x",
            "Unknown filter 'tenant'; use tenantId, username, manychatId, endpoint, "
            "state, httpStatus, since, until.",
        ),
        (
            "/dead-letters",
            "state=dead",
            "Unknown filter 'state'; use tenantId, username, manychatId, endpoint, "
            "httpStatus, since, until.",
        ),
        (
            "/deliveries",
            "manychat_id=1",
            "Unknown filter 'manychat_id'; use tenantId, username, manychatId, endpoint, "
            "state, httpStatus, since, until.",
        ),
    ],
)
def test_filters_are_named_as_the_resource_fields_and_others_refused(
    client: FlaskClient, path: str, query: str, message: str
) -> None:
    response = client.get(f"{ADMIN}{path}?{query}", headers=READ)

    assert response.status_code == 400
    assert error_of(response)["message"] == message


def test_filters_by_state_and_last_http_status(client: FlaskClient, outcomes: dict) -> None:
    def found(query: str) -> list[str]:
        return ids(client.get(f"{ADMIN}/deliveries?{query}", headers=READ))

    assert found("state=dead") == [outcomes["dead_422"], outcomes["dead_400"]]
    assert found("state=delivered") == [outcomes["delivered"]]
    assert found("httpStatus=400") == [outcomes["dead_400"]]
    assert found("httpStatus=200") == [outcomes["delivered"]]
    assert found(f"state=dead&tenantId={ORG_A.id}") == [outcomes["dead_400"]]


# -- single resources --------------------------------------------------------------------------
def test_one_delivery_comes_with_its_attempt_log(
    client: FlaskClient, store: Store, sandbox: Sandbox, start_worker: StartWorker
) -> None:
    start_worker()
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=1)
    delivery_id = settled(store, reply(client), DeliveryState.DELIVERED).id

    response = client.get(f"{ADMIN}/deliveries/{delivery_id}", headers=READ)

    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["id"], data["state"], data["orgId"]) == (
        delivery_id,
        DeliveryState.DELIVERED,
        ORG_A.id,
    )
    assert data["attemptCount"] == 2
    assert [(a["httpStatus"], a["outcome"]) for a in data["attempts"]] == [
        (503, "retry"),
        (200, "delivered"),
    ]
    assert data["payload"]["username"] == "john_doe"
    assert ORG_A.token not in response.get_data(as_text=True)


def test_credential_looking_payload_fields_are_masked_as_on_the_dashboard(
    client: FlaskClient,
) -> None:
    body = {**DEFAULT_REPLY, "manychat_data": {"api_key": "k-123", "ig_id": 5}}
    sent = client.post(f"/api/v1/{DEFAULT_REPLY_PATH}", json=body, headers=headers(ORG_A.token))
    delivery_id = sent.get_json()["data"]["delivery_id"]

    one = client.get(f"{ADMIN}/deliveries/{delivery_id}", headers=READ).get_json()["data"]
    listed = client.get(f"{ADMIN}/deliveries", headers=READ).get_json()["data"]

    for view in (one, listed[0]):
        assert view["payload"]["manychat_data"] == {"api_key": "[redacted]", "ig_id": 5}


def test_unknown_delivery_is_a_404_envelope_with_the_request_id(client: FlaskClient) -> None:
    response = client.get(
        f"{ADMIN}/deliveries/dlv_missing", headers={**READ, "X-Request-Id": "req_trace-42"}
    )

    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "req_trace-42"
    assert response.get_json() == {
        "error": {
            "code": "RESOURCE_NOT_FOUND",
            "message": "No delivery dlv_missing is kept (it may have expired or been purged).",
            "requestId": "req_trace-42",
        }
    }


def test_dead_letters_list_and_show_only_dead_letters(client: FlaskClient, outcomes: dict) -> None:
    listed = client.get(f"{ADMIN}/dead-letters", headers=READ).get_json()
    one = client.get(f"{ADMIN}/dead-letters/{outcomes['dead_400']}", headers=READ)
    not_dead = client.get(f"{ADMIN}/dead-letters/{outcomes['delivered']}", headers=READ)

    assert [d["id"] for d in listed["data"]] == [outcomes["dead_422"], outcomes["dead_400"]]
    assert listed["meta"] == {"total": 2, "skip": 0, "take": 25, "hasMore": False}
    assert one.get_json()["data"]["reason"] == "DmTracker answered 400"
    assert one.get_json()["data"]["attempts"][0]["body"] == '{"error": "bad"}'
    assert not_dead.status_code == 404
    assert error_of(not_dead)["code"] == "RESOURCE_NOT_FOUND"


def test_dead_letters_take_the_same_filters(client: FlaskClient, outcomes: dict) -> None:
    by_tenant = client.get(f"{ADMIN}/dead-letters?tenantId={ORG_B.id}", headers=READ)
    by_status = client.get(f"{ADMIN}/dead-letters?httpStatus=400", headers=READ)

    assert ids(by_tenant) == [outcomes["dead_422"]]
    assert ids(by_status) == [outcomes["dead_400"]]


# -- replay and purge --------------------------------------------------------------------------
def test_replaying_one_dead_letter_delivers_it(
    client: FlaskClient, store: Store, outcomes: dict, caplog: pytest.LogCaptureFixture
) -> None:
    dead_id = outcomes["dead_400"]
    with caplog.at_level(logging.INFO, logger="dmrelay.admin"):
        response = client.post(f"{ADMIN}/dead-letters/{dead_id}/replay", headers=ADMIN_AUTH)

    assert response.get_json() == {"data": {"replayed": [dead_id], "count": 1}}
    delivered = settled(store, dead_id, DeliveryState.DELIVERED)
    assert [a.status for a in delivered.attempts] == [400, 200]
    (line,) = [r for r in caplog.records if r.name == "dmrelay.admin"]
    assert line.getMessage() == "admin replayed 1 dead letter(s)"
    fields = line.__dict__["fields"]
    printed = json.loads(JsonFormatter().format(line))  # the request id is the context's
    assert (printed["request_id"], fields["subject"]) == (response.headers["X-Request-Id"], "ops")
    assert (fields["action"], fields["delivery_ids"]) == ("replayed", [dead_id])
    assert ADMIN_AUTH["Authorization"].split()[1] not in str(line.__dict__)


def test_replaying_what_is_not_dead_is_a_404(client: FlaskClient, outcomes: dict) -> None:
    for delivery_id in (outcomes["delivered"], "dlv_missing"):
        response = client.post(f"{ADMIN}/dead-letters/{delivery_id}/replay", headers=ADMIN_AUTH)

        assert response.status_code == 404
        assert error_of(response)["message"] == (
            f"No dead letter {delivery_id} (unknown, expired, purged or not dead)."
        )


def test_replay_by_filter_replays_only_the_matches(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    response = client.post(
        f"{ADMIN}/dead-letters/replay", json={"tenantId": ORG_B.id}, headers=ADMIN_AUTH
    )

    assert response.get_json() == {"data": {"replayed": [outcomes["dead_422"]], "count": 1}}
    settled(store, outcomes["dead_422"], DeliveryState.DELIVERED)
    assert state_of(store, outcomes["dead_400"]) == DeliveryState.DEAD


@pytest.mark.parametrize("body", [{"username": "@Alice"}, {"manychatId": "1"}])
def test_replay_by_contact_replays_only_that_contact(
    client: FlaskClient, store: Store, outcomes: dict, body: dict
) -> None:
    response = client.post(f"{ADMIN}/dead-letters/replay", json=body, headers=ADMIN_AUTH)

    assert response.get_json() == {"data": {"replayed": [outcomes["dead_400"]], "count": 1}}
    settled(store, outcomes["dead_400"], DeliveryState.DELIVERED)
    assert state_of(store, outcomes["dead_422"]) == DeliveryState.DEAD


def test_replay_with_an_empty_filter_replays_every_dead_letter(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    response = client.post(f"{ADMIN}/dead-letters/replay", json={}, headers=ADMIN_AUTH)

    assert sorted(response.get_json()["data"]["replayed"]) == sorted(
        [outcomes["dead_400"], outcomes["dead_422"]]
    )
    assert response.get_json()["data"]["count"] == 2
    settled(store, outcomes["dead_400"], DeliveryState.DELIVERED)
    settled(store, outcomes["dead_422"], DeliveryState.DELIVERED)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"tenant": ORG_B.id},
            "Unknown filter 'tenant'; use tenantId, username, manychatId, endpoint, httpStatus,"
            " since, until.",
        ),
        (
            {"state": "dead"},
            "Unknown filter 'state'; use tenantId, username, manychatId, endpoint, httpStatus,"
            " since, until.",
        ),
        (
            {"manychat_id": "1"},
            "Unknown filter 'manychat_id'; use tenantId, username, manychatId, endpoint,"
            " httpStatus, since, until.",
        ),
        ([ORG_B.id], "Send the filters as a JSON object; {} matches every dead letter."),
        ({"httpStatus": "teapot"}, "The 'httpStatus' filter must be a non-negative integer."),
        (
            {"since": 10**400},
            "The 'since' filter must be an ISO 8601 date-time such as 2025-01-31T14:00:00Z,"
            " or epoch seconds.",
        ),
        (
            {"until": "0500-01-01T00:00:00Z"},
            "The 'until' filter must be an ISO 8601 date-time such as 2025-01-31T14:00:00Z,"
            " or epoch seconds.",
        ),
    ],
)
def test_bulk_actions_refuse_bad_filters_and_change_nothing(
    client: FlaskClient, store: Store, outcomes: dict, body: Any, message: str
) -> None:
    for action in ("replay", "purge"):
        response = client.post(f"{ADMIN}/dead-letters/{action}", json=body, headers=ADMIN_AUTH)

        assert response.status_code == 400
        assert error_of(response)["message"] == message
    assert store.dead.ids() == [outcomes["dead_422"], outcomes["dead_400"]]


def test_bulk_actions_need_a_json_body(client: FlaskClient, outcomes: dict) -> None:
    response = client.post(f"{ADMIN}/dead-letters/purge", headers=ADMIN_AUTH)

    assert response.status_code == 415
    assert error_of(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_bulk_actions_keep_requiring_the_json_content_type(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    # The conventions name application/json; only ingest takes JSON whatever its type.
    sent = {**ADMIN_AUTH, "Content-Type": "text/plain"}
    response = client.post(f"{ADMIN}/dead-letters/purge", data="{}", headers=sent)

    assert response.status_code == 415
    assert store.dead.ids() == [outcomes["dead_422"], outcomes["dead_400"]]


def test_purge_by_filter_forgets_only_the_matches(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    response = client.post(
        f"{ADMIN}/dead-letters/purge", json={"httpStatus": 400}, headers=ADMIN_AUTH
    )

    assert response.get_json() == {"data": {"purged": [outcomes["dead_400"]], "count": 1}}
    assert store.history.load(outcomes["dead_400"]) is None
    assert store.dead.ids() == [outcomes["dead_422"]]


def test_purge_by_received_time_selects_what_the_list_shows(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    since = settled(store, outcomes["dead_422"], DeliveryState.DEAD).received_at
    listed = ids(client.get(f"{ADMIN}/dead-letters?since={since}", headers=READ))

    response = client.post(f"{ADMIN}/dead-letters/purge", json={"since": since}, headers=ADMIN_AUTH)

    assert listed == [outcomes["dead_422"]]
    assert response.get_json()["data"]["purged"] == listed


def test_deleting_one_dead_letter(client: FlaskClient, store: Store, outcomes: dict) -> None:
    path = f"{ADMIN}/dead-letters/{outcomes['dead_422']}"

    first = client.delete(path, headers=ADMIN_AUTH)
    second = client.delete(path, headers=ADMIN_AUTH)

    assert first.get_json() == {"data": {"purged": [outcomes["dead_422"]], "count": 1}}
    assert store.history.load(outcomes["dead_422"]) is None
    assert second.status_code == 404


# -- overview ----------------------------------------------------------------------------------
def test_overview_has_totals_and_a_series(client: FlaskClient, outcomes: dict) -> None:
    def counted() -> dict[str, Any] | None:
        data = dict(client.get(f"{ADMIN}/overview", headers=READ).get_json()["data"])
        counts = data["windows"]["hour"]["counts"]
        return data if counts.get("dead") == 2 and counts.get("delivered") == 1 else None

    data = wait_until(counted)  # the worker writes the counts it gathers once a second
    assert data["totals"]["deadLetters"] == 2
    assert data["totals"]["pending"] == 0
    assert data["windows"]["hour"]["counts"]["dead"] == 2
    assert data["windows"]["hour"]["counts"]["delivered"] == 1
    assert len(data["series"]) == 60
    assert sum(minute["counts"].get("accepted", 0) for minute in data["series"]) == 3


def test_the_last_minute_counts_a_whole_minute_not_just_the_current_one(
    client: FlaskClient, store: Store
) -> None:
    previous_minute = int(time.time() // 60) - 1
    store.redis.hincrby(store.keys.key("stats", str(previous_minute)), f"{ORG_A.id}|x|delivered", 6)

    minute = client.get(f"{ADMIN}/overview", headers=READ).get_json()["data"]["windows"]["minute"]

    assert minute["counts"]["delivered"] == 6
    assert 60 <= minute["seconds"] <= 120
    assert minute["perMinute"]["delivered"] == pytest.approx(6 * 60 / minute["seconds"], 0.05)


# -- the admin API's own rate limit ------------------------------------------------------------
def test_rate_limit_headers_count_down_then_429(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "READS_PER_MINUTE", 3)
    fresh_rate_window()
    auth = bearer(mint(tokens.READ))

    responses = [client.get(f"{ADMIN}/deliveries", headers=auth) for _ in range(4)]

    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"3"}
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    limited = responses[3]
    assert error_of(limited)["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_writes_have_their_own_smaller_budget_per_token(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "WRITES_PER_MINUTE", 1)
    fresh_rate_window()
    auth, other = bearer(mint(tokens.ADMIN)), bearer(mint(tokens.ADMIN))

    first = client.delete(f"{ADMIN}/dead-letters/dlv_x", headers=auth)
    second = client.delete(f"{ADMIN}/dead-letters/dlv_x", headers=auth)
    read = client.get(f"{ADMIN}/dead-letters", headers=auth)
    other_token = client.delete(f"{ADMIN}/dead-letters/dlv_x", headers=other)

    assert (first.status_code, first.headers["X-RateLimit-Remaining"]) == (404, "0")
    assert second.status_code == 429
    assert (read.status_code, read.headers["X-RateLimit-Limit"]) == (200, "1000")
    assert other_token.status_code == 404


def test_bulk_replay_and_purge_share_a_budget_of_their_own(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "BULK_PER_MINUTE", 2)
    fresh_rate_window()
    auth = bearer(mint(tokens.ADMIN))

    bulk = [
        client.post(f"{ADMIN}/dead-letters/{action}", json={}, headers=auth)
        for action in ("replay", "purge", "replay")
    ]
    single_write = client.delete(f"{ADMIN}/dead-letters/dlv_x", headers=auth)

    assert [r.status_code for r in bulk] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in bulk] == ["2", "2", "2"]
    assert [r.headers["X-RateLimit-Remaining"] for r in bulk] == ["1", "0", "0"]
    assert error_of(bulk[2])["message"].startswith("This token may make 2 bulk a minute")
    assert single_write.headers["X-RateLimit-Limit"] == "100"
    assert single_write.headers["X-RateLimit-Remaining"] == "99"  # bulk spent none of it


def test_a_token_with_the_wrong_scope_still_sees_its_budget(client: FlaskClient) -> None:
    response = client.post(f"{ADMIN}/dead-letters/replay", json={}, headers=READ)

    assert response.status_code == 403
    assert response.headers["X-RateLimit-Limit"] == str(api.BULK_PER_MINUTE)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no-such-route", 404), ("PUT", "/deliveries", 405), ("GET", "", 404)],
)
def test_answers_outside_any_route_carry_the_envelope_and_the_headers(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    anonymous = client.open(f"{ADMIN}{path}", method=method)
    signed = client.open(f"{ADMIN}{path}", method=method, headers=ADMIN_AUTH)

    assert anonymous.status_code == 401  # nothing about the API's shape without a token
    assert signed.status_code == status
    for response in (anonymous, signed):
        assert "X-RateLimit-Remaining" in response.headers
        assert response.headers["Cache-Control"] == "no-store"
        error_of(response)


def test_requests_without_a_token_are_limited_by_client_address(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "READS_PER_MINUTE", 2)
    fresh_rate_window()

    here = [client.get(f"{ADMIN}/deliveries") for _ in range(3)]
    elsewhere = client.get(f"{ADMIN}/deliveries", environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    with_token = client.get(f"{ADMIN}/deliveries", headers=bearer(mint(tokens.READ)))

    assert [r.status_code for r in here] == [401, 401, 429]
    assert 1 <= int(here[2].headers["Retry-After"]) <= 60
    assert (elsewhere.status_code, elsewhere.headers["X-RateLimit-Remaining"]) == (401, "1")
    assert with_token.status_code == 200


def test_errors_after_authentication_carry_the_limit_headers(client: FlaskClient) -> None:
    response = client.get(f"{ADMIN}/deliveries/dlv_missing", headers=bearer(mint(tokens.READ)))

    assert response.status_code == 404
    assert response.headers["X-RateLimit-Limit"] == "1000"
    assert response.headers["X-RateLimit-Remaining"] == "999"


# -- the integrator's status endpoint ----------------------------------------------------------
def status_of(client: FlaskClient, delivery_id: str, org: Org = ORG_A) -> TestResponse:
    return client.get(f"/api/v1/deliveries/{delivery_id}", headers=headers(org.token))


def test_status_goes_from_queued_to_delivered_with_dmtracker_s_response(
    client: FlaskClient, store: Store, start_worker: StartWorker
) -> None:
    delivery_id = reply(client)
    received = settled(store, delivery_id, "queued").received_at

    queued = status_of(client, delivery_id).get_json()
    start_worker()
    settled(store, delivery_id, DeliveryState.DELIVERED)
    delivered = status_of(client, delivery_id).get_json()

    assert queued == {
        "status": "success",
        "data": {
            "delivery_id": delivery_id,
            "endpoint": DEFAULT_REPLY_PATH,
            "state": "queued",
            "received_at": datetime.fromtimestamp(received, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "attempts": 0,
            "next_attempt_at": None,
            "reason": None,
            "response": None,
        },
    }
    data = delivered["data"]
    assert (data["state"], data["attempts"], data["reason"]) == (DeliveryState.DELIVERED, 1, None)
    assert data["response"]["status"] == 200
    assert data["response"]["body"]["message"] == "Contact processed successfully"
    assert data["response"]["body"]["data"]["username"] == "john_doe"


def test_status_of_a_retrying_delivery_says_when_and_why(
    client: FlaskClient,
    store: Store,
    sandbox: Sandbox,
    settings: Settings,
    start_worker: StartWorker,
) -> None:
    start_worker(with_settings(settings, backoff_base_seconds=60, backoff_cap_seconds=120))
    sandbox.fault(endpoint=DEFAULT_REPLY_PATH, status=503, count=1)
    delivery_id = settled(store, reply(client), DeliveryState.RETRYING).id

    data = status_of(client, delivery_id).get_json()["data"]

    assert (data["state"], data["attempts"]) == (DeliveryState.RETRYING, 1)
    assert data["reason"] == "DmTracker answered 503"
    assert data["response"]["status"] == 503
    next_attempt = datetime.fromisoformat(data["next_attempt_at"].replace("Z", "+00:00"))
    assert next_attempt.timestamp() > time.time()


def test_status_of_a_dead_letter_gives_the_reason(client: FlaskClient, outcomes: dict) -> None:
    data = status_of(client, outcomes["dead_400"]).get_json()["data"]

    assert (data["state"], data["reason"]) == (DeliveryState.DEAD, "DmTracker answered 400")
    assert data["response"] == {"status": 400, "body": {"error": "bad"}}


def test_another_organization_s_delivery_looks_unknown(client: FlaskClient) -> None:
    delivery_id = reply(client)

    other_org = status_of(client, delivery_id, ORG_B)
    unknown = status_of(client, "dlv_missing", ORG_B)

    assert other_org.status_code == unknown.status_code == 404
    assert (
        other_org.get_json()
        == unknown.get_json()
        == {
            "error": "Not Found",
            "message": "No delivery with this id is kept for this organization.",
        }
    )


def test_status_needs_the_organization_token(client: FlaskClient) -> None:
    delivery_id = reply(client)

    response = client.get(f"/api/v1/deliveries/{delivery_id}")

    assert response.status_code == 401
    assert response.get_json() == {
        "error": "Unauthorized",
        "message": "Missing or invalid x-org-auth-token header.",
    }


# -- hostile inputs, pinned ---------------------------------------------------------------------
def test_a_thousand_query_parameters_are_refused_by_name(client: FlaskClient) -> None:
    query = "&".join(f"p{n:04d}=x" for n in range(1000))

    response = client.get(f"{ADMIN}/deliveries?{query}", headers=READ)

    assert response.status_code == 400
    assert error_of(response)["message"].startswith("Unknown filter 'p0000'; use tenantId")


def test_a_filter_repeated_a_thousand_times_is_read_once(client: FlaskClient) -> None:
    john = reply(client, username="john_doe", manychat_id="40")
    query = "&".join(["username=john_doe"] * 1000)

    assert ids(client.get(f"{ADMIN}/deliveries?{query}", headers=READ)) == [john]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("skip=999999999&take=100", 200),
        ("skip=1000000000", 400),
        ("skip=" + "9" * 5000, 400),
        ("take=" + "0" * 30 + "1", 400),
        ("skip=%2B1", 400),
        ("skip=1%00", 400),
        ("take=\N{ARABIC-INDIC DIGIT FIVE}", 400),
        ("skip=1&skip=-1", 200),  # the first value counts, as for every parameter
    ],
)
def test_skip_and_take_extremes(client: FlaskClient, query: str, status: int) -> None:
    response = client.get(f"{ADMIN}/dead-letters?{query}", headers=READ)

    assert response.status_code == status
    if status == 200:
        assert response.get_json()["data"] == []
    else:
        assert len(error_of(response)["message"]) < 200  # a huge value is not echoed whole


def test_skip_at_its_maximum_says_there_is_nothing_more(client: FlaskClient) -> None:
    reply(client, manychat_id="41")

    meta = client.get(f"{ADMIN}/deliveries?skip=999999999", headers=READ).get_json()["meta"]

    assert meta == {"total": 1, "skip": 999999999, "take": 25, "hasMore": False}


def test_the_years_1000_and_9999_are_valid_bounds(client: FlaskClient) -> None:
    delivery_id = reply(client, manychat_id="42")

    def found(query: str) -> list[str]:
        return ids(client.get(f"{ADMIN}/deliveries?{query}", headers=READ))

    assert found("since=1000-01-01T00:00:00Z") == [delivery_id]
    assert found("until=1000-01-01T00:00:00Z") == []
    assert found("until=9999-12-31T23:59:59.999Z") == [delivery_id]
    assert found("since=1000-01-01&until=9999-12-31T23:59:59Z") == [delivery_id]


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1e400"],
)
def test_times_outside_the_calendar_are_a_400(client: FlaskClient, value: str) -> None:
    response = client.get(f"{ADMIN}/deliveries?since={value.replace('+', '%2B')}", headers=READ)

    assert response.status_code == 400
    assert "'since' filter must be an ISO 8601 date-time" in error_of(response)["message"]


@pytest.mark.parametrize("body", [{"tenantId": ""}, {"tenantId": None}, {"username": " "}])
def test_a_blank_filter_is_refused_not_read_as_no_filter(
    client: FlaskClient, store: Store, body: dict[str, Any]
) -> None:
    dead = store_dead_letter(store, ORG_A.id)

    purge = client.post(f"{ADMIN}/dead-letters/purge", json=body, headers=ADMIN_AUTH)
    listed = client.get(f"{ADMIN}/dead-letters?{next(iter(body))}=", headers=READ)

    assert (purge.status_code, listed.status_code) == (400, 400)
    assert store.dead.ids() == [dead]


def test_a_word_that_names_a_route_is_not_a_delivery_id(client: FlaskClient) -> None:
    for action in ("replay", "purge"):
        response = client.get(f"{ADMIN}/dead-letters/{action}", headers=READ)

        assert response.status_code == 405
        assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
        assert error_of(response)["code"] == "METHOD_NOT_ALLOWED"


# -- the conventions docs/operations.md lists -------------------------------------------------
ISO_MILLISECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_every_time_is_iso_8601_utc_with_milliseconds(
    client: FlaskClient, store: Store, outcomes: dict
) -> None:
    dead = client.get(f"{ADMIN}/dead-letters/{outcomes['dead_400']}", headers=READ)
    overview = client.get(f"{ADMIN}/overview", headers=READ).get_json()["data"]

    data = dead.get_json()["data"]
    times = [data["receivedAt"], data["finishedAt"], *(a["at"] for a in data["attempts"])]
    times += [overview["generatedAt"], *(point["minute"] for point in overview["series"])]
    assert all(ISO_MILLISECONDS.fullmatch(moment) for moment in times), times
    assert data["nextAttemptAt"] is None
    received = settled(store, outcomes["dead_400"], DeliveryState.DEAD).received_at
    assert data["receivedAt"] == iso_of(received)


def test_a_delivery_shows_its_contact_never_redis_keys(client: FlaskClient) -> None:
    delivery_id = reply(client, username="@Jane_Doe", manychat_id="77")

    response = client.get(f"{ADMIN}/deliveries/{delivery_id}", headers=READ)

    data = response.get_json()["data"]
    assert data["contact"] == {"username": "jane_doe", "manychatId": "77", "contactId": None}
    text = response.get_data(as_text=True)
    for internal in ("contact_keys", "contactKeys", "holdsRateSlot", "dmrelay:", "chain:"):
        assert internal not in text
    assert set(data) == {
        "id", "orgId", "endpoint", "state", "receivedAt", "requestId", "idempotencyKey",
        "contact", "payload", "receivedBody", "attemptCount", "attemptsUsed", "attemptsOmitted",
        "attempts", "nextAttemptAt", "reason", "finishedAt", "replays", "summary",
    }  # fmt: skip
    assert data["summary"] is False  # the tests keep full records (a sample rate of 1)


def iso_of(epoch: float) -> str:
    """Format epoch seconds independently of the relay's own formatter."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
