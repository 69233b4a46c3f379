"""Remove secrets from text before it is stored or shown, and cut it to size."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from relay.core import defaults

# Names of fields and headers that look like credentials; their values are masked.
_CREDENTIAL_NAMES = r"x-org-auth-token|authorization|token|secret|password|api[_-]?key"
_SECRET_NAME = re.compile(f"(?i){_CREDENTIAL_NAMES}")
# Such a name with its value, in JSON or header form.
_SECRET_FIELD = re.compile(rf'(?i)("?(?:{_CREDENTIAL_NAMES})"?\s*[:=]\s*"?)([^"\s,}}]+)')
REDACTED = "[redacted]"


def redact(
    text: str, secrets: Iterable[str] = (), limit_bytes: int = defaults.RESPONSE_BODY_KEEP_BYTES
) -> str:
    """Return text with known secrets and credential-looking values masked, cut to a limit."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SECRET_FIELD.sub(lambda m: m.group(1) + REDACTED, text)
    return truncate_utf8(text, limit_bytes)


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
        return redact(value, secrets, limit_bytes=len(value.encode()))
    return value


def truncate_utf8(text: str, limit_bytes: int) -> str:
    """Cut text to at most limit_bytes of UTF-8 without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    return encoded[:limit_bytes].decode("utf-8", errors="ignore")
