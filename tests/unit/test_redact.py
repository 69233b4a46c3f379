"""Secrets never survive into stored response bodies."""

from __future__ import annotations

from relay.core.redact import REDACTED, redact, redact_json, truncate_utf8


def test_known_secret_is_removed_anywhere() -> None:
    assert redact("echo tok-abc-123 here", secrets=["tok-abc-123"]) == f"echo {REDACTED} here"


def test_credential_looking_fields_are_masked() -> None:
    text = '{"x-org-auth-token": "abc", "password":"p1", "note": "keep"}'
    out = redact(text)
    assert "abc" not in out and "p1" not in out
    assert '"note": "keep"' in out


def test_authorization_header_form_is_masked() -> None:
    assert "eyJ" not in redact("Authorization: eyJhbGci.payload")


def test_cut_to_the_limit_without_splitting_characters() -> None:
    assert len(redact("x" * 5000).encode()) == 2048
    assert truncate_utf8("é" * 3, 5) == "éé"


def test_json_values_keep_their_shape_with_credentials_masked() -> None:
    payload = {
        "username": "lead",
        "manychat_data": {"api_key": 12345, "notes": ["call tok-abc-123", 7], "long": "é" * 3000},
        "Access_Token": ["a", "b"],
    }
    assert redact_json(payload, secrets=["tok-abc-123"]) == {
        "username": "lead",
        "manychat_data": {
            "api_key": REDACTED,
            "notes": [f"call {REDACTED}", 7],
            "long": "é" * 3000,
        },
        "Access_Token": REDACTED,
    }
