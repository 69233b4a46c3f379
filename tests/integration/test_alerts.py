"""Alerts at a webhook receiver and an SMTP server started by the test, from real Redis state."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from relay import cli
from relay.alerting import AlertWatch
from relay.config import Settings
from relay.core import defaults
from relay.core.alerts import short_reason
from relay.core.delivery import DeliveryState
from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.notify import Notifier
from relay.storage.store import Store
from relay.web.app import create_app, shut_down
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    assert_held,
    csrf_of,
    free_port_url,
    headers,
    point_cli_at,
    sign_in,
    store_dead_letter,
    wait_until,
    with_settings,
)
from tests.receivers import SmtpReceiver, WebhookReceiver

SMTP_PASSWORD = "smtp-password-0123456789"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """Run a webhook receiver for one test."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """Run an SMTP server for one test."""
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alerting(settings: Settings, webhook: WebhookReceiver, smtp: SmtpReceiver) -> Settings:
    """Return settings with both channels: the webhook and e-mail (a user and password)."""
    smtp_url = smtp.url.replace("smtp://", f"smtp://alerts:{SMTP_PASSWORD}@")
    return with_settings(
        settings,
        alert_webhook_url=webhook.url,
        alert_smtp_url=smtp_url,
        alert_email_to=("ops@example.com",),
        public_url="https://relay.example.com",
    )


@pytest.fixture
def web_app(redis_conn: Any) -> Iterator[Any]:
    """Return a function that builds web apps; their alert watches stop at teardown."""
    built: list[Flask] = []

    def build(settings: Settings, connection: Any) -> Flask:
        built.append(create_app(settings, connection))
        return built[-1]

    yield build
    for app in built:
        shut_down(app)


@pytest.fixture
def quick_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the alert checks every half second instead of every five."""
    monkeypatch.setattr(defaults, "ALERT_CHECK_SECONDS", 0.5)


def secrets_of(settings: Settings) -> list[str]:
    """Return every secret that must never be in an alert."""
    return [*settings.secrets(), SMTP_PASSWORD, "hook-secret-part", ORG_A.token, SECRET]


def assert_no_secret(settings: Settings, *texts: str) -> None:
    for text in texts:
        for secret in secrets_of(settings):
            assert secret not in text


def received(webhook: WebhookReceiver, smtp: SmtpReceiver) -> list[str]:
    """Return everything both channels received, as text."""
    return [json.dumps(body) for body in webhook.bodies] + smtp.texts()


def manual_watch(store: Store, settings: Settings) -> AlertWatch:
    """Return a watch whose rounds the test runs itself, at times it chooses."""
    watch = AlertWatch(store, settings, notifier=Notifier(settings, tries=1))
    watch.sender.start()
    return watch


# -- dead letters -------------------------------------------------------------------------------
def test_a_dead_letter_alerts_once_at_both_channels_within_a_minute(  # type: ignore[no-untyped-def]
    alerting, redis_conn, store, sandbox, start_worker, webhook, smtp, quick_rounds, web_app
) -> None:
    app = web_app(alerting, redis_conn)  # a web process and a worker both watch
    start_worker(alerting)
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1)
    started = time.monotonic()
    response = app.test_client().post(
        "/api/v1/contact/default-reply", json=DEFAULT_REPLY, headers=headers(ORG_A.token)
    )
    delivery_id = response.get_json()["data"]["delivery_id"]

    wait_until(lambda: webhook.bodies and smtp.messages, timeout=60)
    elapsed = time.monotonic() - started
    time.sleep(2)  # four more rounds in each process: nothing more may come

    assert elapsed < 60
    assert len(webhook.bodies) == 1 and len(smtp.messages) == 1
    body = webhook.bodies[0]
    alert = body["alert"]
    assert (alert["kind"], alert["status"], alert["count"]) == ("dead_letters", "event", 1)
    assert alert["organizationId"] == ORG_A.id and alert["pageName"] == "Page A"
    assert alert["reasons"] == {"DmTracker answered 400": 1}
    assert alert["link"] == f"https://relay.example.com/dashboard/dead-letters?tenantId={ORG_A.id}"
    assert body["text"].startswith("[dmrelay] Alert: 1 new dead letter")
    mail = smtp.messages[0]
    assert mail["To"] == "ops@example.com"
    assert smtp.logins  # logged in with the URL's user and password
    assert "1 new dead letter" in mail["Subject"] and "Page A" in mail["Subject"]
    assert ORG_A.id in mail.get_content()
    assert store.history.load(delivery_id).state == DeliveryState.DEAD
    assert_no_secret(alerting, *received(webhook, smtp))


