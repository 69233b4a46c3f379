"""The record Redis keeps of a delivery on its way: short keys, nothing stored twice, and the
same Delivery back from it."""

from __future__ import annotations

import json

import pytest

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.policy import Verdict
from relay.core.record import decode_record, reception_timestamp, record_json
from relay.core.summary import summary_json
from relay.core.times import iso_time

ORG = "0b5a2a3e-8f0c-4f5e-9b7a-2d1c3e4f5a6b"
PAYLOAD = {
    "username": "lead_m0",
    "manychat_id": "5000000",
    "message_content": "Reply 0: how much is the coaching?",
    "organization_id": ORG,
    "message_date": "2026-11-30T12:57:10.400Z",
}


def queued(payload: dict[str, object] = PAYLOAD) -> Delivery:
    delivery = Delivery.new(ORG, "default-reply", dict(payload), request_id="req_0123456789abcdef")
    delivery.contact_keys = ["u:lead_m0"]
    delivery.received_at = 1796043430.401  # kept to the millisecond (see the last test)
    return delivery


def dead() -> Delivery:
    delivery = queued()
    delivery.idempotency_key = "mc-evt-1"
    delivery.state = DeliveryState.DEAD
    delivery.add_attempt(Attempt(delivery.received_at + 1, 503, 20.5, Verdict.RETRY, "down"))
    delivery.add_attempt(Attempt(delivery.received_at + 9, 422, 9.0, Verdict.PERMANENT, "{}"))
    delivery.attempts_used, delivery.replays, delivery.holds_rate_slot = 2, 1, True
    delivery.reason, delivery.finished_at = "DmTracker refused it (422)", delivery.received_at + 9
    delivery.next_attempt_at = delivery.throttled_since = delivery.received_at + 5
    delivery.attempts_omitted = 3
    return delivery


@pytest.mark.parametrize("made", [queued, dead], ids=["queued", "every field set"])
def test_a_record_gives_the_same_delivery_back(made) -> None:  # type: ignore[no-untyped-def]
    delivery = made()

    loaded = decode_record(delivery.id, record_json(delivery))

    assert loaded == delivery
    assert json.dumps(loaded.payload) == json.dumps(delivery.payload)  # in the same order too


def test_a_queued_record_holds_short_keys_and_neither_its_id_nor_its_organization_twice() -> None:
    delivery = queued()

    raw = record_json(delivery)

    assert raw.startswith('{"v":2,')
    assert delivery.id not in raw
    assert raw.count(ORG) == 1
    assert set(json.loads(raw)) == {"v", "o", "e", "b", "r", "q", "x"}  # no "k": see below
    assert len(raw) < len(delivery.to_json()) - 100


@pytest.mark.parametrize(
    ("chains", "stored"),
    [
        (["u:lead_m0"], False),  # the username's chain, which accept.lua always joins
        (["u:lead_m0", "m:5000000"], True),
        (["m:5000000"], True),
    ],
)
def test_a_record_names_its_chains_unless_only_its_usernames(chains, stored) -> None:  # type: ignore[no-untyped-def]
    delivery = queued()
    delivery.contact_keys = chains

    raw = record_json(delivery)

    assert ("k" in json.loads(raw)) is stored
    assert decode_record(delivery.id, raw).contact_keys == chains


@pytest.mark.parametrize("position", range(len(PAYLOAD)))
def test_the_organization_id_goes_back_where_it_was(position: int) -> None:
    others = [item for item in PAYLOAD.items() if item[0] != "organization_id"]
    payload = dict([*others[:position], ("organization_id", ORG), *others[position:]])
    delivery = queued(payload)

    loaded = decode_record(delivery.id, record_json(delivery))

    assert list(loaded.payload.items()) == list(payload.items())


@pytest.mark.parametrize("position", range(len(PAYLOAD)))
def test_a_message_date_that_is_the_reception_time_goes_back_where_it_was(position: int) -> None:
    delivery = queued()
    stamp = reception_timestamp(delivery.received_at)
    assert stamp == "2026-11-30T12:57:10.401Z"
    others = [item for item in PAYLOAD.items() if item[0] != "message_date"]
    payload = dict([*others[:position], ("message_date", stamp), *others[position:]])
    delivery.payload = payload

    raw = record_json(delivery)

    assert stamp not in raw and json.loads(raw)["n"] == position
    assert list(decode_record(delivery.id, raw).payload.items()) == list(payload.items())


def test_a_message_date_the_sender_gave_is_kept_as_it_is() -> None:
    delivery = queued()  # PAYLOAD's date is not the reception time

    raw = record_json(delivery)

    assert "n" not in json.loads(raw) and PAYLOAD["message_date"] in raw
    assert decode_record(delivery.id, raw).payload == PAYLOAD


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "lead_m0"},
        {"username": "lead_m0", "organization_id": "another-organization"},
        {"organization_id": None},
    ],
    ids=["without one", "another one", "null"],
)
def test_a_payload_without_the_organizations_id_is_stored_as_it_is(payload) -> None:  # type: ignore[no-untyped-def]
    delivery = queued(payload)

    raw = record_json(delivery)

    assert json.loads(raw)["b"] == payload and "x" not in json.loads(raw)
    assert decode_record(delivery.id, raw).payload == payload


def test_a_summary_still_loads_as_one() -> None:
    delivery = queued()
    delivery.state, delivery.finished_at = DeliveryState.DELIVERED, delivery.received_at + 1

    loaded = decode_record(delivery.id, summary_json(delivery))

    assert loaded.is_summary and loaded.id == delivery.id
    assert loaded.state == DeliveryState.DELIVERED


@pytest.mark.parametrize(
    "received",
    [1796043430.4010675, 1796043430.4999996, 1796043430.9999999, 1796043430.401, 1.0015, 0.0],
)
def test_the_reception_time_is_kept_to_the_millisecond_it_is_shown_and_filtered_by(
    received: float,
) -> None:
    delivery = queued()
    delivery.received_at = received

    loaded = decode_record(delivery.id, record_json(delivery))

    assert iso_time(loaded.received_at) == iso_time(received)
    assert loaded.received_at == round(loaded.received_at, 3) <= received + 0.0000005
    assert len(repr(loaded.received_at)) <= len("1796043430.401")
    assert decode_record(delivery.id, record_json(loaded)).received_at == loaded.received_at
