"""The wait a request asks for: bounded, and never an error."""

from __future__ import annotations

import pytest

from relay.web.answer import parse_wait


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, 5.0),
        ("2", 2.0),
        ("0.25", 0.25),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("30", 8.0),  # capped: ManyChat gives up after about 10 s
        ("-1", 0.0),
        ("soon", 5.0),
        ("", 5.0),
        ("nan", 5.0),
        ("inf", 5.0),
        ("1e999", 5.0),
    ],
)
def test_parse_wait(given: str | None, expected: float) -> None:
    assert parse_wait(given, 5.0) == expected
