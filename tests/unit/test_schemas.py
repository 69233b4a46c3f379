"""Field-by-field validation and normalization of the four ingest bodies."""

from __future__ import annotations

from typing import Any

import pytest

from relay.core.endpoints import ENDPOINTS
from relay.core.errors import FieldError
from relay.core.schemas import SCHEMAS, Validated, to_timestamp, validate

ORG = "11111111-1111-4111-8111-111111111111"
CONTACT = "a1b2c3d4-0000-4000-8000-00000000abcd"

REPLY: dict[str, Any] = {
    "username": "john_doe",
    "manychat_id": "123456",
    "message_content": "Sure, send me more details about pricing.",
}
INBOUND: dict[str, Any] = {
    "username": "john_doe",
    "had_outreach": False,
    "last_response_at": "2025-01-12T10:00:00.000Z",
    "last_message_content": "Hey, I saw your post about coaching!",
}
OUTREACH: dict[str, Any] = {
    "username": "prospect_user",
    "had_outreach": True,
    "outreach_reason": "Cold outreach - Q1 campaign",
    "outreach_text": "Hey! Loved your content.",
}
TAGS: dict[str, Any] = {"username": "john_doe", "mode": "add", "tag_names": ["hot-lead"]}
STATUS: dict[str, Any] = {"manychat_id": "12345678", "lead_status": "won"}

# One valid body per endpoint, for rules shared by all four.
VALID: dict[str, dict[str, Any]] = {
    "default-reply": REPLY,
    "create-contact": INBOUND,
    "update-tags": TAGS,
    "contact-status": STATUS,
}

PLACEHOLDERS = [
    "{{last_input_text}}",
    "##{{last_input_text}}",
    "<<last_input_text>>",
    "##<<x>>",
    "{{cuf_14652832}}",
    "{{ cuf_14652832 }}",
    '{{first_name|fallback:"friend"}}',
    "{{x|to_json:true}}",
]

USERNAME_FORMAT = "must be 1-30 characters of letters, digits, '.' and '_'."
PLACEHOLDER = "is an unrendered ManyChat placeholder."
TIMESTAMP = "must be an ISO 8601 date or date and time, such as 2025-01-12T10:00:00Z."
BEFORE_YEAR_1000 = "must be a date from the year 1000 on."
# Longer than any limit the relay ever had on a text field, well under the 64 KiB body limit.
LONG_TEXT = "x" * 20_000


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Return a copy of body without keys."""
    return {key: value for key, value in body.items() if key not in keys}


def accepted(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a body that must pass and not be skipped; return the normalized body."""
    result = validate(endpoint, body)
    assert result.skip_reason is None
    return result.body


def rejected(endpoint: str, body: object) -> FieldError:
    """Validate a body that must fail; return the error."""
    with pytest.raises(FieldError) as caught:
        validate(endpoint, body)
    return caught.value


def assert_rejected(
    endpoint: str, body: object, field: str, status: int, message: str | None = None
) -> None:
    """Assert the body fails on field with status (and the exact message when given)."""
    error = rejected(endpoint, body)
    assert (error.field, error.status) == (field, status), error.message
    if message is not None:
        assert error.message == f"The '{field}' field {message}"


# -- the entry point -----------------------------------------------------------------------


def test_there_is_one_schema_per_endpoint() -> None:
    assert set(SCHEMAS) == set(ENDPOINTS)


def test_validated_holds_body_and_skip_reason() -> None:
    result = validate("default-reply", REPLY)
    assert result == Validated(body=REPLY, skip_reason=None)
    assert result.body is not REPLY


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("body", [None, [], [REPLY], "text", 5, True])
def test_body_must_be_a_json_object(endpoint: str, body: object) -> None:
    assert_rejected(endpoint, body, "body", 400, "must be a JSON object.")


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_valid_body_is_forwarded_unchanged(endpoint: str) -> None:
    assert accepted(endpoint, VALID[endpoint]) == VALID[endpoint]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_unknown_fields_are_forwarded_unchanged(endpoint: str) -> None:
    extra = {
        "custom": {"nested": [1, None, "{{x}}"]},
        "extra_null": None,
        "extra_blank": "  ",
        "extra_template": "{{cuf_1}}",
        "extra_number": 1.5,
    }
    assert accepted(endpoint, {**VALID[endpoint], **extra}) == {**VALID[endpoint], **extra}


def test_input_body_is_not_modified() -> None:
    body = {**REPLY, "username": " @John ", "page_name": None, "manychat_data": {"ig_id": "7"}}
    snapshot = {**body, "manychat_data": {"ig_id": "7"}}
    validate("default-reply", body)
    assert body == snapshot


def test_same_body_reports_the_same_field_whatever_the_key_order() -> None:
    body = {"organization_id": "bad", "username": "bad name!", "message_date": "nope"}
    reordered = dict(reversed(list(body.items())))
    first, second = rejected("default-reply", body), rejected("default-reply", reordered)
    assert (first.field, first.status, first.message) == (
        second.field,
        second.status,
        second.message,
    )
    assert first.field == "username"


