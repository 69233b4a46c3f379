"""Small conversions of Redis replies shared by the storage modules."""

from __future__ import annotations


def text(value: bytes | str | object) -> str:
    """Return a Redis reply as text (the client keeps bytes, as RQ requires)."""
    return value.decode() if isinstance(value, bytes) else str(value)
