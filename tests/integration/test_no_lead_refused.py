"""What ManyChat really sends when a variable is empty: each kept, never refused.

One test per case a new user met: each answered 200 and delivered, skipped or held.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    MANYCHAT_CONTACT,
    ORG_A,
    assert_held,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)

REPLY_URL = "/api/v1/contact/default-reply"
CONTACT_URL = "/api/v1/organization/create-contact"
TAGS_URL = "/api/v1/contact/update-tags-external"
STATUS_URL = "/api/v1/contact/contact-status"
CONTACT_ID = "1522d1d5-a394-4acb-b3d5-c1616f1a673d"


def queued_payload(store: Store, response: Any) -> dict[str, Any]:
    """Return the body queued for DmTracker by a request answered 200 "queued"."""
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["status"] == "queued", answer
    delivery_id = answer["data"]["delivery_id"]
    assert delivery_id in queued_ids(store.redis)
    delivery = store.history.load(delivery_id)
    assert delivery is not None
    return dict(delivery.payload)


def test_the_guides_reply_with_an_empty_last_input_text_is_skipped(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    raw = (
        '{"manychat_id": "123456", "username": "john_doe",'
        ' "message_content": {{last_input_text|to_json:true}},'
        ' "page_name": "{{page_name|fallback:""}}"}'
    )
    response = client.post(REPLY_URL, data=raw, headers=headers(ORG_A.token))

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "skipped"
    assert answer["data"]["reason"] == "message_content is missing"
    assert answer["relay"]["state"] == "skipped"
    assert queued_ids(redis_conn) == []


def test_the_guides_page_name_fallback_unrendered_is_forwarded_without_it(
    client: FlaskClient, store: Store
) -> None:
    raw = json.dumps(DEFAULT_REPLY)[:-1] + ', "page_name": "{{page_name|fallback:""}}"}'
    raw = raw.replace('"page_name": "Page A", ', "")

    payload = queued_payload(store, client.post(REPLY_URL, data=raw, headers=headers(ORG_A.token)))

    assert "page_name" not in payload
    assert payload["message_content"] == DEFAULT_REPLY["message_content"]


def test_an_inbound_contact_whose_last_message_is_a_placeholder_is_held(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = {
        "username": "john_doe",
        "had_outreach": False,
        "last_response_at": "2026-11-30T10:00:00Z",
        "last_message_content": "{{last_input_text}}",
    }
    response = client.post(CONTACT_URL, json=body, headers=headers(ORG_A.token))

    held = assert_held(
        response,
        redis_conn,
        "The 'last_message_content' field is required when had_outreach is false"
        " (it was an unrendered ManyChat placeholder).",
    )
    assert held.payload == body  # the body as it came, to fix and replay


@pytest.mark.parametrize("placeholder", ["{{subscriber_id}}", "##{{subscriber_id}}", "<<id>>"])
def test_create_contact_goes_without_an_optional_manychat_id_placeholder(
    client: FlaskClient, store: Store, placeholder: str
) -> None:
    body = {
        "username": "john_doe",
        "manychat_id": placeholder,
        "had_outreach": True,
        "outreach_reason": "Giveaway",
        "outreach_text": "Hi!",
    }
    payload = queued_payload(
        store, client.post(CONTACT_URL, json=body, headers=headers(ORG_A.token))
    )
    assert "manychat_id" not in payload and payload["username"] == "john_doe"


def test_update_tags_with_a_contact_id_goes_without_a_username_placeholder(
    client: FlaskClient, store: Store
) -> None:
    body = {
        "contact_id": CONTACT_ID,
        "username": "{{instagram_username}}",
        "mode": "add",
        "tag_names": ["hot-lead"],
    }
    payload = queued_payload(store, client.post(TAGS_URL, json=body, headers=headers(ORG_A.token)))
    assert "username" not in payload and payload["contact_id"] == CONTACT_ID


def test_contact_status_with_a_contact_id_goes_without_a_manychat_id_placeholder(
    client: FlaskClient, store: Store
) -> None:
    body = {"contact_id": CONTACT_ID, "manychat_id": "{{subscriber_id}}", "lead_status": "won"}
    response = client.put(STATUS_URL, json=body, headers=headers(ORG_A.token))
    payload = queued_payload(store, response)
    assert "manychat_id" not in payload and payload["contact_id"] == CONTACT_ID


def test_full_contact_data_with_only_the_instagram_interaction_time_is_delivered(
    settings: Any, redis_conn: redis.Redis, sandbox: Any, start_worker: Any
) -> None:
    own = with_settings(settings, answer_wait_seconds={"create-contact": 5.0})
    client = create_app(own, redis_conn).test_client()
    start_worker(own)
    contact = {
        **MANYCHAT_CONTACT,
        "last_interaction": None,
        "ig_last_interaction": "2026-11-30T10:15:00+00:00",
    }

    response = client.post(
        "/api/v1/manychat/create-contact", json=contact, headers=headers(ORG_A.token)
    )

    assert response.status_code == 200
    assert response.get_json()["relay"]["state"] == "delivered", response.get_json()
    (sent,) = wait_until(sandbox.requests)
    assert sent["body"]["last_response_at"] == "2026-11-30T10:15:00.000Z"


def test_full_contact_data_nested_under_data_is_queued(client: FlaskClient, store: Store) -> None:
    response = client.post(
        "/api/v1/manychat/default-reply",
        json={"data": MANYCHAT_CONTACT},
        headers=headers(ORG_A.token),
    )
    payload = queued_payload(store, response)
    assert payload["manychat_id"] == str(MANYCHAT_CONTACT["id"])


def test_a_reply_without_username_is_held_where_an_operator_sees_it(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = {key: value for key, value in DEFAULT_REPLY.items() if key != "username"}
    response = client.post(REPLY_URL, json=body, headers=headers(ORG_A.token))

    held = assert_held(response, redis_conn, "The 'username' field is required.")
    assert response.get_json()["message"] == (
        "Missing required fields (manychat_id, username, organization_id or page_name)"
    )
    assert held.payload == body


@pytest.mark.parametrize("name", ["{{First Name}}", "{{cuf_123}}", "{{Lead: source}}", "<<Tag 2>>"])
def test_placeholders_with_spaces_and_colons_are_never_forwarded_as_text(
    client: FlaskClient, store: Store, name: str
) -> None:
    body = {
        "username": "john_doe",
        "had_outreach": True,
        "outreach_reason": "Giveaway",
        "outreach_text": "Hi!",
        "note": name,
        "outreach_reason_label": name,
        "tags": ["giveaway", name],
    }
    payload = queued_payload(
        store, client.post(CONTACT_URL, json=body, headers=headers(ORG_A.token))
    )
    assert name not in json.dumps(payload)
    assert payload["tags"] == ["giveaway"]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (REPLY_URL, {**DEFAULT_REPLY, "manychat_id": "9" * 33}),
        (REPLY_URL, {**DEFAULT_REPLY, "username": "u" * 31}),
        (STATUS_URL, {"contact_id": "x" * 37, "lead_status": "won"}),
        (STATUS_URL, {"manychat_id": "9" * 5000, "lead_status": "won"}),
    ],
)
def test_an_identity_longer_than_any_real_one_is_held_and_links_nothing(
    client: FlaskClient, redis_conn: redis.Redis, url: str, body: dict[str, Any]
) -> None:
    response = client.put(url, json=body, headers=headers(ORG_A.token))
    if url == REPLY_URL:
        response = client.post(url, json=body, headers=headers(ORG_A.token))

    assert_held(response, redis_conn)
    assert redis_conn.hlen(f"dmrelay:contacts:{ORG_A.id}") == 0