def test_fifty_more_within_the_digest_period_make_one_digest(  # type: ignore[no-untyped-def]
    alerting, store, webhook, smtp
) -> None:
    watch, period = manual_watch(store, alerting), alerting.alert_digest_minutes * 60
    now = time.time()
    store_dead_letter(store, ORG_A.id)
    watch.run_checks(now)
    for i in range(50):
        store_dead_letter(store, ORG_A.id, f"more {i}")
    watch.run_checks(now + 60)  # within the period: held for the digest
    watch.run_checks(now + period / 2)
    watch.run_checks(now + period + 1)  # the digest
    watch.run_checks(now + period + 60)
    watch.run_checks(now + 2 * period + 2)  # nothing new: no digest
    watch.sender.stop()

    # (No worker runs here, so "no live worker" fires too: not what this test is about.)
    alerts = [a for a in webhook.alerts() if a["kind"] == "dead_letters"]
    assert [(a["status"], a["count"]) for a in alerts] == [("event", 1), ("digest", 50)]
    assert alerts[1]["reasons"] == {"DmTracker answered 400": 50}
    subjects = [m["Subject"].split(":", 1)[1].strip() for m in smtp.messages]
    assert [s for s in subjects if "dead letter" in s] == [
        "1 new dead letter — Page A",
        "50 more dead letters — Page A",
    ]
    assert_no_secret(alerting, *received(webhook, smtp))


def test_rounds_in_two_processes_decide_each_event_once(  # type: ignore[no-untyped-def]
    alerting, store, webhook
) -> None:
    first, second = manual_watch(store, alerting), manual_watch(store, alerting)
    store_dead_letter(store, ORG_B.id)
    now = time.time()
    assert first.store.alerts.take_round("first", 5)
    assert not second.store.alerts.take_round("second", 5)  # the round is taken
    first.run_checks(now)
    second.run_checks(now)  # had it run anyway: the cursor moved, nothing new
    first.sender.stop()
    second.sender.stop()

    assert [a["organizationId"] for a in webhook.alerts()] == [ORG_B.id]


# -- conditions ---------------------------------------------------------------------------------
def test_a_refused_token_alerts_once_and_resolves_when_it_works(  # type: ignore[no-untyped-def]
    alerting, client, store, sandbox, start_worker, webhook, smtp, quick_rounds
) -> None:
    sandbox.fault(endpoint="*", status=401, count=-1, organization_id=ORG_A.id)
    start_worker(with_settings(alerting, breaker_probe_seconds=0.5, breaker_probe_max_seconds=1))
    ids = [
        client.post(
            "/api/v1/contact/default-reply",
            json={**DEFAULT_REPLY, "message_content": f"m{i}"},
            headers=headers(ORG_A.token),
        ).get_json()["data"]["delivery_id"]
        for i in range(5)
    ]
    wait_until(lambda: webhook.alerts(), timeout=30)
    time.sleep(2)  # more probes fail, more rounds run: still one alert
    assert [(a["kind"], a["status"]) for a in webhook.alerts()] == [("token_refused", "firing")]

    requests.delete(f"{sandbox.control}/faults", timeout=5).raise_for_status()
    wait_until(lambda: len(webhook.alerts()) == 2, timeout=30)
    wait_until(lambda: all(store.history.load(i).state == DeliveryState.DELIVERED for i in ids))

    kinds = [(a["kind"], a["status"]) for a in webhook.alerts()]
    assert kinds == [("token_refused", "firing"), ("token_refused", "resolved")]
    wait_until(lambda: len(smtp.messages) == 2)  # sent after the webhook
    assert store.dead.ids() == []
    assert_no_secret(alerting, *received(webhook, smtp))


