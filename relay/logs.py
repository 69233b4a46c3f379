"""Logging to stdout: JSON lines when not on a terminal, plain text on one.

Every line logged while a request or a delivery is handled carries its ids: the web app
opens a context per request and the worker one per delivery (see open_context), and each
log record is stamped with the context of the code that made it. structlog's contextvars
module is the model; this is the stdlib-logging half of it, without the dependency.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

# The ids a request or a delivery binds; every line inside either carries all four.
CONTEXT_KEYS = ("request_id", "delivery_id", "organization", "endpoint")
# A name no library passes in `extra`, which would clash with it.
CONTEXT_ATTRIBUTE = "dmrelay_context"

Context = Mapping[str, Any]
# One variable holding a mapping that is replaced, never changed in place: a thread or task
# sees only its own bindings (the isolation structlog gets from one variable per key).
_context: ContextVar[Context] = ContextVar("dmrelay_log_context", default=MappingProxyType({}))


def open_context(**fields: Any) -> Token[Context]:
    """Start the context of one request or delivery: the four ids, None until bound."""
    return _context.set(MappingProxyType({**dict.fromkeys(CONTEXT_KEYS), **fields}))


def bind_context(**fields: Any) -> None:
    """Add fields to the context until it is closed, for every line logged from here on."""
    _context.set(MappingProxyType({**_context.get(), **fields}))


def close_context(token: Token[Context]) -> None:
    """End a context opened with open_context, with everything bound in it since."""
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Run a block in a context of its own (open_context, then close_context)."""
    token = open_context(**fields)
    try:
        yield
    finally:
        close_context(token)


def current_context() -> dict[str, Any]:
    """Return the fields bound for the code running now."""
    return dict(_context.get())


def _stamping(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a record factory so each record carries the context of the code that logs it."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        setattr(record, CONTEXT_ATTRIBUTE, _context.get())
        return record

    make_record.stamps_context = True  # type: ignore[attr-defined]
    return make_record


# Stamped when the record is made, not when it is formatted: pytest's caplog, Sentry and any
# handler that formats later or elsewhere all see the ids. Installed on import, so no code can
# bind a context (which needs this module) without its lines carrying it.
if not getattr(logging.getLogRecordFactory(), "stamps_context", False):
    logging.setLogRecordFactory(_stamping(logging.getLogRecordFactory()))


# What json.dumps(line, default=str) would build for every line, built once.
_JSON = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line, with its context and any structured extras."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON."""
        line = {
            "time": f"{self._whole_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, CONTEXT_ATTRIBUTE, {}),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(line)

    def _whole_second(self, second: int) -> str:
        """Return the UTC date and time of a whole second, formatted once per second."""
        cached, text = self._second
        if cached != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)  # one assignment: threads see either pair whole
        return text


def configure_logging(level: int = logging.INFO) -> None:
    """Send every log line to stdout once, in the format fit for where it goes."""
    handler = logging.StreamHandler(sys.stdout)
    if sys.stdout.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
