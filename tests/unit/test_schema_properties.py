"""Properties of the ingest schemas, for any JSON at all: a documented refusal or a normal body.

- Any JSON value in gives either a FieldError with DmTracker's 400 or 422 and a message naming
  a field, or a Validated body; never another exception.
- Normalizing is idempotent: validating a normalized body accepts it and returns it unchanged,
  with the same decision to skip or to queue.
- A normalized body is JSON the worker can send: no NaN, no infinity, nothing but JSON types.
- The schemas' own convert() agrees with marshmallow's load() on every body: the same result,
  or the same errors.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from relay.core.errors import FieldError
from relay.core.schemas import SCHEMAS, validate

ENDPOINTS = sorted(SCHEMAS)
KNOWN_FIELDS = sorted({name for schema in SCHEMAS.values() for name in schema.fields})

# Values a ManyChat flow plausibly sends for some field, valid or nearly so.
PLAUSIBLE = st.sampled_from(
    [
        "John_Doe",
        "@John.Doe",
        " john_doe ",
        "123456",
        123456,
        "0",
        "11111111-1111-4111-8111-111111111111",
        "A1B2C3D4-0000-4000-8000-00000000ABCD",
        "2026-11-30T10:00:00Z",
        "2026-11-30 10:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999+14:00",
        "2026-02-30T10:00:00Z",
        "true",
        "FALSE",
        True,
        False,
        "won",
        " Lost ",
        "add",
        "SET",
        ["hot-lead", " warm ", "{{tag}}"],
        [],
        ["", "x"],
        "{{last_input_text}}",
        "##{{first_name}}",
        "<<x>>",
        "someone@example.com",
        "not an email",
        "",
        "   ",
        None,
        {"ig_id": "42", "custom_fields": {"a": None}},
        10**19,
        10**20,
        -1,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELD_VALUES = st.one_of(PLAUSIBLE, JSON)
# Valid bodies to start from, so that mutating a few fields reaches normalization, not only
# the first missing field.
BASES: dict[str, list[dict[str, Any]]] = {
    "default-reply": [
        {"username": "john_doe", "manychat_id": "1", "message_content": "Tell me more"},
        {"username": "x", "manychat_id": 2, "manychat_data": {"ig_id": 7}},
    ],
    "create-contact": [
        {
            "username": "john_doe",
            "had_outreach": False,
            "last_response_at": "2026-01-01T00:00Z",
            "last_message_content": "Hi!",
        },
        {
            "username": "p",
            "had_outreach": "true",
            "outreach_reason": "r",
            "outreach_text": "t",
            "tags": ["a"],
        },
    ],
    "update-tags": [
        {"username": "john_doe", "mode": "add", "tag_names": ["hot"]},
        {"contact_id": "a1b2c3d4-0000-4000-8000-00000000abcd", "mode": "set", "tag_names": ["x"]},
    ],
    "contact-status": [
        {"manychat_id": "12345678", "lead_status": "won"},
        {"contact_id": "a1b2c3d4-0000-4000-8000-00000000abcd", "pipeline_stage": "Call"},
    ],
}


DATES = ["2026-11-30T10:00:00Z", "2026-11-30 10:00", "0001-01-01T00:00:00Z", "2026-11-30"]
UUIDS = ["a1b2c3d4-0000-4000-8000-00000000abcd", "A1B2C3D4-0000-4000-8000-00000000ABCD"]
TAG_LISTS = [["hot"], [" warm ", "{{tag}}"], [], ["x"] * 51, ["", "y"]]
# Values each field plausibly carries, near the edges of its rules.
SAMPLES: dict[str, list[Any]] = {
    "username": ["John_Doe", "@john.doe", " x ", "{{username}}", "a" * 31, "jöhn"],
    "manychat_id": ["123", 123, " 99 ", "{{id}}", "9" * 65, -5],
    "organization_id": [*UUIDS, "", None, "{{org}}"],
    "message_content": ["hi", "", "  ", "{{last_input_text}}", None, "x" * 8001],
    "message_date": DATES,
    "page_name": ["Page A", "", "P" * 256],
    "ig_id": [42, "42", None, "{{ig}}", 10**20, "-1"],
    "manychat_data": [{"ig_id": "7"}, {"ig_id": "{{ig}}"}, {}, "not an object"],
    "had_outreach": [True, False, "true", "False", "yes"],
    "last_response_at": DATES,
    "last_message_content": ["hi", ""],
    "outreach_reason": ["r", ""],
    "outreach_text": ["t", None],
    "outreach_reason_label": ["l"],
    "outreach_message_label": ["m"],
    "email": ["a@b.co", " a@b.co ", "nope"],
    "activate_followups": [True, "false", 1],
    "note": ["n", "n" * 1001],
    "tags": TAG_LISTS,
    "tag_color": [" #fff ", "#" * 33],
    "contact_id": [*UUIDS, "nope"],
    "mode": ["ADD", " set ", "toggle"],
    "tag_names": TAG_LISTS,
    "lead_status": ["Won", " lost ", "maybe"],
    "lead_status_id": [3, "3", -3],
    "pipeline_stage": ["Call", ""],
}


def field_value(name: str) -> st.SearchStrategy[Any]:
    """Return values for one field: mostly its own plausible values, sometimes anything."""
    own = st.sampled_from(SAMPLES.get(name, [None]))
    return st.one_of(own, own, own, PLAUSIBLE, JSON)


def bodies(endpoint: str) -> st.SearchStrategy[Any]:
    """Return bodies for an endpoint: mostly a valid one with a few fields changed."""
    names = st.lists(st.sampled_from(sorted(SCHEMAS[endpoint].fields)), max_size=3, unique=True)
    changes = names.flatmap(
        lambda chosen: st.fixed_dictionaries({n: field_value(n) for n in chosen})
    )
    unknown = st.dictionaries(st.text(max_size=8), JSON, max_size=2)
    mutated = st.builds(
        lambda base, change, extra: {**extra, **base, **change},
        st.sampled_from(BASES[endpoint]),
        changes,
        unknown,
    )
    anything = st.one_of(
        st.dictionaries(st.sampled_from(KNOWN_FIELDS), FIELD_VALUES, max_size=10), JSON
    )
    # One body in ten is anything at all; the rest reach normalization.
    return st.integers(0, 9).flatmap(lambda n: anything if n == 0 else mutated)


ROUTED = st.sampled_from(ENDPOINTS).flatmap(lambda e: st.tuples(st.just(e), bodies(e)))
EXAMPLES = settings(max_examples=250, deadline=None)


@EXAMPLES
@given(routed=ROUTED)
def test_any_json_is_refused_as_documented_or_normalized(routed: tuple[str, Any]) -> None:
    endpoint, body = routed
    try:
        validated = validate(endpoint, body)
    except FieldError as error:
        assert error.status in (400, 422)
        assert error.message.startswith(f"The '{error.field}' field ")
        return
    assert isinstance(validated.body, dict)
    json.dumps(validated.body, allow_nan=False)  # what the worker sends must be plain JSON


@EXAMPLES
@given(routed=ROUTED)
def test_normalizing_twice_changes_nothing(routed: tuple[str, Any]) -> None:
    endpoint, body = routed
    try:
        once = validate(endpoint, body)
    except FieldError:
        return
    twice = validate(endpoint, once.body)

    assert twice.body == once.body
    assert (twice.skip_reason is None) == (once.skip_reason is None)


def loaded(load: Any, body: dict[str, Any]) -> Any:
    """Return what a loader returns for body, or the errors it raises."""
    try:
        return load(body)
    except ValidationError as error:
        return ("errors", error.normalized_messages())


@EXAMPLES
@given(routed=ROUTED)
def test_convert_agrees_with_marshmallows_load(routed: tuple[str, Any]) -> None:
    endpoint, body = routed
    if not isinstance(body, dict):
        return  # validate() refuses those before either loader runs
    schema = SCHEMAS[endpoint]
    assert loaded(schema.convert, body) == loaded(schema.load, body)