def test_conditions_fire_once_and_resolve_once(  # type: ignore[no-untyped-def]
    alerting, store, webhook, redis_conn
) -> None:
    watch, now = manual_watch(store, alerting), time.time()
    # A dead letter 28 days old expires within 3 days; nobody has had a worker for 3 minutes.
    old = store_dead_letter(store, ORG_A.id)
    redis_conn.zadd(store.keys.dead, {old: now - 28 * 24 * 3600})
    store.alerts.no_worker_since(now - 180, alive=False)
    store.gates.pause(ORG_B.id, now)
    watch.run_checks(now)
    watch.run_checks(now + 5)
    firing = {(a["kind"], a["status"]) for a in webhook_alerts_after(watch, webhook)}
    assert firing == {("dead_letters", "event"), ("expiring", "firing"), ("no_worker", "firing"),
                      ("paused", "firing")}  # fmt: skip

    redis_conn.zrem(store.keys.dead, old)
    store.gates.resume(ORG_B.id)
    live_worker(store)
    watch = manual_watch(store, alerting)
    watch.run_checks(now + 10)
    watch.run_checks(now + 15)
    latest = webhook_alerts_after(watch, webhook)[4:]
    assert sorted((a["kind"], a["status"]) for a in latest) == [
        ("expiring", "resolved"),
        ("no_worker", "resolved"),
        ("paused", "resolved"),
    ]


def webhook_alerts_after(watch: AlertWatch, webhook: WebhookReceiver) -> list[dict[str, Any]]:
    """Let the watch's sender finish, then return every alert received."""
    watch.sender.stop()
    return webhook.alerts()


def live_worker(store: Store, name: str = "w1") -> None:
    """Register a worker with a fresh heartbeat, as a running one would."""
    store.redis.sadd(store.keys.workers, name)
    store.redis.set(store.keys.worker(name), 1, ex=30)


def test_backlog_older_than_the_limit_alerts(alerting, store, webhook) -> None:  # type: ignore[no-untyped-def]
    live_worker(store)
    watch = manual_watch(store, alerting)
    store_dead_letter(store, ORG_A.id)  # a dead letter is no backlog
    queued = store_queued(store)
    limit = alerting.alert_backlog_minutes * 60
    watch.run_checks(time.time() + limit - 60)
    watch.run_checks(time.time() + limit + 60)
    kinds = [(a["kind"], a["status"]) for a in webhook_alerts_after(watch, webhook)]
    assert kinds == [("dead_letters", "event"), ("backlog", "firing")]
    assert queued


def store_queued(store: Store) -> str:
    """Accept one delivery for organization A, left on its queue (no worker runs)."""
    from relay.core.delivery import Delivery
    from relay.storage.intake import NO_QUOTAS, fingerprint

    payload = {"organization_id": ORG_A.id, "manychat_id": "1", "username": "late_lead"}
    delivery = Delivery.new(ORG_A.id, "default-reply", {**payload, "message_content": "x"})
    same = fingerprint(ORG_A.id, "default-reply", delivery.id)
    store.intake.accept(delivery, same, window_seconds=60, quotas=NO_QUOTAS)
    return delivery.id


# -- channels: failures shown, the test alert ---------------------------------------------------
def test_a_failing_channel_is_retried_then_shown_on_the_dashboard(  # type: ignore[no-untyped-def]
    alerting, redis_conn, store, webhook, web_app
) -> None:
    broken = with_settings(alerting, alert_webhook_url=free_port_url(), alert_smtp_url=None)
    notifier = Notifier(broken, sleep=lambda seconds: None)
    watch = AlertWatch(store, broken, notifier=notifier)
    watch.sender.start()
    store_dead_letter(store, ORG_A.id)
    watch.run_checks(time.time())
    watch.sender.stop()
    client = web_app(broken, redis_conn).test_client()
    sign_in(client)

    (alert, results), *_ = store.alerts.history()
    assert alert.kind == "dead_letters"
    assert results[0]["channel"] == "webhook" and not results[0]["ok"]
    assert results[0]["tries"] == defaults.ALERT_SEND_TRIES
    assert results[0]["error"] == "connection refused or unreachable"
    assert "The alert channel <strong>webhook</strong> is failing" in client.get("/dashboard/").text
    page = client.get("/dashboard/alerts").text
    assert 'class="badge badge-failing">failing' in page
    assert "1 new dead letter" in page


