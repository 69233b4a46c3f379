"""The log context: bound once per request or delivery, carried by every line inside it."""

from __future__ import annotations

import json
import logging
import threading

from relay.logs import (
    CONTEXT_KEYS,
    JsonFormatter,
    bind_context,
    close_context,
    current_context,
    log_context,
    open_context,
)
from tests.helpers import CapturedLog

log = logging.getLogger("dmrelay.test")


def test_every_line_in_an_open_context_carries_the_four_ids_and_none_after_it() -> None:
    with CapturedLog() as captured:
        token = open_context(request_id="req-1")
        log.info("before the organization is known")
        bind_context(organization="org-1", endpoint="default-reply")
        bind_context(delivery_id="dlv-1")
        log.warning("after")
        close_context(token)
        log.info("outside")

    before, after, outside = captured.lines
    assert {key: before[key] for key in CONTEXT_KEYS} == {
        "request_id": "req-1",
        "delivery_id": None,
        "organization": None,
        "endpoint": None,
    }
    assert {key: after[key] for key in CONTEXT_KEYS} == {
        "request_id": "req-1",
        "delivery_id": "dlv-1",
        "organization": "org-1",
        "endpoint": "default-reply",
    }
    assert not set(CONTEXT_KEYS) & set(outside)
    assert current_context() == {}


def test_a_nested_context_gives_back_the_outer_one_with_what_was_bound_in_it() -> None:
    with CapturedLog() as captured, log_context(request_id="outer"):
        bind_context(organization="org-1")
        with log_context(delivery_id="inner"):
            bind_context(endpoint="update-tags")
            log.info("inner")
        log.info("outer again")

    inner, outer = captured.lines
    assert (inner["request_id"], inner["delivery_id"], inner["organization"]) == (
        None,
        "inner",
        None,
    )
    assert inner["endpoint"] == "update-tags"
    assert (outer["request_id"], outer["delivery_id"], outer["organization"]) == (
        "outer",
        None,
        "org-1",
    )
    assert outer["endpoint"] is None


def test_threads_working_at_once_each_log_their_own_ids() -> None:
    both_bound = threading.Barrier(2)

    def work(delivery_id: str) -> None:
        with log_context(delivery_id=delivery_id):
            both_bound.wait(timeout=5)  # the other thread has bound its own id by now
            log.info("working on %s", delivery_id)
            both_bound.wait(timeout=5)

    with CapturedLog() as captured:
        threads = [threading.Thread(target=work, args=(d,)) for d in ("dlv-a", "dlv-b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)

    assert sorted((line["message"], line["delivery_id"]) for line in captured.lines) == [
        ("working on dlv-a", "dlv-a"),
        ("working on dlv-b", "dlv-b"),
    ]


def test_a_record_keeps_the_context_it_was_made_in_when_formatted_later() -> None:
    # pytest's caplog and Sentry format records after the request or delivery has ended.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        with log_context(request_id="req-later"):
            log.warning("made inside")
    finally:
        log.removeHandler(handler)

    (record,) = records
    assert json.loads(JsonFormatter().format(record))["request_id"] == "req-later"


def test_a_library_passing_its_own_context_extra_is_not_disturbed() -> None:
    with CapturedLog() as captured, log_context(request_id="req-1"):
        log.info("from a library", extra={"context": {"its": "own"}})
    (line,) = captured.lines
    assert line["request_id"] == "req-1"
