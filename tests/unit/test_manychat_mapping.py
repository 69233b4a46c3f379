"""The pure mapping of ManyChat's Full Contact Data onto DmTracker requests."""

from __future__ import annotations

import pytest

from relay.core.errors import FieldError
from relay.core.manychat import source_of, to_request

CONTACT = {
    "id": 1843127460,
    "name": "Maria Lopez",
    "ig_username": "maria.lopez.fit",
    "ig_id": 1.7841400123456788e16,  # a JavaScript-rendered number
    "last_input_text": "Hi!",
    "last_interaction": "2026-11-30T10:02:11+00:00",
    "email": "maria@example.com",
    "custom_fields": {"budget": None},
}


def test_the_body_itself_is_the_contact_when_no_contact_key_holds_one() -> None:
    assert to_request("default-reply", CONTACT) == {
        "manychat_id": 1843127460,
        "username": "maria.lopez.fit",
        "message_content": "Hi!",
        "ig_id": 17841400123456788,
    }


@pytest.mark.parametrize("key", ["contact", "subscriber", "full_contact_data", "user"])
def test_a_contact_under_a_contact_key(key: str) -> None:
    assert to_request("contact-status", {key: CONTACT, "lead_status": "won"}) == {
        "manychat_id": 1843127460,
        "lead_status": "won",
    }


@pytest.mark.parametrize(
    ("flag", "outreach"), [(False, False), ("false", False), ("TRUE", True), (True, True)]
)
def test_had_outreach_as_given_decides_which_fields_are_mapped(
    flag: object, outreach: bool
) -> None:
    body = {"contact": CONTACT, "had_outreach": flag, "outreach_text": "Hey"}
    request = to_request("create-contact", body)
    assert ("last_message_content" in request) is not outreach
    assert request["had_outreach"] == flag


def test_had_outreach_left_out_follows_the_outreach_fields() -> None:
    assert to_request("create-contact", CONTACT)["had_outreach"] is False
    with_outreach = to_request("create-contact", {**CONTACT, "outreach_reason": "Giveaway"})
    assert with_outreach["had_outreach"] is True
    assert "last_response_at" not in with_outreach


def test_keys_given_beside_the_contact_win_and_nulls_are_dropped() -> None:
    body = {"contact": CONTACT, "message_content": "Override", "page_name": None}
    request = to_request("default-reply", body)
    assert request["message_content"] == "Override"
    assert "page_name" not in request


def test_contact_fields_dmtracker_does_not_know_are_never_forwarded() -> None:
    request = to_request("create-contact", {"contact": CONTACT, "email": "team@example.com"})
    assert not {"email", "name", "custom_fields", "id"} & set(request)


@pytest.mark.parametrize("username", [None, "", "  ", "{{ig_username}}"])
def test_no_instagram_username_is_422_where_dmtracker_needs_one(username: object) -> None:
    with pytest.raises(FieldError) as refused:
        to_request("default-reply", {**CONTACT, "ig_username": username})
    assert (refused.value.status, refused.value.field) == (422, "ig_username")


def test_tags_by_contact_id_or_status_by_manychat_id_need_no_username() -> None:
    contact = {**CONTACT, "ig_username": None}
    tags = to_request("update-tags", {"contact": contact, "contact_id": "c-1", "mode": "add"})
    assert tags["contact_id"] == "c-1"
    assert to_request("contact-status", {"contact": contact})["manychat_id"] == 1843127460


@pytest.mark.parametrize(
    ("value", "status"), [("{{full_contact_data}}", 422), ("x", 400), (None, 400)]
)
def test_a_contact_key_that_holds_no_object_is_refused(value: object, status: int) -> None:
    with pytest.raises(FieldError) as refused:
        to_request("default-reply", {"contact": value})
    assert (refused.value.status, refused.value.field) == (status, "contact")


def test_the_source_of_a_mapped_field() -> None:
    assert source_of("create-contact", "last_response_at") == "last_interaction"
    assert source_of("default-reply", "username") == "ig_username"
    assert source_of("update-tags", "mode") is None
