"""With Redis unreachable every surface answers 503 in its own shape, never a 500."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from relay.config import Settings
from relay.web.admin import tokens
from relay.web.app import create_app
from tests.helpers import ORG_A, SECRET, headers, sign_in, with_settings

ADMIN_AUTH = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.ADMIN], 600)}"}


@pytest.fixture
def cut_off(settings: Settings) -> FlaskClient:
    """Return a client of an app whose Redis does not answer."""
    return create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0")).test_client()


def test_the_delivery_status_route_answers_503(cut_off: FlaskClient) -> None:
    response = cut_off.get("/api/v1/deliveries/dlv_x", headers=headers(ORG_A.token))
    assert response.status_code == 503
    assert response.get_json()["error"] == "Service Unavailable"


@pytest.mark.parametrize("path", ["/api/v1/admin/overview", "/api/v1/admin/dead-letters"])
def test_the_admin_api_answers_503_in_its_envelope(cut_off: FlaskClient, path: str) -> None:
    response = cut_off.get(path, headers=ADMIN_AUTH)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["X-Request-Id"] == response.get_json()["error"]["requestId"]


def test_metrics_answer_503(cut_off: FlaskClient) -> None:
    assert cut_off.get("/metrics", headers=ADMIN_AUTH).status_code == 503


def test_the_dashboard_answers_a_503_page(cut_off: FlaskClient) -> None:
    sign_in(cut_off)
    response = cut_off.get("/dashboard/dead-letters")
    assert response.status_code == 503
    assert "cannot reach its store" in response.text
