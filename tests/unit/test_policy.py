"""The retry policy: classification, backoff with full jitter, 429 waits."""

from __future__ import annotations

import email.utils
import random

import pytest

from relay.core import policy
from relay.core.policy import Verdict
from relay.core.reply import Reply


def reply(status: int | None, body: str = "", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, 12.0, headers or {}, None if status else "timeout")


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert policy.classify(reply(status), "default-reply", 0) == Verdict.DELIVERED


@pytest.mark.parametrize("status", [None, 408, 425, 500, 502, 503, 504])
def test_transient_failures_are_retried(status: int | None) -> None:
    assert policy.classify(reply(status), "create-contact", 0) == Verdict.RETRY


def test_429_is_throttled_not_an_attempt() -> None:
    assert policy.classify(reply(429), "create-contact", 0) == Verdict.THROTTLED


@pytest.mark.parametrize("status", [400, 401, 403, 405, 409, 410, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    assert policy.classify(reply(status), "default-reply", 0) == Verdict.PERMANENT


@pytest.mark.parametrize("endpoint", ["update-tags", "contact-status"])
def test_404_on_tags_or_status_is_early_only_within_the_grace(endpoint: str) -> None:
    assert policy.classify(reply(404), endpoint, 5) == Verdict.RETRY
    assert policy.classify(reply(404), endpoint, 10_000) == Verdict.PERMANENT


def test_404_on_create_contact_is_permanent() -> None:
    assert policy.classify(reply(404), "create-contact", 0) == Verdict.PERMANENT


def test_backoff_ceiling_doubles_then_caps() -> None:
    backoff = policy.Backoff(base_seconds=2, cap_seconds=60)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_backoff_has_full_jitter_within_the_ceiling() -> None:
    backoff = policy.Backoff(base_seconds=2, cap_seconds=60)
    rng = random.Random(7)
    delays = [backoff.delay(5, rng) for _ in range(2000)]
    assert min(delays) >= 0 and max(delays) <= 32
    assert min(delays) < 2 and max(delays) > 30  # spread over the whole range
    assert 14 < sum(delays) / len(delays) < 18


def test_default_schedule_spans_about_a_day() -> None:
    from relay.core import defaults

    table = policy.schedule_table(
        defaults.MAX_ATTEMPTS,
        policy.Backoff(defaults.BACKOFF_BASE_SECONDS, defaults.BACKOFF_CAP_SECONDS),
    )
    expected_hours = table[-1][2] / 3600
    assert 20 <= expected_hours <= 28
    assert len(table) == defaults.MAX_ATTEMPTS - 1


def test_retry_after_from_body() -> None:
    body = '{"error": "Rate limit exceeded", "retry_after": 30}'
    assert policy.retry_after_seconds(reply(429, body), 0) == 30


def test_retry_after_header_in_seconds() -> None:
    assert policy.retry_after_seconds(reply(429, "", {"Retry-After": "7"}), 0) == 7


def test_retry_after_header_as_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 90, usegmt=True)
    assert policy.retry_after_seconds(reply(429, "", {"retry-after": header}), now) == 90


def test_retry_after_absent_or_garbage() -> None:
    assert policy.retry_after_seconds(reply(429, "not json"), 0) is None
    assert policy.retry_after_seconds(reply(429, "", {"Retry-After": "soon"}), 0) is None
    assert policy.retry_after_seconds(reply(429, '{"retry_after": true}'), 0) is None