@pytest.mark.parametrize(
    ("endpoint", "body", "field", "status"),
    [
        # Identity first: username, then manychat_id, then everything else.
        ("default-reply", {"username": "x y", "organization_id": "bad"}, "username", 422),
        ("default-reply", {"username": "ok", "organization_id": "bad"}, "manychat_id", 400),
        ("default-reply", {"manychat_id": "{{id}}", "message_date": "no"}, "username", 400),
        (
            "default-reply",
            {**REPLY, "organization_id": "bad", "ig_id": "x"},
            "organization_id",
            400,
        ),
        ("create-contact", {"organization_id": "bad"}, "username", 400),
        ("create-contact", {"username": "ok", "email": "bad"}, "had_outreach", 400),
        ("update-tags", {"organization_id": "bad"}, "username", 400),
        ("update-tags", {"contact_id": "bad", "mode": "x"}, "contact_id", 400),
        ("contact-status", {"lead_status": "bad"}, "manychat_id", 400),
        (
            "contact-status",
            {"manychat_id": "1", "organization_id": "bad", "lead_status": "x"},
            "organization_id",
            400,
        ),
    ],
)
def test_first_broken_rule_is_reported_in_field_order(
    endpoint: str, body: dict[str, Any], field: str, status: int
) -> None:
    assert_rejected(endpoint, body, field, status)


def test_error_message_renders_with_the_field_name() -> None:
    error = rejected("default-reply", {**REPLY, "username": "john doe"})
    assert str(error) == f"The 'username' field {USERNAME_FORMAT}"
    assert error.title == "Unprocessable Entity"


# -- username ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("  @John.Doe ", "john.doe"),
        ("JOHN_DOE", "john_doe"),
        ("@x.y_z9", "x.y_z9"),
        ("a", "a"),
        ("a" * 30, "a" * 30),
        ("\tMixed.Case_1\n", "mixed.case_1"),
        ("@@john", "john"),
        ("@ john", "john"),
        (" @ @@John_Doe ", "john_doe"),
        ("\u00a0@\tjane", "jane"),
    ],
)
@pytest.mark.parametrize(
    ("endpoint", "base"), [("default-reply", REPLY), ("create-contact", INBOUND)]
)
def test_username_is_normalized(
    endpoint: str, base: dict[str, Any], given: str, normalized: str
) -> None:
    assert accepted(endpoint, {**base, "username": given})["username"] == normalized


def test_username_is_normalized_on_update_tags() -> None:
    assert accepted("update-tags", {**TAGS, "username": " @Jane.Doe"})["username"] == "jane.doe"


@pytest.mark.parametrize(
    "given", ["john doe", "john-doe", "a" * 31, "@", "@ @", "jöhn", "john!", "j@n", "john@"]
)
@pytest.mark.parametrize(
    ("endpoint", "base"),
    [("default-reply", REPLY), ("create-contact", INBOUND), ("update-tags", TAGS)],
)
def test_username_with_invalid_format_is_422(
    endpoint: str, base: dict[str, Any], given: str
) -> None:
    assert_rejected(endpoint, {**base, "username": given}, "username", 422, USERNAME_FORMAT)


@pytest.mark.parametrize("given", [123, True, ["john"], {"u": "john"}])
def test_username_must_be_a_string(given: object) -> None:
    assert_rejected(
        "default-reply", {**REPLY, "username": given}, "username", 400, "must be a string."
    )


@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact"])
@pytest.mark.parametrize("given", [None, "", "   "])
def test_username_is_required(endpoint: str, given: object) -> None:
    assert_rejected(
        endpoint, {**VALID[endpoint], "username": given}, "username", 400, "is required."
    )
    assert_rejected(endpoint, without(VALID[endpoint], "username"), "username", 400, "is required.")


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact"])
def test_a_required_username_placeholder_is_422(endpoint: str, placeholder: str) -> None:
    body = {**VALID[endpoint], "username": placeholder}
    assert_rejected(endpoint, body, "username", 422, PLACEHOLDER)


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_update_tags_goes_without_a_username_placeholder_beside_a_contact_id(
    placeholder: str,
) -> None:
    body = accepted("update-tags", {**TAGS, "username": placeholder, "contact_id": CONTACT})
    assert "username" not in body and body["contact_id"] == CONTACT


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_update_tags_with_only_a_username_placeholder_names_what_is_missing(
    placeholder: str,
) -> None:
    assert_rejected(
        "update-tags",
        {**TAGS, "username": placeholder},
        "username",
        400,
        "is required when 'contact_id' is not given (it was an unrendered ManyChat placeholder).",
    )


# -- manychat_id ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (123, "123"),
        (0, "0"),
        ("123456", "123456"),
        (" 42 ", "42"),
        ("MC_123", "MC_123"),
        ("x" * 32, "x" * 32),
        ("18446744073709551615", "18446744073709551615"),
    ],
)
@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact", "contact-status"])
def test_manychat_id_becomes_a_trimmed_string(
    endpoint: str, given: object, normalized: str
) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "manychat_id": given})
    assert body["manychat_id"] == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (True, "must be a string or an integer."),
        (1.5, "must be a string or an integer."),
        (["1"], "must be a string or an integer."),
    ],
)
def test_invalid_manychat_id_is_400(given: object, message: str) -> None:
    assert_rejected("default-reply", {**REPLY, "manychat_id": given}, "manychat_id", 400, message)


@pytest.mark.parametrize("given", [None, "", "  "])
def test_manychat_id_is_required_for_default_reply(given: object) -> None:
    assert_rejected(
        "default-reply", {**REPLY, "manychat_id": given}, "manychat_id", 400, "is required."
    )
    assert_rejected(
        "default-reply", without(REPLY, "manychat_id"), "manychat_id", 400, "is required."
    )


