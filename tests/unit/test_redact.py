"""Secrets never survive into stored response bodies."""

from __future__ import annotations

import pytest

from relay.core.redact import REDACTED, holds_secret, mask, redact, redact_json, truncate_utf8

TOKEN = "tok-abc-0123456789"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJvcHMiLCJzY29wZSI6InJlbGF5OmFkbWluIn0"
    ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
)


def test_known_secret_is_removed_anywhere() -> None:
    assert redact(f"echo {TOKEN} here", secrets=[TOKEN]) == f"echo {REDACTED} here"


def test_credential_looking_fields_are_masked() -> None:
    text = '{"x-org-auth-token": "abc", "password":"p1", "note": "keep"}'
    out = redact(text)
    assert "abc" not in out and "p1" not in out
    assert '"note": "keep"' in out


def test_authorization_header_form_is_masked() -> None:
    assert "eyJ" not in redact("Authorization: eyJhbGci.payload")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer sk_live_51Hx9", f"Authorization: {REDACTED}"),
        ("authorization: Basic b3BzOnB3ZA==\nnext line", f"authorization: {REDACTED}\nnext line"),
        ('{"Authorization": "Bearer sk_live_51Hx9"}', f'{{"Authorization": "{REDACTED}"}}'),
        ("{'Authorization': 'Token sk_live_51Hx9'}", f"{{'Authorization': '{REDACTED}'}}"),
    ],
)
def test_an_authorization_value_is_masked_with_its_scheme(text: str, masked: str) -> None:
    out = redact(text)
    assert out == masked
    assert "sk_live" not in out and "Bearer" not in out and "b3BzOnB3ZA" not in out


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            '{"password": "correct horse battery staple", "note": "keep me"}',
            f'{{"password": "{REDACTED}", "note": "keep me"}}',
        ),
        ('secret="two words" after', f'secret="{REDACTED}" after'),
        ('{"api_key": "with \\"escaped\\" quotes"}', f'{{"api_key": "{REDACTED}"}}'),
    ],
)
def test_a_quoted_value_with_spaces_is_masked_whole(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        f"upstream said: invalid session {JWT} (expired)",
        f'{{"detail": "{JWT}"}}',
        f"Cookie: session={JWT}",
    ],
)
def test_a_jwt_is_masked_wherever_it_appears(text: str) -> None:
    out = redact(text)
    assert "eyJ" not in out
    assert JWT.rsplit(".", 1)[1] not in out
    assert REDACTED in out


def test_ordinary_text_is_left_alone() -> None:
    text = '{"error": "Unauthorized", "message": "Missing or invalid x-org-auth-token header."}'
    assert redact(text) == text


def test_cut_to_the_limit_without_splitting_characters() -> None:
    assert len(redact("x" * 5000).encode()) == 2048
    assert truncate_utf8("é" * 3, 5) == "éé"


def test_json_values_keep_their_shape_with_credentials_masked() -> None:
    payload = {
        "username": "lead",
        "manychat_data": {"api_key": 12345, "notes": [f"call {TOKEN}", 7], "long": "é" * 3000},
        "Access_Token": ["a", "b"],
    }
    assert redact_json(payload, secrets=[TOKEN]) == {
        "username": "lead",
        "manychat_data": {
            "api_key": REDACTED,
            "notes": [f"call {REDACTED}", 7],
            "long": "é" * 3000,
        },
        "Access_Token": REDACTED,
    }


def test_redact_json_keeps_what_follows_a_secret_shorter_than_the_mask() -> None:
    # "[redacted]" is longer than this secret: the value grows, and nothing after it is lost.
    short_secret = "abc"
    out = redact_json({"note": f"{short_secret} then the rest of the note"}, [short_secret])
    assert out == {"note": f"{REDACTED} then the rest of the note"}


def test_redact_json_masks_a_jwt_inside_a_value() -> None:
    assert redact_json({"note": f"see {JWT}"}) == {"note": f"see {REDACTED}"}


def test_mask_never_cuts() -> None:
    assert mask("x" * 10_000) == "x" * 10_000


def test_only_secrets_of_16_characters_or_more_are_matched() -> None:
    assert holds_secret("what are your prices?", ["prices"]) is False
    assert holds_secret(f"my token is {TOKEN}!", ["prices", TOKEN]) is True
    assert holds_secret("sixteen-chars-xx", ["sixteen-chars-xx"]) is True
    assert holds_secret("fifteen-chars-x", ["fifteen-chars-x"]) is False
