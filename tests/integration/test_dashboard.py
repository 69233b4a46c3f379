"""The dashboard through Flask's test client on a real Redis: sessions, CSRF, scopes, escaping."""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import jwt
import pytest
import redis
from flask.testing import FlaskClient

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.storage import queries
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.store import Store
from relay.web.admin import tokens
from tests.helpers import DEFAULT_REPLY, ORG_A, ORG_B, SECRET, csrf_of, headers, sign_in, wait_until

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;"
DASH = "\N{EN DASH}"  # the pager writes ranges like "1 to 50" with an en dash
PAGES = ["/dashboard/", "/dashboard/deliveries", "/dashboard/dead-letters", "/dashboard/config"]


# -- helpers ----------------------------------------------------------------------------------
def expired_token() -> str:
    """Return an admin token that expired a minute ago, signed with the right secret."""
    now = int(time.time())
    claims = {"iss": tokens.ISSUER, "sub": "operator", "iat": now - 120, "exp": now - 60}
    return jwt.encode({**claims, "scope": tokens.ADMIN}, SECRET, algorithm="HS256")


def session_cookie(response: Any) -> str:
    """Return the dashboard's Set-Cookie header."""
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "dmrelay_dashboard=" in c]
    assert cookies, "no session cookie was set"
    return str(cookies[-1])


def add_dead_letter(
    store: Store, *, org_id: str = ORG_A.id, endpoint: str = "default-reply", message: str = "hi"
) -> str:
    """Store a delivery that DmTracker refused with a 400, as the worker would."""
    payload = {"organization_id": org_id, "manychat_id": "123456", "username": "john_doe"}
    delivery = Delivery.new(org_id, endpoint, {**payload, "message_content": message})
    store.intake.accept(
        delivery, fingerprint(org_id, endpoint, delivery.id), window_seconds=60, quotas=NO_QUOTAS
    )
    store.stats.count_later(org_id, endpoint, "accepted")  # as the ingest route counts it
    store.stats.tally.flush()
    delivery.attempts.append(
        Attempt(time.time(), 400, 12.5, "permanent", '{"error":"Bad Request"}')
    )
    delivery.reason = "DmTracker answered 400"
    store.history.finish(delivery, DeliveryState.DEAD, 3600)
    return delivery.id


def post_replay(client: FlaskClient, delivery_id: str, csrf: str | None) -> Any:
    """POST the replay form for one dead letter, with the given CSRF token (or none)."""
    form = {"ids": delivery_id} | ({"csrf_token": csrf} if csrf is not None else {})
    return client.post("/dashboard/dead-letters/replay", data=form)


def is_dead(store: Store, delivery_id: str) -> bool:
    """Return True if the delivery is still a dead letter."""
    delivery = store.history.load(delivery_id)
    return bool(
        delivery and delivery.state == DeliveryState.DEAD and delivery_id in store.dead.ids()
    )


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    """Return a client signed in with the admin scope."""
    assert sign_in(client).status_code == 302
    return client


@pytest.fixture
def hostile_dead_letter(client: FlaskClient, store: Store, sandbox: Any, start_worker: Any) -> str:
    """Send a hostile message through the relay and let DmTracker refuse it with a hostile body."""
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1, body={"error": HOSTILE})
    start_worker()
    body = {**DEFAULT_REPLY, "message_content": f"hello {HOSTILE}"}
    response = client.post("/api/v1/contact/default-reply", json=body, headers=headers(ORG_A.token))
    delivery_id = str(response.get_json()["data"]["delivery_id"])
    wait_until(lambda: is_dead(store, delivery_id))
    return delivery_id


# -- signing in and out -----------------------------------------------------------------------
@pytest.mark.parametrize("path", [*PAGES, "/dashboard/deliveries/dlv_x"])
def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/dashboard/sign-in?next=")


def test_the_polling_endpoint_answers_401_when_signed_out(client: FlaskClient) -> None:
    assert client.get("/dashboard/overview.json").status_code == 401


def test_a_good_token_starts_a_session_with_a_hardened_cookie(client: FlaskClient) -> None:
    response = sign_in(client)

    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/"
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert client.get("/dashboard/").status_code == 200