def test_manychat_id_is_optional_for_create_contact() -> None:
    assert "manychat_id" not in accepted("create-contact", {**INBOUND, "manychat_id": None})


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_required_manychat_id_placeholder_is_422(placeholder: str) -> None:
    body = {**REPLY, "manychat_id": placeholder}
    assert_rejected("default-reply", body, "manychat_id", 422, PLACEHOLDER)


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize(
    ("endpoint", "base"),
    [("create-contact", INBOUND), ("contact-status", {**STATUS, "contact_id": CONTACT})],
)
def test_an_optional_manychat_id_placeholder_is_left_out(
    endpoint: str, base: dict[str, Any], placeholder: str
) -> None:
    assert "manychat_id" not in accepted(endpoint, {**base, "manychat_id": placeholder})


@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact", "contact-status"])
def test_a_manychat_id_longer_than_any_real_one_is_refused(endpoint: str) -> None:
    body = {**VALID[endpoint], "manychat_id": "1" * 33}
    assert_rejected(endpoint, body, "manychat_id", 400, "must be at most 32 characters.")


# -- organization_id -----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (ORG, ORG),
        (ORG.upper(), ORG),
        (f"  {ORG} ", ORG),
        ("A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D", "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"),
    ],
)
def test_organization_id_is_a_lowercase_uuid(endpoint: str, given: str, normalized: str) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "organization_id": given})
    assert body["organization_id"] == normalized


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("given", [None, "", "  ", *PLACEHOLDERS])
def test_absent_or_placeholder_organization_id_is_dropped(endpoint: str, given: object) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "organization_id": given})
    assert "organization_id" not in body
    assert body == VALID[endpoint]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    "given",
    ["your-org-id", ORG[:-1], ORG + "0", ORG.replace("-", ""), "{" + ORG + "}", 123, ["x"]],
)
def test_invalid_organization_id_is_400(endpoint: str, given: object) -> None:
    body = {**VALID[endpoint], "organization_id": given}
    assert_rejected(endpoint, body, "organization_id", 400, "must be a UUID.")


# -- ig_id and manychat_data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("123", 123),
        (123, 123),
        (" 42 ", 42),
        (0, 0),
        ("0", 0),
        ("17841405822304914", 17841405822304914),
        ("-1", -1),
    ],
)
@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact"])
def test_ig_id_sent_as_digits_becomes_an_integer(
    endpoint: str, given: object, normalized: int
) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "ig_id": given})
    assert body["ig_id"] == normalized
    assert type(body["ig_id"]) is int


# DmTracker documents ig_id as a number, nothing more: any JSON number is forwarded as it is.
@pytest.mark.parametrize("given", [-1, 1.5, 10**25, 1.7841405822304914e16])
@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact"])
def test_any_json_number_is_forwarded_as_ig_id(endpoint: str, given: float) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "ig_id": given})
    assert body["ig_id"] == given
    assert type(body["ig_id"]) is type(given)


@pytest.mark.parametrize("given", ["12a", "1.5", True, "1e5", "٣", "1" * 21, ["1"], {"id": 1}])
@pytest.mark.parametrize("endpoint", ["default-reply", "create-contact"])
def test_ig_id_that_is_not_a_number_is_400(endpoint: str, given: object) -> None:
    body = {**VALID[endpoint], "ig_id": given}
    assert_rejected(endpoint, body, "ig_id", 400, "must be a number.")


@pytest.mark.parametrize("given", [None, "", *PLACEHOLDERS])
def test_absent_or_placeholder_ig_id_is_dropped(given: object) -> None:
    assert "ig_id" not in accepted("default-reply", {**REPLY, "ig_id": given})


@pytest.mark.parametrize(("nested", "normalized"), [("987", 987), (987, 987), (" 5 ", 5)])
def test_ig_id_falls_back_to_manychat_data(nested: object, normalized: int) -> None:
    data = {"ig_id": nested, "page_id": 99}
    body = accepted("default-reply", {**REPLY, "manychat_data": data})
    assert body["ig_id"] == normalized
    assert body["manychat_data"] == {"ig_id": nested, "page_id": 99}


@pytest.mark.parametrize("top", [None, "", "{{ig_id}}"])
def test_ig_id_falls_back_when_top_level_is_absent(top: object) -> None:
    body = accepted("default-reply", {**REPLY, "ig_id": top, "manychat_data": {"ig_id": "11"}})
    assert body["ig_id"] == 11


def test_top_level_ig_id_wins_over_manychat_data() -> None:
    body = accepted("default-reply", {**REPLY, "ig_id": "1", "manychat_data": {"ig_id": "2"}})
    assert body["ig_id"] == 1


@pytest.mark.parametrize("nested", [None, "", "{{ig_id}}"])
def test_absent_nested_ig_id_gives_no_ig_id(nested: object) -> None:
    body = accepted("default-reply", {**REPLY, "manychat_data": {"ig_id": nested}})
    assert "ig_id" not in body
    assert body["manychat_data"] == {"ig_id": nested}


@pytest.mark.parametrize("nested", ["abc", "1.5", False])
def test_invalid_nested_ig_id_names_the_nested_field(nested: object) -> None:
    body = {**REPLY, "manychat_data": {"ig_id": nested}}
    assert_rejected("default-reply", body, "manychat_data.ig_id", 400, "must be a number.")