def test_the_dashboard_sends_a_test_alert(  # type: ignore[no-untyped-def]
    alerting, redis_conn, store, webhook, smtp, web_app
) -> None:
    client = web_app(alerting, redis_conn).test_client()
    sign_in(client)
    answer = client.post(
        "/dashboard/alerts/test",
        data={"csrf_token": csrf_of(client, "/dashboard/alerts")},
        follow_redirects=True,
    )

    assert "Test alert: webhook: sent, email: sent." in answer.text
    assert [a["kind"] for a in webhook.alerts()] == ["test"]
    assert len(smtp.messages) == 1 and smtp.messages[0]["Subject"] == "[dmrelay] Test: test alert"
    assert 'data-kind="test"' in answer.text
    assert_no_secret(alerting, answer.text, *received(webhook, smtp))


def test_the_cli_sends_a_test_alert(  # type: ignore[no-untyped-def]
    alerting, monkeypatch, webhook, smtp, capsys
) -> None:
    point_cli_at(monkeypatch, alerting)
    monkeypatch.setenv("DMRELAY_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("DMRELAY_ALERT_SMTP_URL", smtp.url)
    monkeypatch.setenv("DMRELAY_ALERT_EMAIL_TO", "ops@example.com")

    assert cli.main(["alerts", "test"]) == 0
    assert capsys.readouterr().out.splitlines() == ["webhook: sent", "email: sent"]
    assert len(webhook.bodies) == 1 and len(smtp.messages) == 1


# -- held at the door, the spool, Redis memory ------------------------------------------------
def without_username(message: str = "no username") -> dict[str, str]:
    """Return a default-reply DmTracker's docs refuse (no username): the door holds it."""
    body = {key: value for key, value in DEFAULT_REPLY.items() if key != "username"}
    return {**body, "message_content": message}


def test_a_request_held_at_the_door_alerts_once_naming_its_organization(  # type: ignore[no-untyped-def]
    alerting, redis_conn, webhook, smtp, quick_rounds, web_app
) -> None:
    client = web_app(alerting, redis_conn).test_client()
    response = client.post(
        "/api/v1/contact/default-reply", json=without_username(), headers=headers(ORG_A.token)
    )
    held = assert_held(response, redis_conn)

    wait_until(lambda: webhook.bodies and smtp.messages, timeout=30)
    time.sleep(2)  # four more rounds: nothing more may come

    assert len(webhook.bodies) == 1 and len(smtp.messages) == 1
    alert = webhook.alerts()[0]
    assert (alert["kind"], alert["status"], alert["count"]) == ("held", "event", 1)
    assert alert["organizationId"] == ORG_A.id and alert["pageName"] == "Page A"
    assert alert["reasons"] == {short_reason(held.reason): 1}
    link = f"https://relay.example.com/dashboard/dead-letters?tenantId={ORG_A.id}"
    assert alert["link"] == link
    assert webhook.bodies[0]["text"].startswith("[dmrelay] Alert: 1 new held request")
    assert "1 new held request" in smtp.messages[0]["Subject"]
    sign_in(client)
    assert held.id in client.get(link.removeprefix("https://relay.example.com")).text
    assert_no_secret(alerting, *received(webhook, smtp))


def test_held_requests_within_the_period_make_one_digest_then_quiet_means_at_once(  # type: ignore[no-untyped-def]
    alerting, client, redis_conn, store, webhook
) -> None:
    live_worker(store)
    watch, period = manual_watch(store, alerting), alerting.alert_digest_minutes * 60

    def hold(count: int, org_token: str = ORG_A.token) -> None:
        for i in range(count):
            answer = client.post(
                "/api/v1/contact/default-reply",
                json=without_username(f"held {i}"),
                headers=headers(org_token),
            )
            assert_held(answer, redis_conn)

    now = time.time()
    hold(1)
    watch.run_checks(now)  # the first: at once
    hold(3)
    watch.run_checks(now + 60)  # within the period: kept for the digest
    hold(2)
    watch.run_checks(now + period / 2)
    watch.run_checks(now + period + 1)  # the digest of five
    watch.run_checks(now + 2 * period + 2)  # nothing new: no digest
    hold(1)
    watch.run_checks(now + 3 * period + 3)  # after a quiet period: at once again

    alerts = webhook_alerts_after(watch, webhook)
    assert [(a["kind"], a["status"], a["count"]) for a in alerts] == [
        ("held", "event", 1),
        ("held", "digest", 5),
        ("held", "event", 1),
    ]
    assert {a["organizationId"] for a in alerts} == {ORG_A.id}
    assert store.dead.ids()  # held requests are listed where dead letters are


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a redis-server of this test's own, which it may freeze."""
    server = start_local_redis(tmp_path / "own-redis")
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_the_spool_in_use_alerts_and_resolves_once_it_drains(  # type: ignore[no-untyped-def]
    alerting, own_redis, webhook, quick_rounds
) -> None:
    settings = with_settings(alerting, redis_url=own_redis.url, ingest_redis_deadline_seconds=0.5)
    app = create_app(settings)  # its own connection, with the ingest deadline
    try:
        os.kill(own_redis.process.pid, signal.SIGSTOP)  # Redis answers nothing: the spool takes it
        answer = app.test_client().post(
            "/api/v1/contact/default-reply", json=DEFAULT_REPLY, headers=headers(ORG_A.token)
        )
        wait_until(lambda: webhook.alerts(), timeout=15)
        time.sleep(1)  # more rounds while it still spools: still one alert
        firing = webhook.alerts()
        os.kill(own_redis.process.pid, signal.SIGCONT)
        wait_until(lambda: len(webhook.alerts()) == 2, timeout=15)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)  # also when it failed frozen
        shut_down(app)

    assert answer.get_json()["status"] == "spooled"
    assert [(a["kind"], a["status"], a["count"]) for a in firing] == [("spool", "firing", 1)]
    assert [(a["kind"], a["status"]) for a in webhook.alerts()] == [
        ("spool", "firing"),
        ("spool", "resolved"),
    ]
    assert_no_secret(alerting, *[json.dumps(body) for body in webhook.bodies])


