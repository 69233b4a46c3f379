"""The DmTracker sandbox over real HTTP: the documented rules, rate limit, faults and journal."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from relay.devtools.sandbox import SandboxOrg, SandboxServer, create_sandbox_app, print_request_line

ORG = SandboxOrg("11111111-1111-4111-8111-111111111111", "sandbox-token-one")
OTHER = SandboxOrg("22222222-2222-4222-8222-222222222222", "sandbox-token-two")
SEED = 7
REPLY = "contact/default-reply"
CREATE = "organization/create-contact"
TAGS = "contact/update-tags-external"
STATUS = "contact/contact-status"
REPLY_BODY = {
    "manychat_id": "123456",
    "username": " @John_Doe ",
    "organization_id": ORG.id,
    "message_content": "Sure, send me more details about pricing.",
}
INBOUND = {
    "organization_id": ORG.id,
    "username": "jane",
    "had_outreach": False,
    "last_response_at": "2025-01-12T10:00:00Z",
    "last_message_content": "Hey, I saw your post!",
}
OUTREACH = {
    "organization_id": ORG.id,
    "username": "jane",
    "had_outreach": True,
    "outreach_reason": "Q1 campaign",
    "outreach_text": "Loved your content!",
}
RED, GRAY = "#dc2626", "#374151"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    """Return the clock the sandbox's rate limiter reads."""
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[SandboxServer]:
    """Run one sandbox over real HTTP for the whole module."""
    app = create_sandbox_app([ORG, OTHER], seed=SEED, clock=clock)
    with SandboxServer(app) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_state(server: SandboxServer) -> None:
    """Start every test with no contacts, faults or journal, and the starting config."""
    requests.delete(control(server, "state"), timeout=5).raise_for_status()


def control(server: SandboxServer, path: str) -> str:
    """Return the URL of a control-API resource."""
    return f"{server.url.removesuffix('/api/v1')}/_sandbox/{path}"