def test_create_contact_does_not_read_manychat_data() -> None:
    body = accepted("create-contact", {**INBOUND, "manychat_data": {"ig_id": "5"}})
    assert "ig_id" not in body
    assert body["manychat_data"] == {"ig_id": "5"}


@pytest.mark.parametrize("given", ["{...}", ["ig_id"], 5, True])
def test_manychat_data_must_be_an_object(given: object) -> None:
    assert_rejected(
        "default-reply",
        {**REPLY, "manychat_data": given},
        "manychat_data",
        400,
        "must be an object.",
    )


@pytest.mark.parametrize("given", [None, "{{full_contact_data|to_json:true}}", "<<contact>>"])
def test_absent_or_placeholder_manychat_data_is_dropped(given: object) -> None:
    assert accepted("default-reply", {**REPLY, "manychat_data": given}) == REPLY


def test_manychat_data_is_forwarded_as_is() -> None:
    data = {"id": 1, "ig_username": "{{ig}}", "custom_fields": {"a": None}, "ig_id": None}
    assert accepted("default-reply", {**REPLY, "manychat_data": data})["manychat_data"] == data


# -- message_content (default-reply) -------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (None, "message_content is missing"),
        ("", "message_content is empty"),
        ("   ", "message_content is empty"),
        ("\n\t", "message_content is empty"),
        *[(p, "message_content is an unrendered ManyChat placeholder") for p in PLACEHOLDERS],
    ],
)
def test_outreach_message_is_skipped(given: object, reason: str) -> None:
    result = validate("default-reply", {**REPLY, "message_content": given})
    assert result.skip_reason == reason
    assert result.body == without(REPLY, "message_content")


def test_missing_message_content_is_skipped() -> None:
    result = validate("default-reply", without(REPLY, "message_content"))
    assert result.skip_reason == "message_content is missing"


@pytest.mark.parametrize(
    "given",
    ["hi {{x}} there", "  spaced reply  ", "x" * 8001, LONG_TEXT, "{{x}} and more", "ok", "<3 <<"],
)
def test_real_message_is_kept_verbatim(given: str) -> None:
    assert (
        accepted("default-reply", {**REPLY, "message_content": given})["message_content"] == given
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (42, "must be a string."),
        (["hi"], "must be a string."),
        (True, "must be a string."),
    ],
)
def test_invalid_message_content_is_400(given: object, message: str) -> None:
    body = {**REPLY, "message_content": given}
    assert_rejected("default-reply", body, "message_content", 400, message)


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"username": "bad name"}, "username", 422),
        ({"username": "{{ig_username}}"}, "username", 422),
        ({"manychat_id": None}, "manychat_id", 400),
        ({"manychat_id": "##{{subscriber_id}}"}, "manychat_id", 422),
        ({"organization_id": "bad"}, "organization_id", 400),
        ({"message_date": "yesterday"}, "message_date", 400),
    ],
)
def test_skipped_message_is_still_validated(
    change: dict[str, Any], field: str, status: int
) -> None:
    body = {**REPLY, "message_content": "##{{last_input_text}}", **change}
    assert_rejected("default-reply", body, field, status)


def test_skipped_message_body_is_still_normalized() -> None:
    body = {**REPLY, "username": " @John ", "manychat_id": 9, "message_content": "<<x>>"}
    result = validate("default-reply", body)
    assert result.body == {"username": "john", "manychat_id": "9"}
    assert result.skip_reason == "message_content is an unrendered ManyChat placeholder"


# -- dates ---------------------------------------------------------------------------------


DATES = [
    ("2025-01-12T10:30:00Z", "2025-01-12T10:30:00.000Z"),
    ("2025-01-12T10:30:00.000Z", "2025-01-12T10:30:00.000Z"),
    ("2025-01-12T10:30:00.123456Z", "2025-01-12T10:30:00.123Z"),
    ("2025-01-12T10:30:00.5-05:00", "2025-01-12T15:30:00.500Z"),
    ("2025-01-12T12:30:00+02:00", "2025-01-12T10:30:00.000Z"),
    ("2025-01-12T10:30:00+0000", "2025-01-12T10:30:00.000Z"),
    # A date alone is that day at midnight UTC: ManyChat renders date fields this way.
    ("2025-01-12", "2025-01-12T00:00:00.000Z"),
    ("2026-11-30", "2026-11-30T00:00:00.000Z"),
    (" 2026-11-30 ", "2026-11-30T00:00:00.000Z"),
    # ISO 8601's basic (compact) format is ISO 8601 too.
    ("20250112T103000Z", "2025-01-12T10:30:00.000Z"),
    ("20250112", "2025-01-12T00:00:00.000Z"),
    ("1000-01-01", "1000-01-01T00:00:00.000Z"),
    ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ("2025-01-01T01:00:00+02:00", "2024-12-31T23:00:00.000Z"),
    ("2025-01-12T10:30:00", "2025-01-12T10:30:00.000Z"),
    ("2025-01-12T10:30", "2025-01-12T10:30:00.000Z"),
    ("2025-01-12 10:30:00Z", "2025-01-12T10:30:00.000Z"),
    (" 2025-01-12T10:30:00Z ", "2025-01-12T10:30:00.000Z"),
]
BAD_DATES = [
    "yesterday",
    "2025-13-01T00:00:00Z",
    "2025-01-12T25:00:00Z",
    "2025-02-30T10:00:00Z",
    "12/01/2025 10:30",
    "2025-01",
    "12.01.2025",
    "2025-01-12T10:30:00+25:00",
    1736677800,
    True,
]


