"""The retry policy with plain values: a Reply in, the decision out; no Redis, no HTTP."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.config import default_of
from relay.core import defaults, policy
from relay.core.endpoints import ENDPOINTS
from relay.core.policy import Verdict
from relay.core.reply import Reply

GRACE = defaults.NOT_FOUND_GRACE_SECONDS
CAP = default_of("max_retry_after_seconds")  # the settings' default: an hour
NOW = 1_700_000_000.0
EARLY_404_ENDPOINTS = ("update-tags", "contact-status")
OTHER_ENDPOINTS = ("default-reply", "create-contact")


def reply(status: int | None, body: str = "", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, 12.0, headers or {}, None if status else "timeout")


def http_date(epoch: float, zone: str = "GMT") -> str:
    """Format an epoch time as an HTTP date in the given zone suffix."""
    return email.utils.formatdate(epoch, usegmt=True).replace("GMT", zone)


def rows(
    statuses: tuple[int | None, ...], endpoints: tuple[str, ...], ages: tuple[float, ...]
) -> list[tuple[int | None, str, float]]:
    """Return every (status, endpoint, age) combination."""
    return [(s, e, a) for s in statuses for e in endpoints for a in ages]


# -- classify: every rule, on every endpoint, young and old ------------------------------------
ANY_AGE = (0.0, GRACE - 1, GRACE, 10 * GRACE)
Rule = tuple[str, tuple[int | None, ...], tuple[str, ...], tuple[float, ...], Verdict]
CLASSIFY_RULES: list[Rule] = [
    ("2xx is delivered", (200, 201, 202, 204, 299), tuple(ENDPOINTS), ANY_AGE, Verdict.DELIVERED),
    ("429 is throttled", (429,), tuple(ENDPOINTS), ANY_AGE, Verdict.THROTTLED),
    (
        "unreachable and transient statuses are retried",
        (None, 408, 425, 500, 502, 503, 504),
        tuple(ENDPOINTS),
        ANY_AGE,
        Verdict.RETRY,
    ),
    (
        "every other 4xx, 3xx and non-transient 5xx is permanent",
        (300, 301, 400, 401, 403, 405, 409, 410, 413, 415, 422, 451, 501, 505),
        tuple(ENDPOINTS),
        ANY_AGE,
        Verdict.PERMANENT,
    ),
    (
        "404 on tags or status within the grace: not created yet, retried",
        (404,),
        EARLY_404_ENDPOINTS,
        (0.0, 1.0, GRACE - 0.001),
        Verdict.RETRY,
    ),
    (
        "404 on tags or status from the grace on: permanent",
        (404,),
        EARLY_404_ENDPOINTS,
        (GRACE, GRACE + 0.001, 10 * GRACE),
        Verdict.PERMANENT,
    ),
    (
        "404 on a reply or a contact is permanent at once",
        (404,),
        OTHER_ENDPOINTS,
        (0.0, GRACE - 1, GRACE),
        Verdict.PERMANENT,
    ),
]
CLASSIFY_CASES = [
    pytest.param(status, endpoint, age, verdict, id=f"{rule}: {status} {endpoint} age={age:g}")
    for rule, statuses, endpoints, ages, verdict in CLASSIFY_RULES
    for status, endpoint, age in rows(statuses, endpoints, ages)
]


@pytest.mark.parametrize(("status", "endpoint", "age", "expected"), CLASSIFY_CASES)
def test_classify(status: int | None, endpoint: str, age: float, expected: Verdict) -> None:
    assert policy.classify(reply(status), endpoint, age) is expected


def test_the_tables_cover_every_endpoint_and_every_transient_status() -> None:
    assert set(EARLY_404_ENDPOINTS) | set(OTHER_ENDPOINTS) == set(ENDPOINTS)
    assert set(EARLY_404_ENDPOINTS) == policy.NOT_FOUND_MAY_BE_EARLY
    assert {case.values[0] for case in CLASSIFY_CASES} >= policy.TRANSIENT_STATUSES


def test_the_reply_body_never_changes_the_verdict() -> None:
    for status in (200, 400, 429, 503):
        plain = policy.classify(reply(status), "create-contact", 0)
        assert policy.classify(reply(status, '{"status": "success"}'), "create-contact", 0) is plain
        assert policy.classify(reply(status, '{"error": "x"}'), "create-contact", 0) is plain


# -- retry_after_seconds: body first, then the header, anything odd ignored --------------------
RETRY_AFTER_CASES: list[tuple[str, str, dict[str, str], float | None]] = [
    ("body whole seconds", '{"retry_after": 30}', {}, 30.0),
    ("body fractional seconds", '{"retry_after": 2.5}', {}, 2.5),
    ("body zero", '{"retry_after": 0}', {}, 0.0),
    ("DmTracker's 429 body", '{"error": "Rate limit exceeded", "retry_after": 42}', {}, 42.0),
    ("body wins over the header", '{"retry_after": 30}', {"Retry-After": "7"}, 30.0),
    ("negative body: the header", '{"retry_after": -5}', {"Retry-After": "7"}, 7.0),
    ("boolean body: the header", '{"retry_after": true}', {"Retry-After": "7"}, 7.0),
    ("boolean body, no header", '{"retry_after": true}', {}, None),
    ("text body value: the header", '{"retry_after": "30"}', {"Retry-After": "7"}, 7.0),
    ("null body value: the header", '{"retry_after": null}', {"Retry-After": "7"}, 7.0),
    ("infinite body: the header", '{"retry_after": Infinity}', {"Retry-After": "7"}, 7.0),
    ("NaN body: the header", '{"retry_after": NaN}', {"Retry-After": "7"}, 7.0),
    ("integer too big for a float", '{"retry_after": 1' + "0" * 400 + "}", {}, None),
    ("body is a list: the header", "[30]", {"Retry-After": "7"}, 7.0),
    ("body is not JSON: the header", "Too Many Requests", {"Retry-After": "7"}, 7.0),
    ("body is not JSON, no header", "Too Many Requests", {}, None),
    ("no body, no header", "", {}, None),
    ("header seconds", "", {"Retry-After": "7"}, 7.0),
    ("header zero", "", {"Retry-After": "0"}, 0.0),
    ("header with spaces", "", {"Retry-After": " 120 "}, 120.0),
    ("header name in lower case", "", {"retry-after": "7"}, 7.0),
    ("header name in upper case", "", {"RETRY-AFTER": "7"}, 7.0),
    ("header empty", "", {"Retry-After": ""}, None),
    ("header negative", "", {"Retry-After": "-5"}, None),
    ("header fractional (not delay-seconds)", "", {"Retry-After": "1.5"}, None),
    ("header in words", "", {"Retry-After": "soon"}, None),
    ("header with a non-ASCII digit", "", {"Retry-After": "\u00b2"}, None),
    ("header too long for a float", "", {"Retry-After": "9" * 400}, None),
    ("header HTTP date 90 s ahead", "", {"Retry-After": http_date(NOW + 90)}, 90.0),
    ("header HTTP date in the past", "", {"Retry-After": http_date(NOW - 90)}, 0.0),
    ("header HTTP date in -0000 (UTC)", "", {"Retry-After": http_date(NOW + 60, "-0000")}, 60.0),
    ("header HTTP date in +0100", "", {"Retry-After": http_date(NOW + 3660, "+0100")}, 60.0),
    ("body just under the cap", '{"retry_after": 3599}', {}, 3599.0),
    ("body of 1e12 s: capped at an hour", '{"retry_after": 1e12}', {}, 3600.0),
    ("header of 99999999999 s: capped", "", {"Retry-After": "99999999999"}, 3600.0),
    (
        "header date in year 9999: capped",
        "",
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        3600.0,
    ),
    (
        "header date past year 9999: no hint",
        "",
        {"Retry-After": "Sat, 01 Jan 10000 00:00:00 GMT"},
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [pytest.param(body, headers, wait, id=case) for case, body, headers, wait in RETRY_AFTER_CASES],
)
def test_retry_after_seconds(body: str, headers: dict[str, str], expected: float | None) -> None:
    assert policy.retry_after_seconds(reply(429, body, headers), NOW, CAP) == expected


def test_retry_after_is_capped_at_the_configured_longest_wait() -> None:
    throttled = reply(429, '{"retry_after": 600}')
    assert policy.retry_after_seconds(throttled, NOW, cap_seconds=60) == 60.0
    assert policy.retry_after_seconds(throttled, NOW, cap_seconds=6000) == 600.0


def test_an_http_date_in_minus_0000_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # the row above passes by luck on a UTC box
    time.tzset()
    try:
        header = {"Retry-After": http_date(NOW + 60, "-0000")}
        assert policy.retry_after_seconds(reply(429, "", header), NOW, CAP) == 60.0
    finally:
        monkeypatch.undo()
        time.tzset()


# -- backoff ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base", "cap", "ceilings"),
    [
        (2, 60, [2, 4, 8, 16, 32, 60, 60]),
        (0.05, 0.2, [0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2]),
        (1, 1, [1, 1, 1, 1, 1, 1, 1]),
    ],
)
def test_backoff_ceiling_doubles_then_caps(base: float, cap: float, ceilings: list[Any]) -> None:
    backoff = policy.Backoff(base_seconds=base, cap_seconds=cap)
    assert [backoff.ceiling(n) for n in range(1, 8)] == ceilings


def test_backoff_has_full_jitter_within_the_ceiling() -> None:
    backoff = policy.Backoff(base_seconds=2, cap_seconds=60)
    rng = random.Random(7)
    delays = [backoff.delay(5, rng) for _ in range(2000)]
    assert min(delays) >= 0 and max(delays) <= 32
    assert min(delays) < 2 and max(delays) > 30  # spread over the whole range
    assert 14 < sum(delays) / len(delays) < 18


def test_default_schedule_spans_about_a_day() -> None:
    table = policy.schedule_table(
        default_of("max_attempts"),
        policy.Backoff(default_of("backoff_base_seconds"), default_of("backoff_cap_seconds")),
    )
    expected_hours = table[-1][2] / 3600
    assert 20 <= expected_hours <= 28
    assert len(table) == default_of("max_attempts") - 1


# -- Retry-After overflow: whatever DmTracker sends, the policy answers and never raises -------
@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ("", {"Retry-After": "99999999999"}, CAP),  # capped
        ("", {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, CAP),
        ("", {"Retry-After": "Mon, 01 Jan 99999 00:00:00 GMT"}, None),
        ("", {"Retry-After": "\N{ARABIC-INDIC DIGIT ONE}"}, None),
        ("[" * 50_000, {"Retry-After": "7"}, 7.0),  # deeper than json's recursion limit
    ],
    ids=["eleven-digit-seconds", "year-9999", "year-99999", "arabic-digit", "deep-body"],
)
def test_retry_after_extremes(body: str, headers: dict[str, str], expected: float | None) -> None:
    assert policy.retry_after_seconds(reply(429, body, headers), NOW, CAP) == expected


@settings(max_examples=300, deadline=None)
@given(
    header=st.one_of(st.text(), st.from_regex(r"[0-9]{1,400}", fullmatch=True)),
    body=st.one_of(st.text(), st.builds(lambda n: f'{{"retry_after": {n}}}', st.integers())),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_retry_after_never_raises(header: str, body: str, now: float) -> None:
    wait = policy.retry_after_seconds(reply(429, body, {"Retry-After": header}), now, CAP)

    assert wait is None or 0 <= wait < float("inf")