def test_the_cookie_is_secure_over_https(client: FlaskClient) -> None:
    https = {"base_url": "https://localhost"}
    token = tokens.mint(SECRET, [tokens.READ], 600)
    csrf = csrf_of(client, **https)
    response = client.post("/dashboard/sign-in", data={"token": token, "csrf_token": csrf}, **https)

    cookie = session_cookie(response)
    assert "; Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_the_session_keeps_claims_never_the_token(client: FlaskClient) -> None:
    token = tokens.mint(SECRET, [tokens.ADMIN], 600)
    response = client.post(
        "/dashboard/sign-in", data={"token": token, "csrf_token": csrf_of(client)}
    )

    cookie = session_cookie(response)
    assert token not in cookie
    assert token.rsplit(".", 1)[1] not in cookie  # not even the token's signature


def test_the_cookie_expires_with_the_token(client: FlaskClient) -> None:
    response = sign_in(client, ttl=120)

    expires = re.search(r"Expires=([^;]+)", session_cookie(response))
    assert expires
    stamp = email.utils.parsedate_to_datetime(expires.group(1)).timestamp()
    assert abs(stamp - (time.time() + 120)) < 5


def test_the_session_ends_when_the_token_expires(client: FlaskClient) -> None:
    sign_in(client, ttl=1)
    assert client.get("/dashboard/").status_code == 200

    time.sleep(1.5)

    assert client.get("/dashboard/").status_code == 302