@pytest.mark.parametrize(("given", "normalized"), DATES)
def test_message_date_is_normalized_to_utc(given: str, normalized: str) -> None:
    assert accepted("default-reply", {**REPLY, "message_date": given})["message_date"] == normalized


@pytest.mark.parametrize(("given", "normalized"), DATES)
def test_last_response_at_is_normalized_to_utc(given: str, normalized: str) -> None:
    body = accepted("create-contact", {**INBOUND, "last_response_at": given})
    assert body["last_response_at"] == normalized


@pytest.mark.parametrize("given", BAD_DATES)
def test_invalid_message_date_is_400(given: object) -> None:
    assert_rejected(
        "default-reply", {**REPLY, "message_date": given}, "message_date", 400, TIMESTAMP
    )


@pytest.mark.parametrize("given", BAD_DATES)
def test_invalid_last_response_at_is_400(given: object) -> None:
    body = {**INBOUND, "last_response_at": given}
    assert_rejected("create-contact", body, "last_response_at", 400, TIMESTAMP)


# Python writes year 999 as "999", which no ISO 8601 reader takes: refused, never forwarded.
@pytest.mark.parametrize(
    "given",
    ["0999-12-31T23:59:59Z", "0001-01-01", "0500-06-15T10:00:00+02:00", "1000-01-01T00:30+01:00"],
)
@pytest.mark.parametrize(
    ("endpoint", "base", "field"),
    [("default-reply", REPLY, "message_date"), ("create-contact", INBOUND, "last_response_at")],
)
def test_a_date_before_the_year_1000_is_400(
    endpoint: str, base: dict[str, Any], field: str, given: str
) -> None:
    assert_rejected(endpoint, {**base, field: given}, field, 400, BEFORE_YEAR_1000)


@pytest.mark.parametrize("given", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_date_that_leaves_the_calendar_in_utc_is_400(given: str) -> None:
    assert_rejected("default-reply", {**REPLY, "message_date": given}, "message_date", 400)


@pytest.mark.parametrize("year", [1000, 1001, 1969, 1970, 2025, 9999])
def test_every_forwarded_date_has_a_four_digit_year(year: int) -> None:
    normalized = to_timestamp(f"{year:04d}-03-04T05:06:07.891+00:00")
    assert normalized == f"{year:04d}-03-04T05:06:07.891Z"


@pytest.mark.parametrize("given", [None, "", *PLACEHOLDERS])
def test_absent_or_placeholder_message_date_is_dropped(given: object) -> None:
    assert "message_date" not in accepted("default-reply", {**REPLY, "message_date": given})


# -- page_name and other optional text -----------------------------------------------------


def test_page_name_is_kept_verbatim() -> None:
    body = accepted("default-reply", {**REPLY, "page_name": " Page A "})
    assert body["page_name"] == " Page A "


# DmTracker documents no length for these: any string is forwarded, DmTracker decides.
@pytest.mark.parametrize(
    ("endpoint", "base", "field"),
    [
        ("default-reply", REPLY, "page_name"),
        ("create-contact", OUTREACH, "outreach_reason_label"),
        ("create-contact", OUTREACH, "outreach_message_label"),
        ("create-contact", OUTREACH, "outreach_reason"),
        ("create-contact", OUTREACH, "outreach_text"),
        ("create-contact", INBOUND, "last_message_content"),
        ("create-contact", INBOUND, "tag_color"),
        ("update-tags", TAGS, "tag_color"),
        ("contact-status", STATUS, "pipeline_stage"),
    ],
)
def test_text_of_any_length_is_forwarded(endpoint: str, base: dict[str, Any], field: str) -> None:
    assert accepted(endpoint, {**base, field: LONG_TEXT})[field] == LONG_TEXT
    assert_rejected(endpoint, {**base, field: 5}, field, 400, "must be a string.")


def test_note_is_at_most_1000_characters() -> None:
    at_limit = "é" * 1000
    assert accepted("create-contact", {**INBOUND, "note": at_limit})["note"] == at_limit
    body = {**INBOUND, "note": at_limit + "x"}
    assert_rejected("create-contact", body, "note", 400, "must be at most 1000 characters.")
    assert_rejected("create-contact", {**INBOUND, "note": 5}, "note", 400, "must be a string.")


@pytest.mark.parametrize(
    ("endpoint", "base", "field"),
    [
        ("default-reply", REPLY, "page_name"),
        ("create-contact", OUTREACH, "outreach_reason_label"),
        ("create-contact", OUTREACH, "outreach_message_label"),
        ("create-contact", INBOUND, "note"),
        ("create-contact", INBOUND, "tag_color"),
        ("create-contact", INBOUND, "email"),
        ("create-contact", INBOUND, "tags"),
        ("create-contact", INBOUND, "activate_followups"),
        ("create-contact", INBOUND, "ig_id"),
        ("update-tags", TAGS, "tag_color"),
        ("update-tags", TAGS, "email"),
        ("contact-status", STATUS, "pipeline_stage"),
    ],
)
@pytest.mark.parametrize("given", [None, "", "  ", *PLACEHOLDERS])
def test_optional_field_null_blank_or_placeholder_is_dropped(
    endpoint: str, base: dict[str, Any], field: str, given: object
) -> None:
    assert accepted(endpoint, {**base, field: given}) == base


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("red", "red"),
        (" #FF5733 ", "#FF5733"),
        ("Dark Midnight Blue " * 3, "Dark Midnight Blue " * 2 + "Dark Midnight Blue"),
    ],
)
def test_tag_color_is_trimmed(given: str, normalized: str) -> None:
    assert accepted("update-tags", {**TAGS, "tag_color": given})["tag_color"] == normalized


