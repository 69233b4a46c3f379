"""Recognize ManyChat template text that arrived unrendered, and blank values."""

from __future__ import annotations

import re

# One token: `{{name}}` or `<<name>>`, optionally prefixed by `##`, with optional filters
# (`|fallback:"friend"`, `|to_json:true`). ManyChat sends a variable that has no value as this
# literal text, so a value made only of tokens carries no data. A name is anything ManyChat
# allows in a field name ("First Name", "cuf_123", "Lead: source"), but not blank.
_NAME = r"[^{}|<>]*[^\s{}|<>][^{}|<>]*"
_VARIABLE = (
    r"(?:\#\#)?"
    rf"(?:\{{\{{{_NAME}(?:\|[^{{}}]*)?\}}\}}"
    rf"|<<{_NAME}(?:\|[^<>]*)?>>)"
)
_PLACEHOLDER = re.compile(rf"{_VARIABLE}(?:\s*{_VARIABLE})*")
# A token as ManyChat leaves it in a body, for relay/core/repair.py.
TOKEN = re.compile(_VARIABLE)


def is_placeholder(value: object) -> bool:
    """Return True when the whole string is one or more unrendered template tokens."""
    return isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()) is not None


def is_blank(value: object) -> bool:
    """Return True for None or a string that is empty or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())
