"""The summary kept of a delivered message: what it keeps, what it drops, and that it reads back."""

from __future__ import annotations

import json

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.policy import Verdict
from relay.core.summary import ROUTING_VALUE_MAX_CHARS, from_summary, summary_json

ORG = "11111111-1111-4111-8111-111111111111"
ANSWER = {"data": {"contact_type": "outreach", "outreach_reason": "New Follower", "id": 7}}


def delivered(answer: object = ANSWER, **payload: object) -> Delivery:
    body = {"username": "john_doe", "manychat_id": "123456", "message_content": "a" * 500}
    delivery = Delivery.new(ORG, "default-reply", body | payload, request_id="req_1")
    delivery.add_attempt(Attempt(delivery.received_at + 1, 503, 20.0, Verdict.RETRY, "down"))
    answer_text = json.dumps(answer) if not isinstance(answer, str) else answer
    delivery.add_attempt(
        Attempt(delivery.received_at + 3, 200, 231.4, Verdict.DELIVERED, answer_text)
    )
    delivery.attempts_used, delivery.replays = 1, 2
    delivery.state, delivery.finished_at = DeliveryState.DELIVERED, delivery.received_at + 3.5
    return delivery


def test_a_summary_reads_back_as_the_delivery_without_its_bodies() -> None:
    original = delivered()
    raw = summary_json(original)

    summary = from_summary(original.id, json.loads(raw))
    assert summary.is_summary and not original.is_summary
    assert (summary.id, summary.org_id, summary.endpoint) == (original.id, ORG, "default-reply")
    assert summary.state == DeliveryState.DELIVERED
    assert summary.received_at == round(original.received_at, 3)
    assert abs(summary.finished_at - original.finished_at) < 0.002  # type: ignore[operator]
    assert (summary.attempt_count, summary.attempts_used, summary.replays) == (2, 1, 2)
    assert summary.payload == {"username": "john_doe", "manychat_id": "123456"}
    (final,) = summary.attempts
    assert (final.status, final.latency_ms, final.outcome) == (200, 231.0, Verdict.DELIVERED)
    answer = {"contact_type": "outreach", "outreach_reason": "New Follower", "id": 7}
    assert json.loads(final.body) == {"status": "success", "data": answer}


def test_a_summary_keeps_no_message_body_and_stays_small() -> None:
    raw = summary_json(delivered())
    assert "aaaa" not in raw and "req_1" not in raw
    assert len(raw) < 240


def test_routing_values_are_cut_and_odd_answers_give_none() -> None:
    long = delivered({"data": {"outreach_message": "m" * 500}})
    kept = json.loads(from_summary(long.id, json.loads(summary_json(long))).attempts[0].body)
    assert kept == {
        "status": "success",
        "data": {"outreach_message": "m" * ROUTING_VALUE_MAX_CHARS},
    }
    for answer in ("not json", [], {"data": "text"}, {"status": "success"}):
        odd = delivered(answer)
        assert from_summary(odd.id, json.loads(summary_json(odd))).attempts[0].body == ""


def test_a_summary_keeps_dmtrackers_message_cut_like_the_routing_values() -> None:
    answer = {"message": "Contact created successfully", "data": {"id": "c-1", "x": "y"}}
    kept = from_summary("d", json.loads(summary_json(delivered(answer)))).attempts[0].body
    assert json.loads(kept) == {
        "status": "success",
        "message": "Contact created successfully",
        "data": {"id": "c-1"},
    }