# -- create-contact ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        (" True ", True),
        ("false", False),
    ],
)
def test_had_outreach_accepts_booleans_and_boolean_strings(given: object, normalized: bool) -> None:
    base = OUTREACH if normalized else INBOUND
    body = accepted("create-contact", {**base, "had_outreach": given})
    assert body["had_outreach"] is normalized


@pytest.mark.parametrize("given", ["yes", "no", "1", 1, 0, "t", ["true"], 1.0])
def test_had_outreach_must_be_a_boolean(given: object) -> None:
    body = {**INBOUND, "had_outreach": given}
    assert_rejected("create-contact", body, "had_outreach", 400, "must be a boolean.")


@pytest.mark.parametrize("given", [None, "", " "])
def test_had_outreach_is_required(given: object) -> None:
    body = {**INBOUND, "had_outreach": given}
    assert_rejected("create-contact", body, "had_outreach", 400, "is required.")
    assert_rejected(
        "create-contact", without(INBOUND, "had_outreach"), "had_outreach", 400, "is required."
    )


def test_had_outreach_placeholder_counts_as_missing() -> None:
    body = {**INBOUND, "had_outreach": "{{cuf_14652832}}"}
    assert_rejected(
        "create-contact",
        body,
        "had_outreach",
        400,
        "is required (it was an unrendered ManyChat placeholder).",
    )


def test_inbound_and_outreach_bodies_are_accepted() -> None:
    assert accepted("create-contact", INBOUND) == INBOUND
    assert accepted("create-contact", OUTREACH) == OUTREACH


@pytest.mark.parametrize(
    ("base", "change", "field", "message"),
    [
        (
            without(INBOUND, "last_response_at"),
            {},
            "last_response_at",
            "is required when had_outreach is false.",
        ),
        (
            without(INBOUND, "last_message_content"),
            {},
            "last_message_content",
            "is required when had_outreach is false.",
        ),
        (
            INBOUND,
            {"last_message_content": "  "},
            "last_message_content",
            "is required when had_outreach is false.",
        ),
        (
            INBOUND,
            {"outreach_reason": "x"},
            "outreach_reason",
            "cannot be set when had_outreach is false.",
        ),
        (
            INBOUND,
            {"outreach_text": "x"},
            "outreach_text",
            "cannot be set when had_outreach is false.",
        ),
        (
            without(OUTREACH, "outreach_reason"),
            {},
            "outreach_reason",
            "is required when had_outreach is true.",
        ),
        (
            without(OUTREACH, "outreach_text"),
            {},
            "outreach_text",
            "is required when had_outreach is true.",
        ),
        (
            OUTREACH,
            {"last_response_at": "2025-01-12T10:00:00Z"},
            "last_response_at",
            "cannot be set when had_outreach is true.",
        ),
        (
            OUTREACH,
            {"last_message_content": "hi"},
            "last_message_content",
            "cannot be set when had_outreach is true.",
        ),
        # A conflict is reported before a missing field.
        (
            without(INBOUND, "last_message_content"),
            {"outreach_text": "x"},
            "outreach_text",
            "cannot be set when had_outreach is false.",
        ),
        (
            INBOUND,
            {"last_message_content": "{{last_input_text}}"},
            "last_message_content",
            "is required when had_outreach is false (it was an unrendered ManyChat placeholder).",
        ),
        (
            OUTREACH,
            {"outreach_text": "##<<x>>"},
            "outreach_text",
            "is required when had_outreach is true (it was an unrendered ManyChat placeholder).",
        ),
    ],
)
def test_had_outreach_decides_required_and_forbidden_fields(
    base: dict[str, Any], change: dict[str, Any], field: str, message: str
) -> None:
    assert_rejected("create-contact", {**base, **change}, field, 400, message)


@pytest.mark.parametrize("given", [None, "", "{{last_interaction}}", "<<last_input_text>>"])
def test_unset_fields_of_the_other_mode_do_not_conflict(given: object) -> None:
    outreach = {**OUTREACH, "last_response_at": given, "last_message_content": given}
    assert accepted("create-contact", outreach) == OUTREACH
    inbound = {**INBOUND, "outreach_reason": given, "outreach_text": given}
    assert accepted("create-contact", inbound) == INBOUND


def test_outreach_text_is_not_trimmed() -> None:
    body = {**OUTREACH, "outreach_text": "  Hey!\n", "outreach_reason": " Q1 "}
    assert accepted("create-contact", body) == body


