"""Remove secrets from text before it is stored or shown, and cut it to size."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from relay.core import defaults

# Names of fields and headers that look like credentials; their values are masked.
_CREDENTIAL_NAMES = r"x-org-auth-token|authorization|token|secret|password|api[_-]?key"
_SECRET_NAME = re.compile(f"(?i){_CREDENTIAL_NAMES}")
# Such a name with its value, in JSON, header or key=value form. A quoted value is masked to
# its closing quote, spaces included; a bare one with the word before it, so the credential
# after a scheme ("Bearer sk_live_...") goes too.
_SECRET_FIELD = re.compile(
    rf"""(?ix)
    (?P<name>["']?(?:{_CREDENTIAL_NAMES})["']?\s*[:=]\s*)
    (?:
        (?P<quote>["'])(?:\\.|(?!(?P=quote)).)*(?P=quote)?
      | (?:[^\s"',;}}]+[ \t]+)?[^\s"',;}}]+
    )
    """
)
# A JSON Web Token: base64url segments, the first a JSON header ("eyJ" is '{"' encoded).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}")
REDACTED = "[redacted]"


def holds_secret(text: str, secrets: Iterable[str]) -> bool:
    """Return True if text contains a secret long enough to be told apart from ordinary words."""
    return any(len(secret) >= defaults.MIN_SECRET_CHARS and secret in text for secret in secrets)


def redact(
    text: str, secrets: Iterable[str] = (), limit_bytes: int = defaults.RESPONSE_BODY_KEEP_BYTES
) -> str:
    """Return text with known secrets and credential-looking values masked, cut to a limit."""
    return truncate_utf8(mask(text, secrets), limit_bytes)


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """Return text with known secrets, credential-named values and JWTs masked, uncut."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SECRET_FIELD.sub(_masked_field, text)
    return _JWT.sub(REDACTED, text)


def _masked_field(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('name')}{quote}{REDACTED}{quote}"


def redact_json(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Return a JSON value with credential-named fields and known secrets masked, uncut."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_NAME.search(key) else redact_json(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_json(item, secrets) for item in value]
    if isinstance(value, str):
        return mask(value, secrets)
    return value


def truncate_utf8(text: str, limit_bytes: int) -> str:
    """Cut text to at most limit_bytes of UTF-8 without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    return encoded[:limit_bytes].decode("utf-8", errors="ignore")