def call(
    server: SandboxServer,
    path: str,
    body: Any,
    *,
    method: str = "POST",
    token: str | None = ORG.token,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """Send an API request as ManyChat would, with the org's token unless told otherwise."""
    sent = {"x-org-auth-token": token} if token else {}
    return requests.request(
        method, f"{server.url}/{path}", json=body, headers=sent | (headers or {}), timeout=5
    )


def configure(server: SandboxServer, **options: Any) -> None:
    """Change the sandbox's settings at run time."""
    requests.put(control(server, "config"), json=options, timeout=5).raise_for_status()


def add_fault(server: SandboxServer, **spec: Any) -> None:
    """Queue an injected fault."""
    requests.post(control(server, "faults"), json=spec, timeout=5).raise_for_status()


def contacts(server: SandboxServer, org: SandboxOrg = ORG) -> list[dict[str, Any]]:
    """Return the contacts the sandbox holds for an organization."""
    params = {"organization_id": org.id}
    return list(requests.get(control(server, "contacts"), params=params, timeout=5).json()["data"])


def journal(server: SandboxServer) -> list[dict[str, Any]]:
    """Return every API request the sandbox received."""
    return list(requests.get(control(server, "requests"), timeout=5).json()["data"])


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_missing_or_unknown_token_is_401(server: SandboxServer, token: str | None) -> None:
    response = call(server, REPLY, REPLY_BODY, token=token)

    assert response.status_code == 401
    assert response.json() == {
        "error": "Unauthorized",
        "message": "Missing or invalid x-org-auth-token header.",
    }


def test_organization_id_of_another_org_is_403(server: SandboxServer) -> None:
    response = call(server, REPLY, {**REPLY_BODY, "organization_id": OTHER.id})

    assert response.status_code == 403
    assert response.json()["error"] == "Forbidden"
    assert contacts(server) == [] and contacts(server, OTHER) == []


def test_default_reply_creates_then_updates_an_inbound_contact(server: SandboxServer) -> None:
    first = call(server, REPLY, {**REPLY_BODY, "message_date": "2025-01-12T10:30:00Z"})
    second = call(server, REPLY, {**REPLY_BODY, "message_content": "What does it cost?"})

    assert first.status_code == 200
    assert first.json()["message"] == "Contact processed successfully"
    data = first.json()["data"]
    assert data["username"] == "john_doe"
    assert data["organization_id"] == ORG.id
    assert data["contact_type"] == "inbound"
    assert data["last_response_at"] == "2025-01-12T10:30:00.000Z"
    assert data["outreach_reason"] is None and data["outreach_message"] is None
    assert second.json()["data"]["last_message_content"] == "What does it cost?"
    assert second.json()["data"]["created_at"] == data["created_at"]
    (contact,) = contacts(server)
    assert (contact["manychat_id"], contact["lead_status"], contact["pipeline_stage"]) == (
        "123456",
        "open",
        "open",
    )


def test_default_reply_without_a_real_message_is_outreach(server: SandboxServer) -> None:
    body = {**REPLY_BODY, "message_content": "##{{last_input_text}}", "ig_id": 42}

    data = call(server, REPLY, body).json()["data"]

    assert data["contact_type"] == "outreach"
    assert data["last_message_content"] is None
    assert contacts(server)[0]["ig_id"] == 42


def test_default_reply_accepts_page_name_instead_of_organization_id(server: SandboxServer) -> None:
    body = {**REPLY_BODY, "organization_id": None, "page_name": "Page A"}

    response = call(server, REPLY, body)

    assert response.status_code == 200
    assert response.json()["data"]["organization_id"] == ORG.id


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"manychat_id": None}, 400, "The 'manychat_id' field is required."),
        ({"manychat_id": 123456}, 400, "The 'manychat_id' field must be a string."),
        ({"organization_id": None}, 400, "Either the 'organization_id' or the 'page_name'"),
        ({"username": "john doe!"}, 422, "Invalid username format"),
        ({"message_date": "yesterday"}, 400, "The 'message_date' field must be an ISO 8601"),
    ],
)
def test_default_reply_validation(
    server: SandboxServer, change: dict[str, Any], status: int, message: str
) -> None:
    response = call(server, REPLY, {**REPLY_BODY, **change})

    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert contacts(server) == []


def test_malformed_json_is_400(server: SandboxServer) -> None:
    response = requests.post(
        f"{server.url}/{REPLY}",
        data="{not json",
        headers={"x-org-auth-token": ORG.token, "Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json() == {"error": "Bad Request", "message": "Malformed JSON in request body."}


def test_create_contact_answers_201_then_200(server: SandboxServer) -> None:
    created = call(server, CREATE, {**INBOUND, "tags": ["coaching"], "tag_color": "red"})
    again = call(server, CREATE, INBOUND)

    assert created.status_code == 201
    assert created.json()["message"] == "Contact created successfully"
    data = created.json()["data"]
    assert data["had_outreach"] is False
    assert data["last_message_content"] == "Hey, I saw your post!"
    assert data["contact_ingestion_type"] == "custom-api-import"
    assert data["pipeline_stage"] == "open"
    assert again.status_code == 200
    assert again.json()["message"] == "Contact already exists"
    assert again.json()["data"]["id"] == data["id"]
    assert contacts(server)[0]["tags"] == {"coaching": RED}


def test_inbound_contact_converts_to_outreach_keeping_the_conversation(
    server: SandboxServer,
) -> None:
    call(server, CREATE, INBOUND)

    converted = call(server, CREATE, OUTREACH)

    assert converted.status_code == 200
    assert converted.json()["message"] == "Contact converted to outreach"
    assert converted.json()["data"]["had_outreach"] is True
    assert converted.json()["data"]["last_message_content"] == "Hey, I saw your post!"
    assert contacts(server)[0]["outreach_reason"] == "Q1 campaign"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**OUTREACH, "had_outreach": None}, 400, "The 'had_outreach' field is required."),
        ({**OUTREACH, "had_outreach": "yes"}, 400, "The 'had_outreach' field must be a boolean."),
        (
            {**OUTREACH, "last_message_content": "hi"},
            400,
            "The 'last_message_content' field cannot be set when had_outreach is true.",
        ),
        (
            {**INBOUND, "last_response_at": None},
            400,
            "The 'last_response_at' field is required when had_outreach is false.",
        ),
        ({**OUTREACH, "note": "x" * 1001}, 400, "The 'note' field must be at most 1000"),
        ({**OUTREACH, "email": "not-an-email"}, 400, "The 'email' field must be a valid"),
        ({**OUTREACH, "username": "a" * 31}, 422, "Invalid username format"),
    ],
)
def test_create_contact_validation(
    server: SandboxServer, body: dict[str, Any], status: int, message: str
) -> None:
    response = call(server, CREATE, body)

    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert contacts(server) == []