def test_create_contact_optional_fields_are_normalized() -> None:
    body = {
        **INBOUND,
        "organization_id": ORG.upper(),
        "manychat_id": 77,
        "ig_id": "5",
        "email": "  Jane@Example.com ",
        "activate_followups": "False",
        "note": "Came from Reel about mindset",
        "tags": [" interested", "coaching "],
        "tag_color": "red",
        "outreach_reason_label": None,
    }
    assert accepted("create-contact", body) == {
        **INBOUND,
        "organization_id": ORG,
        "manychat_id": "77",
        "ig_id": 5,
        "email": "Jane@Example.com",
        "activate_followups": False,
        "note": "Came from Reel about mindset",
        "tags": ["interested", "coaching"],
        "tag_color": "red",
    }


@pytest.mark.parametrize(("given", "normalized"), [(True, True), ("TRUE", True), (False, False)])
def test_activate_followups_is_a_boolean(given: object, normalized: bool) -> None:
    body = accepted("create-contact", {**INBOUND, "activate_followups": given})
    assert body["activate_followups"] is normalized


@pytest.mark.parametrize("given", ["no", 0, 1, "off"])
def test_invalid_activate_followups_is_400(given: object) -> None:
    body = {**INBOUND, "activate_followups": given}
    assert_rejected("create-contact", body, "activate_followups", 400, "must be a boolean.")


# -- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["create-contact", "update-tags"])
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("not-an-email", "must be a valid email address."),
        ("a@", "must be a valid email address."),
        ("a b@example.com", "must be a valid email address."),
        (5, "must be a valid email address."),
        ("a" * 243 + "@example.com", "must be at most 254 characters."),
    ],
)
def test_invalid_email_is_400(endpoint: str, given: object, message: str) -> None:
    assert_rejected(endpoint, {**VALID[endpoint], "email": given}, "email", 400, message)


@pytest.mark.parametrize("endpoint", ["create-contact", "update-tags"])
def test_valid_email_is_trimmed(endpoint: str) -> None:
    body = accepted(endpoint, {**VALID[endpoint], "email": " owner@example.com "})
    assert body["email"] == "owner@example.com"


# -- tags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "base", "field"),
    [("create-contact", INBOUND, "tags"), ("update-tags", TAGS, "tag_names")],
)
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("hot-lead", "must be a list of strings."),
        ("a,b", "must be a list of strings."),
        (["a", 1], "must be a list of strings."),
        (["a", None], "must be a list of strings."),
        ({"a": 1}, "must be a list of strings."),
    ],
)
def test_invalid_tag_list_is_400(
    endpoint: str, base: dict[str, Any], field: str, given: object, message: str
) -> None:
    assert_rejected(endpoint, {**base, field: given}, field, 400, message)


@pytest.mark.parametrize(
    ("endpoint", "base", "field"),
    [("create-contact", INBOUND, "tags"), ("update-tags", TAGS, "tag_names")],
)
@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (["hot-lead", " clicked-link "], ["hot-lead", "clicked-link"]),
        (["x" * 100], ["x" * 100]),
        (["x" * 5000], ["x" * 5000]),
        ([f"t{i}" for i in range(50)], [f"t{i}" for i in range(50)]),
        ([f"t{i}" for i in range(500)], [f"t{i}" for i in range(500)]),
        (["{{cuf_1}}", "vip", "##<<tag>>"], ["vip"]),
        (["a", "", "  ", "b"], ["a", "b"]),
    ],
)
def test_tag_list_is_trimmed_and_placeholders_removed(
    endpoint: str, base: dict[str, Any], field: str, given: list[str], normalized: list[str]
) -> None:
    assert accepted(endpoint, {**base, field: given})[field] == normalized


@pytest.mark.parametrize("given", [[], [""], ["{{cuf_1}}", "  "]])
def test_tags_may_be_empty_on_create_contact(given: list[str]) -> None:
    assert accepted("create-contact", {**INBOUND, "tags": given})["tags"] == []


# -- update-tags ---------------------------------------------------------------------------


def test_update_tags_accepts_contact_id_instead_of_username() -> None:
    body = {"contact_id": CONTACT.upper(), "mode": "set", "tag_names": ["a"]}
    assert accepted("update-tags", body) == {**body, "contact_id": CONTACT}


@pytest.mark.parametrize("given", [None, "", "{{contact_id}}"])
def test_update_tags_needs_contact_id_or_username(given: object) -> None:
    body = {**without(TAGS, "username"), "contact_id": given}
    assert_rejected(
        "update-tags", body, "username", 400, "is required when 'contact_id' is not given."
    )


def test_update_tags_rejects_invalid_contact_id() -> None:
    body = {**TAGS, "contact_id": "contact-uuid"}
    assert_rejected("update-tags", body, "contact_id", 400, "must be a UUID.")


@pytest.mark.parametrize(
    ("given", "normalized"),
    [("set", "set"), ("add", "add"), ("remove", "remove"), (" ADD ", "add")],
)
def test_mode_is_normalized(given: str, normalized: str) -> None:
    assert accepted("update-tags", {**TAGS, "mode": given})["mode"] == normalized


@pytest.mark.parametrize("given", ["append", "replace", 1, ["add"], True])
def test_invalid_mode_is_400(given: object) -> None:
    assert_rejected(
        "update-tags", {**TAGS, "mode": given}, "mode", 400, "must be one of: set, add, remove."
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (None, "is required."),
        ("", "is required."),
        ("{{mode}}", "is required (it was an unrendered ManyChat placeholder)."),
    ],
)
def test_mode_is_required(given: object, message: str) -> None:
    assert_rejected("update-tags", {**TAGS, "mode": given}, "mode", 400, message)
    assert_rejected("update-tags", without(TAGS, "mode"), "mode", 400, "is required.")