def test_redis_above_80_percent_of_maxmemory_alerts_and_resolves(  # type: ignore[no-untyped-def]
    alerting, store, redis_conn, server_config, webhook
) -> None:
    live_worker(store)
    watch, now = manual_watch(store, alerting), time.time()
    used = int(redis_conn.info("memory")["used_memory"])
    maxmemory = used * 2
    server_config("maxmemory-policy", "noeviction")
    server_config("maxmemory", str(maxmemory))  # half used: no alert
    watch.run_checks(now)
    fillers = fill_memory(redis_conn, up_to=int(maxmemory * 0.9))
    share = redis_conn.info("memory")["used_memory"] / maxmemory
    watch.run_checks(now + 5)
    watch.run_checks(now + 10)  # still full: no second alert
    redis_conn.delete(*fillers)
    watch.run_checks(now + 15)

    assert share > 0.8
    alerts = [(a["kind"], a["status"]) for a in webhook_alerts_after(watch, webhook)]
    assert alerts == [("redis_memory", "firing"), ("redis_memory", "resolved")]


def fill_memory(connection: Any, up_to: int) -> list[str]:
    """Write 1 KiB values until Redis uses `up_to` bytes; return their keys."""
    keys: list[str] = []
    while int(connection.info("memory")["used_memory"]) < up_to:
        batch = [f"filler:{len(keys) + i}" for i in range(16)]
        connection.mset({key: "x" * 1024 for key in batch})
        keys.extend(batch)
    return keys
