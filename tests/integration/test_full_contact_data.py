"""POST /api/v1/manychat/<action>: ManyChat's Full Contact Data, mapped, then the ingest path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.web.app import create_app
from tests.helpers import MANYCHAT_CONTACT as INSTAGRAM
from tests.helpers import (
    ORG_A,
    ORG_B,
    assert_held,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)

# Contacts as ManyChat renders "Full Contact Data": ids as numbers or strings, many nulls.
MESSENGER = {
    **INSTAGRAM,
    "id": "7301928374650192",
    "key": "user:7301928374650192",
    "page_id": "102938475",
    "name": "Tom Becker",
    "first_name": "Tom",
    "last_name": "Becker",
    "profile_pic": "https://platform-lookaside.fbsbx.com/platform/profilepic/?psid=7301928374650192",
    "last_input_text": "Do you ship to Germany?",
    "email": None,
    "ig_username": None,
    "ig_id": None,
}
WHATSAPP = {
    **MESSENGER,
    "id": 902211,
    "key": "user:902211",
    "name": "Aisha Khan",
    "first_name": "Aisha",
    "last_name": "Khan",
    "profile_pic": None,
    "live_chat_url": None,
    "last_input_text": "Hello, is this still available?",
    "optin_phone": True,
    "phone": "+447700900123",
    "whatsapp_phone": "+447700900123",
}


def url(action: str) -> str:
    return f"/api/v1/manychat/{action}"


def payload_of(store, response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Return the DmTracker body the relay stored for an accepted request."""
    assert response.status_code == 200, response.get_json()
    delivery = store.history.load(response.get_json()["data"]["delivery_id"])
    return dict(delivery.payload)


