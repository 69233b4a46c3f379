"""Small helpers shared by tests."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from relay.logs import JsonFormatter

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


class CapturedLog(logging.Handler):
    """The JSON lines the relay would print while attached, from the threads `accept` takes."""

    def __init__(self, accept: Callable[[logging.LogRecord], bool] = lambda record: True) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.accept = accept
        self.lines: list[dict[str, Any]] = []
        self._root_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record as the relay's stdout handler would, in the thread that logs it."""
        if self.accept(record):
            self.lines.append(json.loads(self.format(record)))

    def messages(self) -> list[str]:
        """Return the message of every line captured."""
        return [line["message"] for line in self.lines]

    def __enter__(self) -> CapturedLog:
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)
