"""Where a request ends, as the buffering worker decides before a thread sees it."""

from __future__ import annotations

import pytest

from relay.web.framing import MAX_HEAD_BYTES, RequestFraming, read_chunks

HEAD = b"POST /x HTTP/1.1\r\nHost: h\r\n"


def framing(data: bytes, limit: int = 100) -> RequestFraming:
    found = RequestFraming(limit)
    found.feed(data)
    return found


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (HEAD, False),
        (HEAD + b"\r\n", True),  # no body
        (HEAD + b"Content-Length: 5\r\n\r\nabc", False),
        (HEAD + b"Content-Length: 5\r\n\r\nabcde", True),
        (HEAD + b"content-length:5\r\n\r\nabcde", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", True),
        # Malformed: whole, so gunicorn's parser answers 400 at once.
        (HEAD + b"Content-Length: x\r\n\r\n", True),
        (HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n", True),
    ],
)
def test_a_request_is_whole_once_its_framing_says_so(data: bytes, whole: bool) -> None:
    assert framing(data).complete() is whole


def test_a_content_length_over_the_limit_is_whole_at_once_and_oversized() -> None:
    found = framing(HEAD + b"Content-Length: 101\r\n\r\n")
    assert found.complete() and found.oversized


def test_chunks_past_the_limit_are_oversized_counting_data_not_framing() -> None:
    chunks = b"".join(b"1\r\na\r\n" for _ in range(100))  # 100 data bytes in 600 bytes
    assert not framing(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks).complete()
    found = framing(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"1\r\nb")
    assert found.complete() and found.oversized


def test_headers_that_never_end_are_handed_over_past_the_bound() -> None:
    assert framing(HEAD + b"X: " + b"a" * MAX_HEAD_BYTES).complete()


def test_100_continue_is_wanted_once_before_the_body() -> None:
    found = framing(HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert found.wants_continue()
    assert not found.wants_continue()
    assert not framing(
        HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\na"
    ).wants_continue()


def test_read_chunks_counts_partial_data() -> None:
    assert read_chunks(b"5\r\nab") == (False, 2)