def test_update_tags_set_add_and_remove(server: SandboxServer) -> None:
    call(server, REPLY, REPLY_BODY)
    tag_call = {"organization_id": ORG.id, "username": "John_Doe"}

    added = call(
        server, TAGS, {**tag_call, "mode": "add", "tag_names": ["hot"], "tag_color": "red"}
    )
    hexed = call(
        server, TAGS, {**tag_call, "mode": "add", "tag_names": ["vip"], "tag_color": "#FF5733"}
    )
    removed = call(server, TAGS, {**tag_call, "mode": "remove", "tag_names": ["hot"]})
    replaced = call(
        server, TAGS, {**tag_call, "mode": "set", "tag_names": ["cold"], "tag_color": "mauve"}
    )

    assert added.json()["message"] == "Tags added successfully"
    assert added.json()["data"]["tags"] == [{"id": 1, "name": "hot", "color": RED}]
    assert [tag["color"] for tag in hexed.json()["data"]["tags"]] == [RED, "#FF5733"]
    assert removed.json()["message"] == "Tags removed successfully"
    assert [tag["name"] for tag in removed.json()["data"]["tags"]] == ["vip"]
    assert replaced.json()["data"]["tags"] == [{"id": 3, "name": "cold", "color": GRAY}]
    assert contacts(server)[0]["tags"] == {"cold": GRAY}


def test_update_tags_errors(server: SandboxServer) -> None:
    call(server, REPLY, REPLY_BODY)
    tag_call = {"organization_id": ORG.id, "username": "john_doe", "tag_names": ["hot"]}

    not_applied = call(server, TAGS, {**tag_call, "mode": "remove"})
    bad_mode = call(server, TAGS, {**tag_call, "mode": "replace"})
    unknown = call(server, TAGS, {**tag_call, "username": "nobody", "mode": "add"})

    assert not_applied.status_code == 400
    assert not_applied.json()["message"] == "Tag 'hot' is not applied to this contact."
    assert bad_mode.status_code == 400
    assert bad_mode.json()["message"] == "The 'mode' field must be one of: set, add, remove."
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "Not Found",
        "message": "No contact found with the specified username.",
    }


