"""Metrics shared through Redis, one log line per request and per attempt, no secrets."""

from __future__ import annotations

import json
import logging
import re

from relay.core.delivery import DeliveryState
from relay.logs import JsonFormatter
from relay.web.admin import tokens
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, SECRET, headers, wait_until, with_settings

URL = "/api/v1/contact/default-reply"
METRICS_TOKEN = "metrics-token-0123456789"


def sample(text: str, name: str, **labels: str) -> float:
    """Return one sample's value from Prometheus text, or 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(client, token: str = METRICS_TOKEN) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def test_metrics_need_a_token(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = create_app(
        with_settings(settings, metrics_token=METRICS_TOKEN), redis_conn
    ).test_client()
    assert client.get("/metrics").status_code == 401
    bad = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    admin = tokens.mint(SECRET, [tokens.READ], 60)
    assert "dmrelay_pending" in scrape(client, admin)
    assert "dmrelay_pending" in scrape(client)


def test_counts_add_up_across_processes_sharing_redis(  # type: ignore[no-untyped-def]
    settings, redis_conn, sandbox, start_worker
) -> None:
    own = with_settings(settings, metrics_token=METRICS_TOKEN)
    # Two app instances stand for two gunicorn workers; each counts into the same Redis.
    first, second = (create_app(own, redis_conn).test_client() for _ in range(2))
    first.post(URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token))
    second.post(URL, json={**DEFAULT_REPLY, "username": "other"}, headers=headers(ORG_A.token))
    second.post(URL, json={**DEFAULT_REPLY, "message_content": ""}, headers=headers(ORG_A.token))
    second.post(URL, json=DEFAULT_REPLY, headers={"x-org-auth-token": "nope"})
    start_worker(own)
    wait_until(lambda: len(sandbox.requests()) == 2)

    text = wait_until(
        lambda: (
            (t := scrape(first))
            and sample(t, "dmrelay_deliveries_total", outcome=DeliveryState.DELIVERED) == 2
            and t
        )
    )
    route = "/api/v1/contact/default-reply"
    assert sample(text, "dmrelay_http_requests_total", route=route, status="200") == 3
    assert sample(text, "dmrelay_http_requests_total", route=route, status="401") == 1
    assert sample(text, "dmrelay_ingest_total", result="accepted") == 2
    assert sample(text, "dmrelay_ingest_total", result="rejected", reason="unauthorized") == 1
    assert sample(text, "dmrelay_ingest_total", result="skipped") == 1
    assert sample(text, "dmrelay_enqueue_seconds_count", endpoint="default-reply") == 2
    assert sample(text, "dmrelay_attempt_seconds_count", endpoint="default-reply") == 2
    assert sample(text, "dmrelay_queue_depth", organization=ORG_A.id) == 0
    assert sample(text, "dmrelay_dead_letters") == 0


def test_one_log_line_per_request_with_ids_and_no_secrets(client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="dmrelay.web")
    response = client.post(
        URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token, **{"X-Request-Id": "req-abc"})
    )
    (record,) = [r for r in caplog.records if r.name == "dmrelay.web"]
    line = json.loads(JsonFormatter().format(record))

    assert line["request_id"] == "req-abc"
    assert line["delivery_id"] == response.get_json()["data"]["delivery_id"]
    assert line["organization"] == ORG_A.id
    assert (line["status"], line["endpoint"]) == (200, "default-reply")
    assert line["latency_ms"] > 0
    assert ORG_A.token not in json.dumps(line)
    assert DEFAULT_REPLY["message_content"] not in json.dumps(line)


def test_one_log_line_per_attempt(client, store, sandbox, start_worker, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="dmrelay.delivery")
    sandbox.fault(endpoint="contact/default-reply", status=503, count=1)
    response = client.post(
        URL, json=DEFAULT_REPLY, headers=headers(ORG_A.token, **{"X-Request-Id": "req-xyz"})
    )
    delivery_id = response.get_json()["data"]["delivery_id"]
    start_worker()
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)

    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "dmrelay.delivery" and r.getMessage().startswith("attempt")
    ]
    assert [(line["status"], line["outcome"]) for line in lines] == [
        (503, "retry"),
        (200, "delivered"),
    ]
    assert {line["request_id"] for line in lines} == {"req-xyz"}
    assert {line["delivery_id"] for line in lines} == {delivery_id}
    assert ORG_A.token not in json.dumps(lines)


def test_an_odd_method_neither_breaks_the_metrics_nor_adds_a_series(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    client = create_app(
        with_settings(settings, metrics_token=METRICS_TOKEN), redis_conn
    ).test_client()
    # gunicorn passes any token as a method, separators included.
    for method in ("A|B", "X=Y,Z", "BREW"):
        assert client.open("/healthz", method=method).status_code == 405
    text = scrape(client)
    assert sample(text, "dmrelay_http_requests_total", method="OTHER", status="405") == 3
    assert "BREW" not in text and "A|B" not in text
