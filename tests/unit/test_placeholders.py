"""Unrendered ManyChat templates and blank values."""

from __future__ import annotations

import pytest

from relay.core.placeholders import is_blank, is_placeholder


@pytest.mark.parametrize(
    "value",
    [
        "{{last_input_text}}",
        "##{{last_input_text}}",
        "<<last_input_text>>",
        "##<<page_name>>",
        "{{cuf_14652832}}",
        "{{ cuf_14652832 }}",
        "{{  last_input_text\t}}",
        "<< page_name >>",
        '{{first_name|fallback:"friend"}}',
        '{{ first_name | fallback:"my friend" }}',
        "{{x|to_json:true}}",
        '{{x|fallback:"a"|to_json:true}}',
        "{{contact.ig-username}}",
        "{{Custom_Field_2}}",
        "  {{last_input_text}}  ",
        "\n##{{last_input_text}}\n",
        "{{first_name}} {{last_name}}",
        "{{first_name}}{{last_name}}",
        "##{{a}} ##<<b>>",
        "{{first name}}",
        "{{First Name}}",
        "{{Lead: source}}",
        "<<Custom Field #2>>",
        '{{page_name|fallback:""}}',
    ],
)
def test_whole_value_of_template_tokens_is_a_placeholder(value: str) -> None:
    assert is_placeholder(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "hi {{x}} there",
        "{{x}} there",
        "hi {{x}}",
        "hello",
        "",
        "   ",
        "{{}}",
        "{{ }}",
        "<<>>",
        "{x}",
        "{{x}",
        "{{x}}}",
        "<<x>",
        "{{x>>",
        "##",
        "##hello",
        "#{{x}}",
        "###{{x}}",
        "{{x}} ## {{y}}",
        "Sure, send me more details about pricing.",
    ],
)
def test_other_strings_are_not_placeholders(value: str) -> None:
    assert is_placeholder(value) is False


@pytest.mark.parametrize("value", [None, 0, 123, 1.5, True, ["{{x}}"], {"v": "{{x}}"}, b"{{x}}"])
def test_non_strings_are_not_placeholders(value: object) -> None:
    assert is_placeholder(value) is False


@pytest.mark.parametrize(
    ("value", "blank"),
    [
        (None, True),
        ("", True),
        ("   ", True),
        ("\t\n ", True),
        ("x", False),
        (" x ", False),
        ("{{x}}", False),
        (0, False),
        (False, False),
        ([], False),
        ({}, False),
    ],
)
def test_is_blank(value: object, blank: bool) -> None:
    assert is_blank(value) is blank
