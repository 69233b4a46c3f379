"""Only true repeats are duplicates: equal to the contact's latest request on that endpoint."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    dedup_fields,
    expire_dedup_marks,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)

REPLY = "/api/v1/contact/default-reply"
TAGS = "/api/v1/contact/update-tags-external"
STATUS = "/api/v1/contact/contact-status"


def send(client: FlaskClient, path: str, body: dict[str, Any], **extra: str) -> dict[str, Any]:
    """Post one request as ManyChat does; return its delivery id and whether it is a repeat."""
    response = client.post(path, json=body, headers=headers(ORG_A.token, **extra))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return {"delivery_id": data["delivery_id"], "duplicate": data["duplicate"]}


def reply(text: str) -> dict[str, Any]:
    return {**DEFAULT_REPLY, "message_content": text}


def tags(mode: str) -> dict[str, Any]:
    return {"username": "john_doe", "mode": mode, "tag_names": ["hot-lead"]}


def status(value: str) -> dict[str, Any]:
    return {"manychat_id": "123456", "lead_status": value}


SEQUENCES = {
    "status open, won, open": (STATUS, [status("open"), status("won"), status("open")]),
    "tags add, remove, add": (TAGS, [tags("add"), tags("remove"), tags("add")]),
    "replies yes, no, yes": (REPLY, [reply("yes"), reply("no"), reply("yes")]),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_a_back_and_forth_is_delivered_three_times_in_order(  # type: ignore[no-untyped-def]
    client, sandbox, start_worker, name
) -> None:
    path, bodies = SEQUENCES[name]
    send(client, REPLY, reply("first contact"))  # DmTracker knows the contact
    answers = [send(client, path, body) for body in bodies]
    start_worker()

    assert [answer["duplicate"] for answer in answers] == [False, False, False]
    assert len({answer["delivery_id"] for answer in answers}) == 3
    endpoint = path.removeprefix("/api/v1/")
    sent = wait_until(
        lambda: (
            (found := [r for r in sandbox.requests() if r["path"].endswith(endpoint)])
            and len(found) >= (3 if endpoint != "contact/default-reply" else 4)
            and found
        )
    )
    fields = [
        {key: r["body"].get(key) for key in ("lead_status", "mode", "message_content")}
        for r in sent[-3:]
    ]
    expected = [{key: body.get(key) for key in fields[0]} for body in bodies]
    assert fields == expected
    assert all(r["status"] == 200 for r in sent)
    if endpoint == "contact/contact-status":
        (contact,) = sandbox.contacts(ORG_A.id)
        assert contact["lead_status"] == "open"  # where the contact really ended


@pytest.mark.parametrize("name", SEQUENCES)
def test_a_repeat_of_the_latest_request_is_one_delivery(client, redis_conn, name) -> None:  # type: ignore[no-untyped-def]
    path, bodies = SEQUENCES[name]
    first = send(client, path, bodies[0])
    again = send(client, path, bodies[0])

    assert again == {"delivery_id": first["delivery_id"], "duplicate": True}
    queue = redis_conn.lrange(f"rq:queue:dmrelay-{ORG_A.id}", 0, -1)
    assert queue == [first["delivery_id"].encode()]


def test_the_latest_is_per_contact_and_per_endpoint(client) -> None:  # type: ignore[no-untyped-def]
    first = send(client, REPLY, reply("yes"))
    other_contact = {**reply("yes"), "username": "jane", "manychat_id": "999"}
    assert send(client, REPLY, other_contact)["duplicate"] is False
    assert send(client, TAGS, tags("add"))["duplicate"] is False  # another endpoint
    again = send(client, REPLY, reply("yes"))  # still the latest reply of john_doe

    assert again == {"delivery_id": first["delivery_id"], "duplicate": True}


def test_a_manychat_id_alone_is_the_contact_its_username_goes_by(client) -> None:  # type: ignore[no-untyped-def]
    send(client, REPLY, reply("hello"))  # links manychat_id 123456 to john_doe
    first = send(client, STATUS, status("open"))
    by_username = {"contact_id": None, "username": "john_doe", "mode": "add", "tag_names": ["x"]}
    send(client, TAGS, by_username)
    assert send(client, STATUS, status("open")) == {
        "delivery_id": first["delivery_id"],
        "duplicate": True,
    }
    send(client, STATUS, status("won"))
    assert send(client, STATUS, status("open"))["duplicate"] is False


def test_a_repeated_idempotency_key_is_a_duplicate_whatever_came_between(  # type: ignore[no-untyped-def]
    client, redis_conn
) -> None:
    first = send(client, REPLY, reply("yes"), **{"Idempotency-Key": "evt-1"})
    send(client, REPLY, reply("no"))
    send(client, STATUS, status("won"))
    again = send(client, REPLY, reply("maybe"), **{"Idempotency-Key": "evt-1"})

    assert again == {"delivery_id": first["delivery_id"], "duplicate": True}
    assert len(queued_ids(redis_conn)) == 3  # yes, no, won: the repeat is not queued


def test_the_dedup_mark_lives_for_the_window_and_names_the_contact(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    send(client, REPLY, reply("yes"))

    assert dedup_fields(redis_conn) == ["d:default-reply:u:john_doe"]
    mark = Store(redis_conn).contacts.mark(ORG_A.id, "default-reply", "u:john_doe")
    assert mark is not None
    assert 299 <= mark.expires_at - time.time() <= 301  # the window, rounded up


def test_a_repeat_equal_after_normalization_gets_the_first_answer(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    first = client.post(REPLY, json=DEFAULT_REPLY, headers=headers(ORG_A.token)).get_json()
    # Same message after normalization: the username differs only in case and '@'.
    again = {**DEFAULT_REPLY, "username": "@john_doe"}
    second = client.post(REPLY, json=again, headers=headers(ORG_A.token)).get_json()

    assert second["data"] == {
        "delivery_id": first["data"]["delivery_id"],
        "duplicate": True,
        "state": "queued",
    }
    assert queued_ids(redis_conn) == [first["data"]["delivery_id"]]


def test_a_repeat_after_the_window_is_a_new_delivery(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    first = client.post(REPLY, json=DEFAULT_REPLY, headers=headers(ORG_A.token)).get_json()
    expire_dedup_marks(redis_conn)  # what 5 minutes do
    second = client.post(REPLY, json=DEFAULT_REPLY, headers=headers(ORG_A.token)).get_json()

    assert second["data"]["duplicate"] is False
    assert len(queued_ids(redis_conn)) == 2
    assert first["data"]["delivery_id"] != second["data"]["delivery_id"]


def test_a_zero_window_turns_content_dedup_off_but_keeps_idempotency_keys(  # type: ignore[no-untyped-def]
    settings, redis_conn
) -> None:
    client = create_app(with_settings(settings, dedup_window_seconds=0), redis_conn).test_client()
    plain = [client.post(REPLY, json=DEFAULT_REPLY, headers=headers(ORG_A.token)) for _ in range(2)]
    keyed = headers(ORG_A.token, **{"Idempotency-Key": "evt-7"})
    repeated = [client.post(REPLY, json=DEFAULT_REPLY, headers=keyed) for _ in range(2)]

    assert [r.status_code for r in plain + repeated] == [200] * 4
    assert [r.get_json()["data"]["duplicate"] for r in plain + repeated] == [
        False,
        False,
        False,
        True,
    ]
    assert len(queued_ids(redis_conn)) == 3
    assert dedup_fields(redis_conn) == []


def test_same_body_for_another_organization_is_not_a_duplicate(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {k: v for k, v in DEFAULT_REPLY.items() if k != "page_name"}
    a = client.post(REPLY, json=body, headers=headers(ORG_A.token)).get_json()
    b = client.post(REPLY, json=body, headers=headers(ORG_B.token)).get_json()
    assert a["data"]["duplicate"] is False
    assert b["data"]["duplicate"] is False