def test_an_instagram_default_reply_reaches_dmtracker_and_answers_its_contact_type(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = with_settings(settings, answer_wait_seconds={"default-reply": 5.0})
    client = create_app(own, redis_conn).test_client()
    start_worker(own)

    response = client.post(url("default-reply"), json=INSTAGRAM, headers=headers(ORG_A.token))

    assert response.status_code == 200
    assert response.get_json()["data"]["contact_type"] == "inbound"
    sent = sandbox.requests()[0]
    assert sent["path"] == "/api/v1/contact/default-reply"
    message_date = sent["body"].pop("message_date")
    assert message_date.endswith("Z")
    # Only DmTracker's fields: never the contact's name, email, phone or custom fields.
    assert sent["body"] == {
        "manychat_id": "1843127460",
        "username": "maria.lopez.fit",
        "message_content": "Hi! How much is the coaching program?",
        "ig_id": 17841400123456789,
        "organization_id": ORG_A.id,
    }


@pytest.mark.parametrize("key", ["contact", "subscriber"])
def test_a_nested_contact_and_string_ids_map_the_same(client, store, key) -> None:  # type: ignore[no-untyped-def]
    contact = {**INSTAGRAM, "id": "1843127460", "ig_id": "17841400123456789"}
    body = {key: contact, "page_name": "Page A"}

    payload = payload_of(
        store, client.post(url("default-reply"), json=body, headers=headers(ORG_A.token))
    )

    assert payload["manychat_id"] == "1843127460"
    assert payload["ig_id"] == 17841400123456789
    assert payload["page_name"] == "Page A"


def test_an_inbound_create_contact_takes_the_last_message_and_its_time(client, store) -> None:  # type: ignore[no-untyped-def]
    body = {"contact": INSTAGRAM, "tags": ["reel", "coaching"], "note": "Asked about price"}

    payload = payload_of(
        store, client.post(url("create-contact"), json=body, headers=headers(ORG_A.token))
    )

    assert payload == {
        "manychat_id": "1843127460",
        "username": "maria.lopez.fit",
        "ig_id": 17841400123456789,
        "had_outreach": False,
        "last_message_content": "Hi! How much is the coaching program?",
        "last_response_at": "2026-11-30T10:02:11.000Z",
        "tags": ["reel", "coaching"],
        "note": "Asked about price",
        "organization_id": ORG_A.id,
    }


def test_an_outreach_create_contact_takes_the_outreach_fields_only(client, store) -> None:  # type: ignore[no-untyped-def]
    body = {
        **INSTAGRAM,
        "outreach_reason": "Commented on the giveaway post",
        "outreach_text": "Hey Maria, thanks for joining the giveaway!",
        "outreach_reason_label": "Giveaway",
        "tag_color": "purple",
    }

    payload = payload_of(
        store, client.post(url("create-contact"), json=body, headers=headers(ORG_A.token))
    )

    assert payload["had_outreach"] is True
    assert payload["outreach_text"] == "Hey Maria, thanks for joining the giveaway!"
    assert "last_message_content" not in payload and "last_response_at" not in payload
    assert "email" not in payload  # the contact's address is not DmTracker's team member


def test_update_tags_takes_mode_and_tag_names_beside_the_contact(client, store) -> None:  # type: ignore[no-untyped-def]
    body = {"subscriber": INSTAGRAM, "mode": "add", "tag_names": ["hot-lead"], "tag_color": "red"}

    payload = payload_of(
        store, client.post(url("update-tags"), json=body, headers=headers(ORG_A.token))
    )

    assert payload == {
        "username": "maria.lopez.fit",
        "mode": "add",
        "tag_names": ["hot-lead"],
        "tag_color": "red",
        "organization_id": ORG_A.id,
    }


def test_contact_status_needs_only_the_contact_id_so_messenger_works(client, store) -> None:  # type: ignore[no-untyped-def]
    body = {"contact": MESSENGER, "lead_status": "won", "pipeline_stage": "Closed"}

    payload = payload_of(
        store, client.post(url("contact-status"), json=body, headers=headers(ORG_A.token))
    )

    assert payload == {
        "manychat_id": "7301928374650192",
        "lead_status": "won",
        "pipeline_stage": "Closed",
        "organization_id": ORG_A.id,
    }


@pytest.mark.parametrize("action", ["default-reply", "create-contact", "update-tags"])
@pytest.mark.parametrize("contact", [MESSENGER, WHATSAPP], ids=["messenger", "whatsapp"])
def test_a_contact_without_instagram_username_is_held_naming_the_field(  # type: ignore[no-untyped-def]
    client, redis_conn, action, contact
) -> None:
    body = {"contact": contact, "mode": "add", "tag_names": ["x"]}

    response = client.post(url(action), json=body, headers=headers(ORG_A.token))

    held = assert_held(response, redis_conn, "The 'ig_username' field is missing or null")
    assert 'send a "username" key beside the contact data' in held.reason
    assert response.get_json()["message"].startswith("Unprocessable Entity")


def test_a_username_beside_the_contact_maps_a_contact_without_one(client, store) -> None:  # type: ignore[no-untyped-def]
    body = {"contact": WHATSAPP, "username": "aisha.khan"}

    payload = payload_of(
        store, client.post(url("default-reply"), json=body, headers=headers(ORG_A.token))
    )

    assert payload["username"] == "aisha.khan"
    assert payload["manychat_id"] == "902211"


def test_a_null_last_input_text_is_skipped_as_outreach(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    contact = {**INSTAGRAM, "last_input_text": None}

    response = client.post(url("default-reply"), json=contact, headers=headers(ORG_A.token))

    assert response.status_code == 200
    assert response.get_json()["status"] == "skipped"
    assert response.get_json()["data"]["reason"] == "message_content is missing"
    assert queued_ids(redis_conn) == []


def test_an_inbound_contact_without_last_input_text_names_where_it_comes_from(  # type: ignore[no-untyped-def]
    client, redis_conn
) -> None:
    contact = {**INSTAGRAM, "last_input_text": None}

    response = client.post(url("create-contact"), json=contact, headers=headers(ORG_A.token))

    held = assert_held(response, redis_conn)
    assert held.reason == (
        "The 'last_message_content' field is required when had_outreach is false."
        " In Full Contact Data it comes from 'last_input_text'."
    )


def test_an_instagram_contact_with_only_per_channel_times_is_delivered(client, store) -> None:  # type: ignore[no-untyped-def]
    contact = {
        **INSTAGRAM,
        "last_interaction": None,
        "last_seen": None,
        "ig_last_interaction": "2026-11-30T10:15:00+00:00",
        "ig_last_seen": "2026-11-30T10:16:00+00:00",
    }

    response = client.post(url("create-contact"), json=contact, headers=headers(ORG_A.token))

    assert payload_of(store, response)["last_response_at"] == "2026-11-30T10:15:00.000Z"


def test_a_contact_nested_under_data_is_read_there(client, store) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        url("default-reply"), json={"data": INSTAGRAM}, headers=headers(ORG_A.token)
    )

    payload = payload_of(store, response)
    assert payload["username"] == INSTAGRAM["ig_username"].lower()
    assert payload["message_content"] == INSTAGRAM["last_input_text"]


def test_a_body_without_a_contact_is_held_naming_the_keys_looked_at(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {"payload": INSTAGRAM}

    response = client.post(url("default-reply"), json=body, headers=headers(ORG_A.token))

    held = assert_held(response, redis_conn, "The 'body' field holds no ManyChat contact")
    for key in ("'contact'", "'subscriber'", "'full_contact_data'", "'user'", "'data'", "'id'"):
        assert key in held.reason


def test_the_plain_routes_checks_apply(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    unknown_token = client.post(url("default-reply"), json=INSTAGRAM, headers=headers("nope"))
    other_page = client.post(
        url("default-reply"),
        json={**INSTAGRAM, "page_name": "Page B"},
        headers=headers(ORG_A.token),
    )
    secret = {**INSTAGRAM, "custom_fields": {"note": ORG_B.token}}
    holds_a_secret = client.post(url("default-reply"), json=secret, headers=headers(ORG_A.token))
    not_an_object = client.post(
        url("default-reply"), json=[INSTAGRAM], headers=headers(ORG_A.token)
    )
    placeholder = client.post(
        url("default-reply"),
        json={"contact": "{{full_contact_data}}"},
        headers=headers(ORG_A.token),
    )

    assert unknown_token.status_code == 401
    assert other_page.status_code == 403
    assert holds_a_secret.status_code == 400
    assert_held(not_an_object, redis_conn, "must be a JSON object")
    assert_held(
        placeholder, redis_conn, "The 'contact' field is an unrendered ManyChat placeholder."
    )
    assert queued_ids(redis_conn) == []


def test_an_unknown_action_is_404_and_get_is_405(client) -> None:  # type: ignore[no-untyped-def]
    unknown = client.post(url("delete-contact"), json=INSTAGRAM, headers=headers(ORG_A.token))
    get = client.get(url("default-reply"), headers=headers(ORG_A.token))

    assert unknown.status_code == 404
    assert unknown.get_json()["error"] == "Not Found"
    assert get.status_code == 405
    assert get.get_json()["error"] == "Method Not Allowed"


def test_a_repeat_is_a_duplicate_across_both_routes(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    first = client.post(url("default-reply"), json=INSTAGRAM, headers=headers(ORG_A.token))
    plain = {
        "manychat_id": 1843127460,
        "username": "@maria.lopez.fit",
        "message_content": "Hi! How much is the coaching program?",
        "ig_id": "17841400123456789",
    }
    same = client.post(
        "/api/v1/contact/default-reply", json=plain, headers=headers(ORG_A.token)
    ).get_json()

    assert same["data"]["duplicate"] is True
    assert same["data"]["delivery_id"] == first.get_json()["data"]["delivery_id"]
    assert len(queued_ids(redis_conn)) == 1


def test_mapping_never_changes_the_request_it_was_given(client) -> None:  # type: ignore[no-untyped-def]
    body = {"contact": copy.deepcopy(INSTAGRAM), "tags": ["a"]}
    sent = copy.deepcopy(body)

    client.post(url("create-contact"), json=sent, headers=headers(ORG_A.token))

    assert sent == body


def test_ingest_metrics_count_the_manychat_route(client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client.post(url("default-reply"), json=INSTAGRAM, headers=headers(ORG_A.token))

    wait_until(lambda: redis_conn.hgetall("dmrelay:metrics"))
    fields = [f.decode() for f in redis_conn.hkeys("dmrelay:metrics")]
    assert any(
        f.startswith("dmrelay_ingest|endpoint=default-reply,reason=,result=accepted")
        for f in fields
    )
