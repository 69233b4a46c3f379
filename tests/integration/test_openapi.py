"""The OpenAPI description: valid 3.1, exactly the app's routes, true to real answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from relay.core.delivery import DeliveryState
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.apidoc import operations
from relay.web.apidoc.spec import build_spec, coverage_gaps, spec_operations
from relay.web.dashboard.views import CSP
from tests.helpers import DEFAULT_REPLY, ORG_A, SECRET, Sandbox, headers, wait_until

ADMIN = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.ADMIN], 600)}"}


def described(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return dict(response.get_json())


def test_the_description_is_valid_openapi_3_1(client: FlaskClient) -> None:
    spec = described(client)

    validate(spec)  # openapi-spec-validator, choosing 3.1 by the document's own version
    assert spec["openapi"] == "3.1.0"


def test_every_route_is_described_and_every_description_has_a_route(
    app: Flask, client: FlaskClient
) -> None:
    assert coverage_gaps(app, described(client)) == []


def test_the_description_covers_each_surface(client: FlaskClient) -> None:
    paths = {path for path, _ in spec_operations(described(client))}

    for expected in (
        "/api/v1/contact/default-reply",
        "/api/v1/organization/create-contact",
        "/api/v1/contact/update-tags-external",
        "/api/v1/contact/contact-status",
        "/api/v1/manychat/{action}",
        "/api/v1/deliveries/{delivery_id}",
        "/api/v1/admin/dead-letters/purge",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ):
        assert expected in paths
    assert not any(path.startswith("/dashboard") for path in paths)


def test_a_route_added_without_a_description_is_named(app: Flask) -> None:
    app.add_url_rule(
        "/api/v1/contact/<int:contact>/notes", "notes.add", lambda contact: "", methods=["POST"]
    )

    assert coverage_gaps(app, build_spec(app)) == [
        "POST /api/v1/contact/{contact}/notes (notes.add) is not described: "
        "add OPERATIONS['notes.add']"
    ]


def test_a_description_without_a_route_is_named(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = build_spec(app)
    stale["paths"]["/api/v1/gone"] = {"get": {"responses": {}}}
    monkeypatch.setitem(operations.OPERATIONS, "ingest.gone", operations.OPERATIONS["ops.healthz"])

    assert coverage_gaps(app, stale) == [
        "GET /api/v1/gone is described but no route serves it",
        "OPERATIONS['ingest.gone'] names no route",
    ]


def test_contact_status_is_described_for_each_method_manychat_can_send(
    client: FlaskClient,
) -> None:
    item = described(client)["paths"]["/api/v1/contact/contact-status"]

    assert sorted(m for m in item if m != "parameters") == ["patch", "post", "put"]
    assert len({item[m]["operationId"] for m in ("patch", "post", "put")}) == 3


def test_ingest_bodies_are_described_from_their_marshmallow_schemas(client: FlaskClient) -> None:
    schemas = described(client)["components"]["schemas"]

    create = schemas["CreateContact"]
    assert set(create["required"]) == {"username", "had_outreach"}
    assert create["properties"]["email"]["format"] == "email"
    assert create["properties"]["note"]["maxLength"] == 1000  # DmTracker's one length limit
    assert create["properties"]["tags"]["items"] == {"type": "string"}
    assert create["additionalProperties"] is True  # unknown fields are forwarded
    assert schemas["UpdateTags"]["properties"]["mode"]["enum"] == ["set", "add", "remove"]


def test_admin_resources_are_described_in_camel_case(client: FlaskClient) -> None:
    schemas = described(client)["components"]["schemas"]

    for name in ("DeliveryResource", "AttemptResource", "Overview", "Totals", "PageMeta"):
        for field in schemas[name]["properties"]:
            assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", field), (name, field)
    assert schemas["DeliveryResource"]["properties"]["receivedAt"]["format"] == "date-time"


# -- real answers against the description -------------------------------------------------
Validate = Callable[[str, str, Any], None]


@pytest.fixture
def conforms(client: FlaskClient) -> Validate:
    """Return a check that an answer is exactly what the description says of it."""
    schema = schemathesis.openapi.from_dict(described(client))

    def check(path: str, method: str, response: Any) -> None:
        schema[path][method].validate_response(response)

    return check


def test_real_answers_conform(
    client: FlaskClient,
    store: Store,
    sandbox: Sandbox,
    start_worker: Callable[..., Any],
    conforms: Validate,
) -> None:
    start_worker()
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1, body={"error": "bad"})
    dead = send(client, "1")
    wait_until(lambda: state_of(store, dead) == DeliveryState.DEAD)
    delivered = send(client, "2")
    wait_until(lambda: state_of(store, delivered) == DeliveryState.DELIVERED)

    answers = [
        ("/api/v1/admin/overview", "GET", client.get("/api/v1/admin/overview", headers=ADMIN)),
        ("/api/v1/admin/deliveries", "GET", client.get("/api/v1/admin/deliveries", headers=ADMIN)),
        (
            "/api/v1/admin/dead-letters/{delivery_id}",
            "GET",
            client.get(f"/api/v1/admin/dead-letters/{dead}", headers=ADMIN),
        ),
        (
            "/api/v1/deliveries/{delivery_id}",
            "GET",
            client.get(f"/api/v1/deliveries/{dead}", headers=headers(ORG_A.token)),
        ),
        (
            "/api/v1/admin/dead-letters/replay",
            "POST",
            client.post("/api/v1/admin/dead-letters/replay", json={}, headers=ADMIN),
        ),
        (
            "/api/v1/admin/deliveries/{delivery_id}",
            "GET",
            client.get("/api/v1/admin/deliveries/dlv_missing", headers=ADMIN),
        ),
    ]

    waited = client.post(
        "/api/v1/contact/default-reply?wait=5",
        json={**DEFAULT_REPLY, "manychat_id": "3"},
        headers=headers(ORG_A.token),
    )
    full_contact = client.post(
        "/api/v1/manychat/default-reply",
        json={"contact": {"id": 4, "ig_username": "jane", "last_input_text": "Hi"}},
        headers=headers(ORG_A.token),
    )
    answers += [
        ("/api/v1/contact/default-reply", "POST", waited),
        ("/api/v1/manychat/{action}", "POST", full_contact),
    ]
    for path, method, response in answers:
        conforms(path, method, response)
    assert waited.get_json()["relay"]["state"] == "delivered"  # DmTracker's own answer
    assert full_contact.get_json()["status"] == "queued"
    listed = answers[1][2].get_json()["data"]
    assert {d["id"] for d in listed} == {dead, delivered}
    assert answers[2][2].get_json()["data"]["attempts"][0]["httpStatus"] == 400
    assert answers[5][2].status_code == 404  # the unknown delivery


def send(client: FlaskClient, manychat_id: str) -> str:
    body = {**DEFAULT_REPLY, "manychat_id": manychat_id}
    response = client.post("/api/v1/contact/default-reply", json=body, headers=headers(ORG_A.token))
    return str(response.get_json()["data"]["delivery_id"])


def state_of(store: Store, delivery_id: str) -> str | None:
    delivery = store.history.load(delivery_id)
    return delivery.state if delivery else None


# -- the reference page -------------------------------------------------------------------
def test_the_reference_page_uses_only_the_relay_s_own_assets(client: FlaskClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CSP
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP to block
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', html) if a != "data:,"]
    assert assets and all(asset.startswith("/") for asset in assets)  # no CDN
    for asset in [*assets, "/docs/static/swagger-ui/LICENSE"]:
        with client.get(asset) as served:
            assert served.status_code == 200, asset