@pytest.mark.parametrize("mode", ["set", "add", "remove"])
def test_an_empty_tag_names_list_is_forwarded(mode: str) -> None:
    # With "set" it removes every tag: a documented use, so not the relay's to refuse.
    body = {**TAGS, "mode": mode, "tag_names": []}
    assert accepted("update-tags", body) == body


NO_TAG_NAMES = "is required (it held only blank names or unrendered ManyChat placeholders)."


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (None, "is required."),
        (["{{cuf_1}}"], NO_TAG_NAMES),
        (["", " ", "<<tag>>"], NO_TAG_NAMES),
        ("{{tags|to_json:true}}", "is required (it was an unrendered ManyChat placeholder)."),
    ],
)
def test_tag_names_are_required_and_not_only_placeholders(given: object, message: str) -> None:
    # Forwarding [] for a list ManyChat failed to render would, with "set", wipe the tags.
    assert_rejected("update-tags", {**TAGS, "tag_names": given}, "tag_names", 400, message)
    assert_rejected("update-tags", without(TAGS, "tag_names"), "tag_names", 400, "is required.")


# -- contact-status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "normalized"),
    [
        ({"manychat_id": 1, "lead_status": " WON "}, {"manychat_id": "1", "lead_status": "won"}),
        (
            {"contact_id": CONTACT, "pipeline_stage": "Closed"},
            {"contact_id": CONTACT, "pipeline_stage": "Closed"},
        ),
        ({"manychat_id": "1", "lead_status_id": "3"}, {"manychat_id": "1", "lead_status_id": 3}),
        (
            {"manychat_id": "1", "lead_status_id": 3, "pipeline_stage": " Qualified "},
            {"manychat_id": "1", "lead_status_id": 3, "pipeline_stage": " Qualified "},
        ),
        (
            {"manychat_id": "1", "lead_status": "{{status}}", "lead_status_id": 4},
            {"manychat_id": "1", "lead_status_id": 4},
        ),
        *[
            (
                {"manychat_id": "1", "lead_status": status},
                {"manychat_id": "1", "lead_status": status},
            )
            for status in ("open", "won", "lost", "abandoned")
        ],
    ],
)
def test_contact_status_bodies_are_normalized(
    body: dict[str, Any], normalized: dict[str, Any]
) -> None:
    assert accepted("contact-status", body) == normalized


@pytest.mark.parametrize("given", [None, "", "{{contact_id}}"])
def test_contact_status_needs_contact_id_or_manychat_id(given: object) -> None:
    body = {"contact_id": given, "lead_status": "won"}
    assert_rejected(
        "contact-status", body, "manychat_id", 400, "is required when 'contact_id' is not given."
    )


NO_STATUS = "is required: send at least one of lead_status, lead_status_id or pipeline_stage"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"manychat_id": "1"}, f"{NO_STATUS}."),
        ({"manychat_id": "1", "lead_status": None, "pipeline_stage": ""}, f"{NO_STATUS}."),
        (
            {"manychat_id": "1", "lead_status": "{{s}}", "lead_status_id": "<<id>>"},
            f"{NO_STATUS} (it was an unrendered ManyChat placeholder).",
        ),
    ],
)
def test_contact_status_needs_a_status_field(body: dict[str, Any], message: str) -> None:
    assert_rejected("contact-status", body, "lead_status", 400, message)


def test_lead_status_and_lead_status_id_together_are_400() -> None:
    body = {**STATUS, "lead_status_id": 2}
    assert_rejected(
        "contact-status",
        body,
        "lead_status_id",
        400,
        "cannot be set with lead_status: use lead_status or lead_status_id, not both.",
    )


@pytest.mark.parametrize("given", ["closed", "WON!", 1, ["won"]])
def test_invalid_lead_status_is_400(given: object) -> None:
    assert_rejected(
        "contact-status",
        {**STATUS, "lead_status": given},
        "lead_status",
        400,
        "must be one of: open, won, lost, abandoned.",
    )


@pytest.mark.parametrize(("given", "forwarded"), [("-1", -1), (-1, -1), (1.5, 1.5), (" 7 ", 7)])
def test_lead_status_id_is_any_number(given: object, forwarded: float) -> None:
    body = accepted("contact-status", {"manychat_id": "1", "lead_status_id": given})
    assert body["lead_status_id"] == forwarded


@pytest.mark.parametrize("given", ["x", "1.5", True, ["1"]])
def test_lead_status_id_that_is_not_a_number_is_400(given: object) -> None:
    body = {"manychat_id": "1", "lead_status_id": given}
    assert_rejected("contact-status", body, "lead_status_id", 400, "must be a number.")


def test_contact_status_rejects_invalid_contact_id() -> None:
    body = {"contact_id": "abc-123", "lead_status": "won"}
    assert_rejected("contact-status", body, "contact_id", 400, "must be a UUID.")


@pytest.mark.parametrize("typed", ["@{{instagram_username}}", " @@ {{ig_username}}", "@<<x>>"])
def test_a_username_placeholder_typed_after_an_at_sign_is_still_a_placeholder(typed: str) -> None:
    assert_rejected("default-reply", {**REPLY, "username": typed}, "username", 422, PLACEHOLDER)
    body = accepted("update-tags", {**TAGS, "username": typed, "contact_id": CONTACT})
    assert "username" not in body
