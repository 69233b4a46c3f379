"""Connect ManyChat: the set-up the dashboard prints works with any variable empty."""

from __future__ import annotations

import re

import pytest
import redis
from flask.testing import FlaskClient

from relay.logs import current_context
from relay.web.admin import tokens
from relay.web.dashboard import connect
from tests.helpers import ORG_A, ORG_B, csrf_of, headers, queued_ids, sign_in

# Each form in which ManyChat sends a variable without a value, from its template text.
EMPTY_FORMS = {
    "unrendered": lambda variable: variable.group(0),
    "prefixed": lambda variable: "##" + variable.group(0),
    "angle brackets": lambda variable: f"<<{variable['name']}>>",
    "empty text": lambda variable: '""' if "to_json" in variable["filters"] else "",
}
VALUES = {**connect.SAMPLE, "page_name": ORG_A.page_name or ""}


def with_one_empty(template: str, empty: str, form: str) -> str:
    """Render a body with the one variable `empty` sent in `form`, the others set."""

    def one(variable: re.Match[str]) -> str:
        if variable["name"] == empty:
            return str(EMPTY_FORMS[form](variable))
        return connect.render(variable.group(0), VALUES)

    return connect.VARIABLE.sub(one, template)


@pytest.mark.parametrize("action", connect.ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("form", EMPTY_FORMS)
def test_every_body_is_kept_with_any_variable_empty(
    client: FlaskClient, redis_conn: redis.Redis, action: connect.Action, form: str
) -> None:
    path = {
        "default-reply": "/api/v1/contact/default-reply",
        "create-contact": "/api/v1/organization/create-contact",
        "update-tags": "/api/v1/contact/update-tags-external",
        "contact-status": "/api/v1/contact/contact-status",
    }[action.name]
    names = dict.fromkeys(v["name"] for v in connect.VARIABLE.finditer(action.body))
    assert names, action.name
    for name in names:
        body = with_one_empty(action.body, name, form)
        response = client.open(path, method=action.method, data=body, headers=headers(ORG_A.token))
        assert response.status_code == 200, (name, body, response.get_json())
        assert response.get_json()["status"] in ("queued", "skipped", "held"), response.get_json()


def test_the_page_prints_each_action_and_never_the_token(client: FlaskClient) -> None:
    sign_in(client, scopes=(tokens.READ,))

    page = client.get(f"/dashboard/connect/{ORG_A.id}").get_data(as_text=True)

    for action in connect.ACTIONS:
        assert f'id="action-{action.name}"' in page
    assert "http://localhost/api/v1/contact/update-tags-external?wait=5" in page
    assert "x-org-auth-token: YOUR_ORG_TOKEN" in page
    assert ORG_A.token not in page and ORG_B.token not in page
    assert 'id="test-default-reply"' not in page  # read-only: no test requests
    assert client.get("/dashboard/connect").headers["Location"].endswith(f"/connect/{ORG_A.id}")
    assert client.get("/dashboard/connect/nope").status_code == 404


def test_a_test_request_needs_the_admin_scope(client: FlaskClient, redis_conn: redis.Redis) -> None:
    sign_in(client, scopes=(tokens.READ,))
    csrf = csrf_of(client, f"/dashboard/connect/{ORG_A.id}")

    response = client.post(
        f"/dashboard/connect/{ORG_A.id}/test", data={"csrf_token": csrf, "action": "default-reply"}
    )

    assert response.status_code == 403
    assert redis_conn.keys("dmrelay:d:*") == []


def test_a_test_request_goes_through_the_relay_as_manychat_would(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    sign_in(client)
    csrf = csrf_of(client, f"/dashboard/connect/{ORG_B.id}")

    page = client.post(
        f"/dashboard/connect/{ORG_B.id}/test",
        data={"csrf_token": csrf, "action": "contact-status", "empty": "0"},
    ).get_data(as_text=True)

    assert 'id="answer-status-contact-status">200<' in page
    assert "&#34;status&#34;: &#34;queued&#34;" in page
    (queued,) = queued_ids(redis_conn, ORG_B.id)
    assert queued in page
    assert ORG_B.token not in page
    # The request inside had an app context of its own: nothing of either is left behind.
    assert current_context() == {}
