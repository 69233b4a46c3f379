"""Answers a flow can map: DmTracker's HTTP status in `relay`, and a duplicate's first answer."""

from __future__ import annotations

from typing import Any

import redis

from relay.storage.keys import Keys
from relay.web.app import create_app
from tests.helpers import ORG_A, headers, with_settings

CONTACT_URL = "/api/v1/organization/create-contact"
OUTREACH = {
    "username": "new_lead",
    "had_outreach": True,
    "outreach_reason": "Giveaway",
    "outreach_text": "Hi!",
}


def waiting_client(settings: Any, redis_conn: redis.Redis, start_worker: Any) -> Any:
    """Return a client of an app that waits for create-contact's answer, with a worker."""
    own = with_settings(settings, answer_wait_seconds={"create-contact": 5.0})
    start_worker(own)
    return create_app(own, redis_conn).test_client()


def test_relay_status_tells_a_new_contact_from_a_known_one(
    settings: Any, redis_conn: redis.Redis, sandbox: Any, start_worker: Any
) -> None:
    client = waiting_client(settings, redis_conn, start_worker)

    created = client.post(CONTACT_URL, json=OUTREACH, headers=headers(ORG_A.token)).get_json()
    changed = {**OUTREACH, "outreach_text": "Hi again!"}
    known = client.post(CONTACT_URL, json=changed, headers=headers(ORG_A.token)).get_json()

    assert (created["relay"]["state"], created["relay"]["status"]) == ("delivered", 201)
    assert created["message"] == "Contact created successfully"
    assert (known["relay"]["state"], known["relay"]["status"]) == ("delivered", 200)


def test_a_duplicate_gets_the_first_answer_after_its_published_answer_lapsed(
    settings: Any, redis_conn: redis.Redis, sandbox: Any, start_worker: Any
) -> None:
    client = waiting_client(settings, redis_conn, start_worker)
    first = client.post(CONTACT_URL, json=OUTREACH, headers=headers(ORG_A.token)).get_json()
    assert first["relay"]["state"] == "delivered", first
    # The published answer lives 15 s; past that only the delivered summary is left.
    redis_conn.delete(Keys("dmrelay").answer(first["relay"]["delivery_id"]))

    repeat = client.post(CONTACT_URL, json=OUTREACH, headers=headers(ORG_A.token)).get_json()

    assert repeat["relay"] == {**first["relay"], "duplicate": True}
    assert repeat["message"] == first["message"]
    assert repeat["data"]["id"] == first["data"]["id"]
    assert repeat["data"]["pipeline_stage"] == first["data"]["pipeline_stage"]
    assert len(sandbox.requests()) == 1