def test_contact_status_by_manychat_id(server: SandboxServer) -> None:
    contact_id = call(server, CREATE, {**OUTREACH, "manychat_id": "MC_1"}).json()["data"]["id"]
    status_call = {"organization_id": ORG.id, "manychat_id": "MC_1"}

    won = call(
        server,
        STATUS,
        {**status_call, "lead_status": "won", "pipeline_stage": "Closed"},
        method="PATCH",
    )
    lost = call(
        server,
        STATUS,
        {"organization_id": ORG.id, "contact_id": contact_id, "lead_status_id": 3},
        method="PATCH",
    )

    assert won.status_code == 200
    assert won.json() == {
        "status": "success",
        "data": {
            "id": contact_id,
            "username": "jane",
            "lead_status": "won",
            "pipeline_stage": "Closed",
        },
    }
    assert lost.json()["data"]["lead_status"] == "lost"
    assert lost.json()["data"]["pipeline_stage"] == "Closed"
    assert (contacts(server)[0]["lead_status"], contacts(server)[0]["pipeline_stage"]) == (
        "lost",
        "Closed",
    )


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"manychat_id": "MC_404"}, 404, "No contact found with the specified manychat_id."),
        ({"pipeline_stage": "Negotiation"}, 400, "'Negotiation' is not an active pipeline stage"),
        ({"lead_status": "maybe"}, 400, "The 'lead_status' field must be open, won, lost or"),
        (
            {"lead_status": None, "lead_status_id": 9},
            400,
            "The 'lead_status_id' field must be 1, 2, 3 or 4.",
        ),
        ({"lead_status_id": 2}, 400, "Send lead_status or lead_status_id, not both."),
        ({"lead_status": None}, 400, "Send lead_status, lead_status_id or pipeline_stage."),
        ({"manychat_id": None}, 400, "Either the 'contact_id' or the 'manychat_id' field"),
    ],
)
def test_contact_status_errors(
    server: SandboxServer, change: dict[str, Any], status: int, message: str
) -> None:
    call(server, CREATE, {**OUTREACH, "manychat_id": "MC_1"})
    body = {"organization_id": ORG.id, "manychat_id": "MC_1", "lead_status": "won", **change}

    response = call(server, STATUS, body, method="PATCH")

    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert contacts(server)[0]["lead_status"] == "open"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", REPLY, "POST"), ("POST", STATUS, "PATCH"), ("OPTIONS", CREATE, "POST")],
)
def test_wrong_method_is_405(server: SandboxServer, method: str, path: str, allowed: str) -> None:
    response = call(server, path, {}, method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json() == {
        "error": "Method Not Allowed",
        "message": f"This endpoint only accepts {allowed} requests.",
    }


def test_create_contact_is_limited_per_org_over_a_sliding_minute(
    server: SandboxServer, clock: FakeClock
) -> None:
    configure(server, create_contact_limit_per_minute=3)

    def create(at: float, username: str, org: SandboxOrg = ORG) -> requests.Response:
        clock.now = at
        body = {**OUTREACH, "organization_id": org.id, "username": username}
        return call(server, CREATE, body, token=org.token)

    accepted = [create(at, f"lead_{at:.0f}").status_code for at in (1000, 1010, 1020)]
    refused = create(1030, "lead_x")
    refused_again = create(1035, "lead_y")
    other_org = create(1035, "lead_z", OTHER)
    after_first_expired = create(1060, "lead_1060")
    full_again = create(1061, "lead_1061")

    assert accepted == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Rate limit exceeded",
        "message": "You have exceeded the maximum of 3 requests per minute. "
        "Please wait before retrying.",
        "retry_after": 30,
    }
    # Refused calls do not count, so the window still frees at 1060.
    assert refused_again.json()["retry_after"] == 25
    assert other_org.status_code == 201
    assert after_first_expired.status_code == 201
    assert full_again.json()["retry_after"] == 9  # the call at 1010 expires at 1070
    assert call(server, REPLY, REPLY_BODY).status_code == 200  # only create-contact is limited


def test_queued_faults_apply_in_order_before_auth(server: SandboxServer) -> None:
    throttled = {"error": "Rate limit exceeded", "retry_after": 2}
    add_fault(
        server, endpoint=REPLY, status=429, count=2, body=throttled, headers={"Retry-After": "2"}
    )
    add_fault(server, endpoint="*", status=500)

    unauthenticated = call(server, REPLY, REPLY_BODY, token="not-a-token")
    authenticated = call(server, REPLY, REPLY_BODY)
    other_endpoint = call(server, CREATE, OUTREACH)
    through = call(server, REPLY, REPLY_BODY)

    for response in (unauthenticated, authenticated):
        assert (response.status_code, response.json()) == (429, throttled)
        assert response.headers["Retry-After"] == "2"
    assert other_endpoint.status_code == 500
    assert other_endpoint.json() == {
        "error": "Internal Server Error",
        "message": "Injected by the sandbox.",
    }
    assert through.status_code == 200
    assert [contact["username"] for contact in contacts(server)] == ["john_doe"]
    assert [entry["status"] for entry in journal(server)] == [429, 429, 500, 200]


