"""HTTP request to the relay → Redis queue → worker → the sandbox received exactly that."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
import requests

from tests.helpers import DEFAULT_REPLY, ORG_A, headers, wait_until


class AcceptedJustNow:
    """Equal to a message_date the relay stamped in the last minute, in DmTracker's format."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str) or not re.fullmatch(
            r"\d{4}-\d\d-\d\dT[\d:]{8}\.\d{3}Z", other
        ):
            return False
        stamped = datetime.fromisoformat(other.replace("Z", "+00:00")).timestamp()
        return 0 <= time.time() - stamped < 60

    def __repr__(self) -> str:
        return "<message_date stamped at acceptance>"


ANY_MESSAGE_DATE = AcceptedJustNow()


CASES = [
    (
        "POST",
        "contact/default-reply",
        DEFAULT_REPLY,
        "POST",
        {
            "manychat_id": "123456",
            "username": "john_doe",
            "message_content": "Sure, send me more details about pricing.",
            "page_name": "Page A",
            "organization_id": ORG_A.id,
            "message_date": ANY_MESSAGE_DATE,
        },
    ),
    (
        "POST",
        "organization/create-contact",
        {
            "username": "@Prospect_User ",
            "had_outreach": True,
            "outreach_reason": "Cold outreach",
            "outreach_text": "Hey! Loved your content.",
            "tags": ["outreach", "q1"],
            "ig_id": "987654321",
        },
        "POST",
        {
            "username": "prospect_user",
            "had_outreach": True,
            "outreach_reason": "Cold outreach",
            "outreach_text": "Hey! Loved your content.",
            "tags": ["outreach", "q1"],
            "ig_id": 987654321,
            "organization_id": ORG_A.id,
        },
    ),
]


def deliver_and_capture(relay_url, sandbox, method, path, body):  # type: ignore[no-untyped-def]
    response = requests.request(
        method, f"{relay_url}/api/v1/{path}", json=body, headers=headers(ORG_A.token), timeout=5
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    return wait_until(lambda: [r for r in sandbox.requests() if r["path"].endswith(path)])


@pytest.mark.parametrize(("method", "path", "body", "sent_method", "expected"), CASES)
def test_request_reaches_dmtracker_exactly(  # type: ignore[no-untyped-def]
    relay_url, sandbox, start_worker, method, path, body, sent_method, expected
) -> None:
    start_worker()
    (received,) = deliver_and_capture(relay_url, sandbox, method, path, body)

    assert received["method"] == sent_method
    assert received["path"] == f"/api/v1/{path}"
    assert received["headers"]["x-org-auth-token"] == ORG_A.token
    assert received["headers"]["content-type"] == "application/json"
    assert received["body"] == expected
    assert received["status"] in (200, 201)


def test_tags_and_status_follow_the_contact(relay_url, sandbox, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker()
    deliver_and_capture(relay_url, sandbox, "POST", "contact/default-reply", DEFAULT_REPLY)
    tags = {"username": "John_Doe", "mode": "add", "tag_names": ["hot-lead"], "tag_color": "red"}
    (tag_request,) = deliver_and_capture(
        relay_url, sandbox, "POST", "contact/update-tags-external", tags
    )
    status = {"manychat_id": 123456, "lead_status": "won", "pipeline_stage": "Closed"}
    (status_request,) = deliver_and_capture(
        relay_url, sandbox, "POST", "contact/contact-status", status
    )

    assert tag_request["method"] == "POST"
    assert tag_request["body"] == {
        "username": "john_doe",
        "mode": "add",
        "tag_names": ["hot-lead"],
        "tag_color": "red",
        "organization_id": ORG_A.id,
    }
    assert tag_request["status"] == 200
    # ManyChat cannot send PATCH; the relay forwards contact-status as PATCH all the same.
    assert status_request["method"] == "PATCH"
    assert status_request["body"] == {
        "manychat_id": "123456",
        "lead_status": "won",
        "pipeline_stage": "Closed",
        "organization_id": ORG_A.id,
    }
    assert status_request["status"] == 200
    (contact,) = sandbox.contacts(ORG_A.id)
    assert contact["lead_status"] == "won"
    assert contact["pipeline_stage"] == "Closed"
    assert "hot-lead" in contact["tags"]


def test_a_late_reply_carries_the_time_it_was_accepted(
    client, store, sandbox, start_worker
) -> None:  # type: ignore[no-untyped-def]
    sent = client.post(
        "/api/v1/contact/default-reply", json=DEFAULT_REPLY, headers=headers(ORG_A.token)
    )
    accepted_at = store.history.load(sent.get_json()["data"]["delivery_id"]).received_at
    time.sleep(1.5)  # DmTracker down, or a backlog: the reply is delivered later
    start_worker()
    (received,) = wait_until(sandbox.requests)

    stamped = datetime.fromisoformat(received["body"]["message_date"].replace("Z", "+00:00"))
    assert abs(stamped.timestamp() - accepted_at) < 0.1
    assert time.time() - stamped.timestamp() >= 1.5


def test_a_given_message_date_is_kept(client, sandbox, start_worker) -> None:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, "message_date": "2026-01-31T14:00:00Z"}
    client.post("/api/v1/contact/default-reply", json=body, headers=headers(ORG_A.token))
    start_worker()
    (received,) = wait_until(sandbox.requests)
    assert received["body"]["message_date"] == "2026-01-31T14:00:00.000Z"
