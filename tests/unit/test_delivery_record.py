"""The Delivery record: a bounded attempt log, and its JSON form."""

from __future__ import annotations

import json
import re
import time

import pytest

from relay.core import defaults
from relay.core.delivery import STATES, Attempt, Delivery, DeliveryState, new_delivery_id
from relay.core.policy import Verdict
from relay.web.routing import DELIVERY_ID


def test_the_attempt_log_keeps_the_first_and_the_latest_attempts() -> None:
    delivery = Delivery.new("org", "default-reply", {"username": "lead"})
    for second in range(defaults.ATTEMPTS_KEPT + 6):
        delivery.add_attempt(Attempt(at=float(second), status=429, latency_ms=1.0, outcome="x"))

    assert len(delivery.attempts) == defaults.ATTEMPTS_KEPT
    assert (delivery.attempts_omitted, delivery.attempt_count) == (6, defaults.ATTEMPTS_KEPT + 6)
    assert [a.at for a in delivery.attempts[:2]] == [0.0, 7.0]
    assert delivery.attempts[-1].at == defaults.ATTEMPTS_KEPT + 5


def test_states_and_verdicts_keep_the_values_stored_in_redis_and_shown_by_the_apis() -> None:
    assert [str(state) for state in STATES] == ["queued", "retrying", "delivered", "dead", "held"]
    assert [str(verdict) for verdict in Verdict] == ["delivered", "throttled", "retry", "permanent"]


def test_a_state_and_a_verdict_are_stored_as_their_plain_values() -> None:
    delivery = Delivery.new("org", "default-reply", {"username": "lead"})
    delivery.state = DeliveryState.DEAD
    delivery.add_attempt(Attempt(at=1.0, status=400, latency_ms=2.0, outcome=Verdict.PERMANENT))

    stored = json.loads(delivery.to_json())
    assert (stored["state"], stored["attempts"][0]["outcome"]) == ("dead", "permanent")
    loaded = Delivery.from_json(delivery.to_json())
    assert loaded.state == DeliveryState.DEAD
    assert loaded.attempts[0].outcome == Verdict.PERMANENT


def test_delivery_ids_are_short_url_and_rq_safe_and_sort_by_acceptance_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = []
    for millisecond in (0, 1, 61, 62, 1_796_043_430_400, 1_796_043_430_401, 62**7 - 1):
        monkeypatch.setattr(time, "time_ns", lambda ms=millisecond: ms * 1_000_000 + 999_999)
        made.append(new_delivery_id())

    assert all(re.fullmatch(r"dlv_[0-9A-Za-z]{15}", made_id) for made_id in made)
    assert all(re.fullmatch(DELIVERY_ID, made_id) for made_id in made)  # the routes take them
    assert made == sorted(made)
    assert len(set(new_delivery_id() for _ in range(10_000))) == 10_000