def test_fault_until_cleared_with_its_own_latency(server: SandboxServer) -> None:
    add_fault(server, endpoint=f"/api/v1/{CREATE}", status=503, count=-1, latency_ms=150)

    started = time.monotonic()
    statuses = [call(server, CREATE, OUTREACH).status_code for _ in range(3)]
    elapsed = time.monotonic() - started
    requests.delete(control(server, "faults"), timeout=5).raise_for_status()

    assert statuses == [503, 503, 503]
    assert elapsed >= 0.45
    assert call(server, CREATE, OUTREACH).status_code == 201


def test_fault_rate_is_deterministic_with_a_seed(server: SandboxServer) -> None:
    draws = random.Random(SEED)
    expected = [503 if draws.random() < 0.5 else 200 for _ in range(20)]

    def run() -> list[requests.Response]:
        configure(server, fault_rate=0.5)
        return [call(server, REPLY, {**REPLY_BODY, "username": f"u{i}"}) for i in range(20)]

    first = run()
    requests.delete(control(server, "state"), timeout=5).raise_for_status()
    second = run()

    assert [response.status_code for response in first] == expected
    assert [response.status_code for response in second] == expected
    assert 0 < expected.count(503) < 20
    failed = next(response for response in first if response.status_code == 503)
    assert failed.json() == {
        "error": "Service Unavailable",
        "message": "Database infrastructure error, try again later.",
    }
    assert len(contacts(server)) == expected.count(200)  # a fault changes nothing


def test_latency_does_not_serialize_requests(server: SandboxServer) -> None:
    configure(server, latency_ms=200)
    bodies = [{**REPLY_BODY, "username": f"parallel_{i}"} for i in range(10)]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda body: call(server, REPLY, body).status_code, bodies))
    elapsed = time.monotonic() - started

    assert statuses == [200] * 10
    assert 0.2 <= elapsed < 1.0
    assert len(contacts(server)) == 10


def test_journal_records_every_api_request_as_it_arrived(server: SandboxServer) -> None:
    before = time.time()
    call(server, REPLY, REPLY_BODY, headers={"Idempotency-Key": "key-1", "X-Other": "dropped"})
    requests.post(f"{server.url}/{TAGS}", data="not json", timeout=5)
    contacts(server)  # control calls are not journaled

    first, second = journal(server)

    assert first["seq"] == 1 and second["seq"] == 2
    assert before <= first["at"] <= second["at"] <= time.time()
    assert first["method"] == "POST"
    assert first["path"] == "/api/v1/contact/default-reply"
    assert first["headers"] == {
        "x-org-auth-token": ORG.token,
        "content-type": "application/json",
        "idempotency-key": "key-1",
    }
    assert first["body"] == REPLY_BODY
    assert first["status"] == 200
    assert (second["body"], second["headers"], second["status"]) == ("not json", {}, 401)
    requests.delete(control(server, "requests"), timeout=5).raise_for_status()
    assert journal(server) == []
    assert len(contacts(server)) == 1  # clearing the journal keeps the contacts


def test_config_rejects_unknown_or_out_of_range_settings(server: SandboxServer) -> None:
    unknown = requests.put(control(server, "config"), json={"speed": 1}, timeout=5)
    out_of_range = requests.put(control(server, "config"), json={"fault_rate": 2}, timeout=5)

    assert (unknown.status_code, unknown.json()["message"]) == (400, "Unknown setting 'speed'.")
    assert out_of_range.status_code == 400
    assert (
        out_of_range.json()["message"] == "The 'fault_rate' setting must be a number from 0 to 1."
    )


def test_request_log_line_leaves_out_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_sandbox_app([ORG])
    app.after_request(print_request_line)

    app.test_client().post(
        f"/api/v1/{REPLY}", json=REPLY_BODY, headers={"x-org-auth-token": ORG.token}
    )

    assert capsys.readouterr().out == "POST /api/v1/contact/default-reply 200\n"