BAD_TOKENS = {
    "garbage": lambda: "not-a-jwt",
    "wrong-secret": lambda: tokens.mint("another-secret-0123456789abcdefgh", [tokens.ADMIN], 600),
    "expired": expired_token,
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_bad_token_is_refused(client: FlaskClient, kind: str) -> None:
    token = BAD_TOKENS[kind]()
    response = client.post(
        "/dashboard/sign-in", data={"token": token, "csrf_token": csrf_of(client)}
    )

    assert response.status_code == 401
    assert "Sign in" in response.text
    assert client.get("/dashboard/").status_code == 302


def test_sign_in_without_csrf_is_refused(client: FlaskClient) -> None:
    client.get("/dashboard/sign-in")
    token = tokens.mint(SECRET, [tokens.ADMIN], 600)

    response = client.post("/dashboard/sign-in", data={"token": token})

    assert response.status_code == 400
    assert client.get("/dashboard/").status_code == 302


def test_sign_out_ends_the_session(admin: FlaskClient) -> None:
    csrf = csrf_of(admin, "/dashboard/config")

    response = admin.post("/dashboard/sign-out", data={"csrf_token": csrf})

    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/sign-in"
    assert admin.get("/dashboard/").status_code == 302


def test_sign_out_needs_csrf(admin: FlaskClient) -> None:
    assert admin.post("/dashboard/sign-out").status_code == 400
    assert admin.get("/dashboard/").status_code == 200


# -- CSRF and scopes --------------------------------------------------------------------------
@pytest.mark.parametrize("csrf", [None, "", "forged-token"], ids=["missing", "empty", "wrong"])
def test_replay_without_the_right_csrf_token_is_refused(
    admin: FlaskClient, store: Store, csrf: str | None
) -> None:
    delivery_id = add_dead_letter(store)

    response = post_replay(admin, delivery_id, csrf)

    assert response.status_code == 400
    assert "CSRF check failed" in response.text
    assert is_dead(store, delivery_id)


def test_a_read_only_session_sees_no_working_buttons_and_cannot_replay(
    client: FlaskClient, store: Store
) -> None:
    delivery_id = add_dead_letter(store)
    sign_in(client, scopes=(tokens.READ,))
    page = client.get("/dashboard/dead-letters").text
    csrf = csrf_of(client, "/dashboard/dead-letters")

    assert re.search(r'id="replay-selected"\s+disabled', page)
    assert "Replay all" not in page
    response = post_replay(client, delivery_id, csrf)
    assert response.status_code == 403
    assert is_dead(store, delivery_id)
    purge = client.post(
        "/dashboard/dead-letters/purge", data={"ids": delivery_id, "csrf_token": csrf}
    )
    assert purge.status_code == 403
    assert is_dead(store, delivery_id)


def test_an_admin_replays_the_selected_dead_letters(admin: FlaskClient, store: Store) -> None:
    chosen, other = add_dead_letter(store), add_dead_letter(store)

    response = post_replay(admin, chosen, csrf_of(admin, "/dashboard/dead-letters"))

    assert response.status_code == 302
    assert store.history.load(chosen).state == DeliveryState.QUEUED  # type: ignore[union-attr]
    assert is_dead(store, other)
    assert "Replayed 1 dead letter" in admin.get(response.headers["Location"]).text


def test_replay_all_matching_replays_only_what_the_filters_match(
    admin: FlaskClient, store: Store
) -> None:
    org_a = [add_dead_letter(store), add_dead_letter(store)]
    org_b = add_dead_letter(store, org_id=ORG_B.id)
    csrf = csrf_of(admin, "/dashboard/dead-letters")

    response = admin.post(
        "/dashboard/dead-letters/replay-matching", data={"tenantId": ORG_A.id, "csrf_token": csrf}
    )

    assert response.status_code == 302
    assert f"tenantId={ORG_A.id}" in response.headers["Location"]
    assert all(store.history.load(i).state == DeliveryState.QUEUED for i in org_a)  # type: ignore[union-attr]
    assert is_dead(store, org_b)


def test_replay_all_matching_refuses_a_field_it_does_not_know(
    admin: FlaskClient, store: Store
) -> None:
    dead = [add_dead_letter(store), add_dead_letter(store, org_id=ORG_B.id)]
    csrf = csrf_of(admin, "/dashboard/dead-letters")

    # A form rendered before the filters took the API's names must not replay everything.
    response = admin.post(
        "/dashboard/dead-letters/replay-matching", data={"org_id": ORG_A.id, "csrf_token": csrf}
    )

    assert response.status_code == 400
    assert "Unknown filter &#39;org_id&#39;" in response.text
    assert all(is_dead(store, delivery_id) for delivery_id in dead)


def test_an_admin_purges_the_selected_dead_letters(admin: FlaskClient, store: Store) -> None:
    delivery_id = add_dead_letter(store)
    csrf = csrf_of(admin, "/dashboard/dead-letters")

    response = admin.post(
        "/dashboard/dead-letters/purge", data={"ids": delivery_id, "csrf_token": csrf}
    )

    assert response.status_code == 302
    assert store.history.load(delivery_id) is None
    assert delivery_id not in store.dead.ids()


# -- what the pages show ----------------------------------------------------------------------
def test_hostile_content_is_shown_escaped_everywhere(
    client: FlaskClient, hostile_dead_letter: str
) -> None:
    sign_in(client)
    pages = [
        "/dashboard/deliveries",
        f"/dashboard/deliveries/{hostile_dead_letter}",
        "/dashboard/dead-letters",
    ]
    for path in pages:
        text = client.get(path).text
        assert HOSTILE not in text, path
        assert ESCAPED in text, path
    delivery_page = client.get(f"/dashboard/deliveries/{hostile_dead_letter}").text
    assert delivery_page.count(ESCAPED) >= 2  # the request body and DmTracker's reply


def test_no_page_ever_shows_an_organization_token(admin: FlaskClient, store: Store) -> None:
    delivery_id = add_dead_letter(store)
    paths = [*PAGES, "/dashboard/overview.json", f"/dashboard/deliveries/{delivery_id}"]

    for path in paths:
        response = admin.get(path)
        assert response.status_code == 200, path
        for org in (ORG_A, ORG_B):
            assert org.token not in response.text, path
    config = admin.get("/dashboard/config").text
    assert ORG_A.id in config
    assert "Page A" in config


@pytest.mark.parametrize("path", [*PAGES, "/dashboard/sign-in", "/dashboard/deliveries/missing"])
def test_every_page_carries_a_strict_content_security_policy(admin: FlaskClient, path: str) -> None:
    response = admin.get(path)

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in response.text  # only <script src=...> from the relay itself


def test_the_overview_json_has_counts_and_an_hour_of_minutes(
    admin: FlaskClient, store: Store
) -> None:
    add_dead_letter(store)

    data = admin.get("/dashboard/overview.json").get_json()

    assert data["totals"]["dead_letters"] == 1
    assert len(data["series"]) == 60
    assert "accepted" in data["windows"]["hour"]["counts"]


def test_deliveries_are_filtered_and_paginated(admin: FlaskClient, store: Store) -> None:
    for number in range(52):
        add_dead_letter(store, message=f"message {number}")
    add_dead_letter(store, org_id=ORG_B.id, message="from page B")

    first = admin.get("/dashboard/deliveries").text
    second = admin.get("/dashboard/deliveries?page=2").text
    only_b = admin.get(f"/dashboard/deliveries?tenantId={ORG_B.id.upper()}&state=dead").text

    assert f"1{DASH}50 of 53" in first
    assert f"51{DASH}53 of 53" in second
    assert "from page B" in only_b
    assert "message 1" not in only_b
    assert "No deliveries match." in admin.get("/dashboard/deliveries?username=nobody").text


@pytest.mark.parametrize("page", ["\N{SUPERSCRIPT TWO}", "-3", "x", "9999999"])
def test_an_odd_page_number_shows_the_first_page(admin: FlaskClient, store: Store, page) -> None:
    add_dead_letter(store)
    response = admin.get(f"/dashboard/deliveries?page={page}")
    assert response.status_code == 200
    assert f"1{DASH}1 of 1" in response.text


@pytest.mark.parametrize("since", ["yesterday", "0999-12-31T23:59"])
def test_a_bad_filter_is_explained(admin: FlaskClient, since: str) -> None:
    response = admin.get(f"/dashboard/deliveries?since={since}")

    assert response.status_code == 400
    assert "since" in response.text


def test_a_missing_delivery_is_a_404_page(admin: FlaskClient) -> None:
    response = admin.get("/dashboard/deliveries/dlv_missing")

    assert response.status_code == 404
    assert "text/html" in response.content_type


def test_an_unexpected_error_is_a_page_that_reveals_nothing(
    admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_search(*_: Any) -> None:
        raise RuntimeError(f"secret detail {ORG_A.token}")

    monkeypatch.setattr(queries, "search", broken_search)
    response = admin.get("/dashboard/deliveries")

    assert response.status_code == 500
    assert "text/html" in response.content_type
    assert "secret detail" not in response.text
    assert ORG_A.token not in response.text


def test_a_long_attempt_log_says_how_many_attempts_it_omits(
    admin: FlaskClient, store: Store
) -> None:
    delivery = store.history.load(add_dead_letter(store))
    for _ in range(60):
        delivery.add_attempt(Attempt(time.time(), 429, 3.0, "throttled"))
    store.history.save(delivery)

    page = admin.get(f"/dashboard/deliveries/{delivery.id}").text
    numbers = re.findall(r"<strong>#(\d+)</strong>", page)

    assert "11 attempt(s) omitted from the log" in page
    assert numbers[:2] == ["1", "13"] and numbers[-1] == "61"
    assert "61 call(s) to DmTracker in all" in page


def test_the_config_page_shows_the_memory_budgets_and_what_fills_them(
    admin: FlaskClient, store: Store, redis_conn: redis.Redis, server_config: Any
) -> None:
    server_config("maxmemory", str(40 * 2**20))
    links = {f"a:{n}": f"user_{n}|{2**31}" for n in range(3000)}
    redis_conn.hset(store.keys.contacts(ORG_A.id), mapping=links)
    size = redis_conn.memory_usage(store.keys.contacts(ORG_A.id), samples=0)

    page = admin.get("/dashboard/config").text

    filled = "of 10.0 MiB: 0 delivered records 0.0 MiB, index 0.0 MiB, contact links"
    assert f"{filled} {size / 2**20:.1f} MiB" in page
    assert "10.0 MiB" in page.split("Undelivered bytes per organization")[1][:200]  # 40 / 2 / 2
    assert "10% of maxmemory" in page
