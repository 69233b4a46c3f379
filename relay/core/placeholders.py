"""Recognize ManyChat template text that arrived unrendered, and blank values."""

from __future__ import annotations

import re

# One token: `{{name}}` or `<<name>>`, optionally prefixed by `##`, with optional inner spaces
# and filters (`|fallback:"friend"`, `|to_json:true`). ManyChat sends a variable that has no
# value as this literal text, so a value made only of tokens carries no data.
_VARIABLE = (
    r"(?:\#\#)?"
    r"(?:\{\{\s*[\w.\-]+\s*(?:\|[^{}]*)?\}\}"
    r"|<<\s*[\w.\-]+\s*(?:\|[^<>]*)?>>)"
)
_PLACEHOLDER = re.compile(rf"{_VARIABLE}(?:\s*{_VARIABLE})*")


def is_placeholder(value: object) -> bool:
    """Return True when the whole string is one or more unrendered template tokens."""
    return isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()) is not None


def is_blank(value: object) -> bool:
    """Return True for None or a string that is empty or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())
