"""Small helpers shared by tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_REPLY = {
    "manychat_id": "123456",
    "username": "John_Doe",
    "message_content": "Sure, send me more details about pricing.",
    "page_name": "Page A",
}


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Return check()'s first truthy value, or fail after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def headers(token: str, **extra: Any) -> dict[str, str]:
    """Return the headers ManyChat sends with an org token."""
    return {"x-org-auth-token": token, "Content-Type": "application/json", **extra}
