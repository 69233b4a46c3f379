"""Held requests: seen, edited and replayed in the admin API, the CLI and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from relay import cli
from relay.core.delivery import DeliveryState
from relay.storage import deadletter_actions
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    assert_held,
    headers,
    point_cli_at,
    queued_ids,
    sign_in,
    wait_until,
    with_settings,
)

ADMIN = "/api/v1/admin"
REPLY_URL = "/api/v1/contact/default-reply"
ADMIN_AUTH = {"Authorization": "Bearer " + tokens.mint(SECRET, [tokens.ADMIN], 3600, "ops")}
NO_USERNAME = {key: value for key, value in DEFAULT_REPLY.items() if key != "username"}


def hold_one(client: FlaskClient, redis_conn: redis.Redis, body: Any = None) -> str:
    """Send a reply without username (held) and return its delivery id."""
    data = body if isinstance(body, str) else json.dumps(body or NO_USERNAME)
    response = client.post(REPLY_URL, data=data, headers=headers(ORG_A.token))
    return assert_held(response, redis_conn).id


def test_a_held_request_is_listed_and_shown_by_the_admin_api(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    held_id = hold_one(client, redis_conn)

    listed = client.get(f"{ADMIN}/dead-letters", headers=ADMIN_AUTH).get_json()
    assert [(row["id"], row["state"]) for row in listed["data"]] == [(held_id, "held")]
    one = client.get(f"{ADMIN}/dead-letters/{held_id}", headers=ADMIN_AUTH).get_json()["data"]
    assert one["reason"] == "The 'username' field is required."
    assert json.loads(one["receivedBody"]) == NO_USERNAME
    assert one["payload"] == NO_USERNAME
    by_state = client.get(f"{ADMIN}/deliveries?state=held", headers=ADMIN_AUTH).get_json()
    assert [row["id"] for row in by_state["data"]] == [held_id]


def test_a_held_request_outlives_the_upkeep_that_purges_what_rq_tools_deleted(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    held_id = hold_one(client, redis_conn)
    store = Store(redis_conn)
    # A held request never had an RQ job: the upkeep must not read it as one an RQ tool deleted.
    assert deadletter_actions.apply_rq_deletions(store) == (0, 0)
    held = store.history.load(held_id)
    assert held is not None and held.state == DeliveryState.HELD
    assert store.dead.ids() == [held_id]


def test_a_held_request_is_replayed_only_once_its_edited_body_passes(
    client: FlaskClient, redis_conn: redis.Redis, store: Store, sandbox: Any, start_worker: Any
) -> None:
    start_worker()
    held_id = hold_one(client, redis_conn)
    url = f"{ADMIN}/dead-letters/{held_id}"

    refused = client.post(f"{url}/replay", headers=ADMIN_AUTH)
    assert refused.status_code == 422
    assert "Still held: The 'username' field is required." in refused.get_json()["error"]["message"]
    broken = client.patch(
        url, json={"payload": {**NO_USERNAME, "username": "a b"}}, headers=ADMIN_AUTH
    )
    assert broken.status_code == 422
    assert broken.get_json()["error"]["code"] == "VALIDATION_FAILED"
    assert store.history.load(held_id).payload == NO_USERNAME  # nothing changed
    assert client.patch(url, json={"body": {}}, headers=ADMIN_AUTH).status_code == 400
    secret = {**NO_USERNAME, "username": "john_doe", "note": ORG_A.token}
    leaked = client.patch(url, json={"payload": secret}, headers=ADMIN_AUTH)
    assert leaked.status_code == 422 and ORG_A.token not in leaked.get_data(as_text=True)
    assert ORG_A.token.encode() not in redis_conn.get(f"dmrelay:d:{held_id}")

    fixed = {**NO_USERNAME, "username": "@John_Doe"}
    edited = client.patch(url, json={"payload": fixed}, headers=ADMIN_AUTH)

    assert edited.status_code == 200, edited.get_json()
    data = edited.get_json()["data"]
    assert data["state"] == "held" and data["payload"]["username"] == "john_doe"
    assert data["attempts"][-1]["outcome"] == "edited"
    assert data["attempts"][-1]["body"] == "before: " + json.dumps(NO_USERNAME)
    assert "body edited by ops" in data["reason"]
    assert sandbox.requests() == []  # held is never sent, edited or not

    assert client.post(f"{url}/replay", headers=ADMIN_AUTH).status_code == 200
    wait_until(lambda: store.history.load(held_id).state == DeliveryState.DELIVERED)
    (sent,) = sandbox.requests()
    assert sent["body"]["username"] == "john_doe"
    assert sent["body"]["organization_id"] == ORG_A.id
    assert sent["body"]["message_content"] == DEFAULT_REPLY["message_content"]


def test_a_body_that_was_not_json_is_edited_from_its_text(
    client: FlaskClient, redis_conn: redis.Redis, store: Store
) -> None:
    held_id = hold_one(client, redis_conn, '{"username": "john", oops}')
    held = store.history.load(held_id)
    assert held.payload == {} and held.received_body == '{"username": "john", oops}'

    edited = client.patch(
        f"{ADMIN}/dead-letters/{held_id}",
        json={"payload": {"username": "john", "manychat_id": "1", "message_content": "hi"}},
        headers=ADMIN_AUTH,
    )
    assert edited.status_code == 200
    assert (
        client.post(f"{ADMIN}/dead-letters/{held_id}/replay", headers=ADMIN_AUTH).status_code == 200
    )
    assert store.history.load(held_id).state == DeliveryState.QUEUED


def test_bulk_replay_leaves_a_held_request_that_still_breaks_a_rule(
    client: FlaskClient, redis_conn: redis.Redis, store: Store
) -> None:
    held_id = hold_one(client, redis_conn)

    answer = client.post(f"{ADMIN}/dead-letters/replay", json={}, headers=ADMIN_AUTH).get_json()

    assert answer["data"] == {"replayed": [], "count": 0}
    assert store.history.load(held_id).state == DeliveryState.HELD


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    point_cli_at(monkeypatch, settings)


def test_the_cli_lists_edits_and_replays_a_held_request(
    env: None,
    client: FlaskClient,
    redis_conn: redis.Redis,
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    held_id = hold_one(client, redis_conn)

    assert cli.main(["dead-letters", "list"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["id"], row["state"], row["reason"]) == (
        held_id,
        "held",
        "The 'username' field is required.",
    )
    assert cli.main(["dead-letters", "replay", held_id]) == 1
    assert "still held: The 'username' field is required." in capsys.readouterr().err

    body = tmp_path / "body.json"
    body.write_text(json.dumps({**NO_USERNAME, "username": "u" * 31}))
    assert cli.main(["dead-letters", "edit", held_id, "--body", str(body)]) == 1
    assert "not changed: The 'username' field must be 1-30" in capsys.readouterr().err
    body.write_text(json.dumps({**NO_USERNAME, "username": "john_doe"}))
    assert cli.main(["dead-letters", "edit", held_id, "--body", str(body)]) == 0
    capsys.readouterr()
    assert store.history.load(held_id).attempts[-1].outcome == "edited"

    assert cli.main(["dead-letters", "replay", held_id]) == 0
    assert capsys.readouterr().out.splitlines() == ["replayed 1 dead letter(s)", held_id]
    assert store.history.load(held_id).state == DeliveryState.QUEUED


def test_the_dashboard_shows_and_edits_a_held_request(
    client: FlaskClient, redis_conn: redis.Redis, store: Store
) -> None:
    held_id = hold_one(client, redis_conn, '{"manychat_id": "1", "message_content": {{x y}')
    sign_in(client)

    listed = client.get("/dashboard/dead-letters").get_data(as_text=True)
    assert held_id in listed and "badge-held" in listed
    page = client.get(f"/dashboard/deliveries/{held_id}").get_data(as_text=True)
    assert "Held at the door" in page and 'id="payload-editor"' in page
    assert "The request body is not valid JSON." in page

    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = client.post(
        "/dashboard/dead-letters/replay",
        data={"csrf_token": csrf, "ids": held_id},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Replayed 0 dead letter(s)." in refused and "1 still held" in refused
    url = f"/dashboard/dead-letters/{held_id}/edit"
    bad = client.post(url, data={"csrf_token": csrf, "payload": "{nope"}, follow_redirects=True)
    assert "Not saved: the body is not valid JSON" in bad.get_data(as_text=True)
    fixed = {"username": "john_doe", "manychat_id": "1", "message_content": "hi"}
    good = client.post(
        url, data={"csrf_token": csrf, "payload": json.dumps(fixed)}, follow_redirects=True
    )
    assert "Body saved and checked" in good.get_data(as_text=True)
    assert store.history.load(held_id).payload["username"] == "john_doe"


def test_a_request_held_while_redis_is_away_is_spooled_then_kept_as_held(
    settings: Any, redis_conn: redis.Redis, store: Store
) -> None:
    cut_off = create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0"))
    response = cut_off.test_client().post(REPLY_URL, json=NO_USERNAME, headers=headers(ORG_A.token))
    answer = response.get_json()
    assert (response.status_code, answer["status"]) == (200, "held")
    cut_off.extensions["dmrelay.front_door"].spool.close(drain_seconds=0)  # the process ends

    successor = create_app(settings, redis_conn)  # drains what the first one left
    try:
        held = wait_until(lambda: store.history.load(answer["data"]["delivery_id"]))
        spool = successor.extensions["dmrelay.front_door"].spool
        wait_until(lambda: spool.depth()[0] == 0)
        assert spool.rejected() == []  # stored as held, not set aside as refused
    finally:
        successor.extensions["dmrelay.front_door"].spool.close(drain_seconds=0)
    assert held.state == DeliveryState.HELD and held.reason == answer["data"]["reason"]
    assert json.loads(held.received_body) == NO_USERNAME
    assert queued_ids(redis_conn) == []
    assert redis_conn.zscore("dmrelay:dead", held.id) is not None


def test_a_held_body_naming_another_organization_is_still_refused(client: FlaskClient) -> None:
    body = {**NO_USERNAME, "organization_id": ORG_B.id.upper()}
    response = client.post(REPLY_URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 403
