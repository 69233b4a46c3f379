"""ManyChat's renderings of empty variables, repaired into the JSON the flow meant."""

from __future__ import annotations

import json

import pytest

from relay.core.placeholders import is_placeholder
from relay.core.repair import repair


@pytest.mark.parametrize(
    "token",
    [
        "{{last_input_text}}",
        "{{last_input_text|to_json:true}}",
        "{{ last_input_text | to_json:true }}",
        "##{{last_input_text}}",
        "<<last_input_text>>",
        "##<<x>>",
        "{{First Name}}",
        "{{Lead: source}}",
        "{{cuf_14652832}}",
        '{{x|fallback:"friend"|to_json:true}}',
    ],
)
def test_a_bare_placeholder_outside_a_string_reads_as_null(token: str) -> None:
    raw = f'{{"username": "john", "message_content": {token}, "tags": [{token}, "a"]}}'
    assert json.loads(repair(raw)) == {
        "username": "john",
        "message_content": None,
        "tags": [None, "a"],
    }


@pytest.mark.parametrize(
    "inside",
    ['{{page_name|fallback:""}}', '{{First Name|fallback:"my friend"}}', '{{x | fallback:"" }}'],
)
def test_a_fallback_whose_quotes_broke_the_string_reads_as_the_placeholder(inside: str) -> None:
    raw = f'{{"page_name": "{inside}", "username": "john"}}'
    repaired = json.loads(repair(raw))
    assert repaired == {"page_name": inside, "username": "john"}
    assert is_placeholder(repaired["page_name"])


def test_text_around_a_fallback_and_escapes_are_kept() -> None:
    raw = r'{"m": "Hi {{first_name|fallback:"friend"}}, a \"quote\" and {{x}} stay", "n": 1}'
    assert json.loads(repair(raw)) == {
        "m": 'Hi {{first_name|fallback:"friend"}}, a "quote" and {{x}} stay',
        "n": 1,
    }


@pytest.mark.parametrize("raw", ['{"a": "x"}', '{"a": [1, 2.5, null, true]}', "[]", '"<<x>>"'])
def test_valid_json_is_left_as_it_was(raw: str) -> None:
    assert repair(raw) == raw


@pytest.mark.parametrize("raw", ["{not json", "hello", '{"a": {{}}}', '{"a": <<>>}'])
def test_what_is_not_a_rendering_of_an_empty_variable_stays_broken(raw: str) -> None:
    with pytest.raises(ValueError):
        json.loads(repair(raw))
