"""Redis trouble never costs a lead: a deadline, the spool, and /readyz saying why.

Each test that stops, freezes or fills Redis starts a redis-server of its own.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from relay.config import Settings
from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.app import create_app
from relay.web.spool import DATABASE_NAME
from tests.formation import spool_entry
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    SECRET,
    headers,
    served,
    sign_in,
    wait_until,
    with_settings,
)

URL = "/api/v1/contact/default-reply"
DEADLINE_SECONDS = 0.5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a redis-server of this test's own that keeps its data across a restart."""
    server = start_local_redis(tmp_path / "redis", persist=True)
    yield server
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)  # in case the test left it frozen
    server.stop()


@pytest.fixture
def own_settings(settings: Settings, own_redis: LocalRedis) -> Settings:
    """Return settings on the test's own Redis with a short ingest deadline."""
    return with_settings(
        settings, redis_url=own_redis.url, ingest_redis_deadline_seconds=DEADLINE_SECONDS
    )


@pytest.fixture
def own_app(own_settings: Settings) -> Iterator[Flask]:
    """Return an app on the test's own Redis; its spool is let go at the end."""
    app = create_app(own_settings)
    yield app
    app.extensions["dmrelay.front_door"].close(drain_seconds=0)


def reply(index: int, org: Any = ORG_A) -> dict[str, Any]:
    body = {
        **DEFAULT_REPLY,
        "username": f"lead_{index}",
        "manychat_id": str(1000 + index),
        "message_content": f"reply {index}",
    }
    return {k: v for k, v in body.items() if k != "page_name" or org is ORG_A}


def post(client: Any, index: int, org: Any = ORG_A) -> tuple[int, dict[str, Any], float]:
    """Send one reply; return status, answer and seconds it took."""
    started = time.monotonic()
    response = client.post(URL, json=reply(index, org), headers=headers(org.token))
    return response.status_code, response.get_json(), time.monotonic() - started


def queued(connection: redis.Redis, org: Any = ORG_A) -> list[str]:
    return [i.decode() for i in connection.lrange(f"rq:queue:dmrelay-{org.id}", 0, -1)]


def restart(server: LocalRedis, data_dir: Path) -> LocalRedis:
    """Start redis-server again on the same port, with the data it saved."""
    return start_local_redis(data_dir, port=server.port, persist=True)


def spool_empty(app: Flask) -> bool:
    return app.extensions["dmrelay.front_door"].spool.depth() == (0, 0)


def test_redis_stopped_mid_load_loses_nothing_and_drains_in_order(  # type: ignore[no-untyped-def]
    own_app, own_redis, tmp_path
) -> None:
    client = own_app.test_client()
    answers = [post(client, i) for i in range(5)]
    own_redis.stop()
    answers += [post(client, i) for i in range(5, 10)]

    assert [a[0] for a in answers] == [200] * 10
    assert [a[1]["status"] for a in answers] == ["queued"] * 5 + ["spooled"] * 5
    assert max(a[2] for a in answers[5:]) < DEADLINE_SECONDS * 2
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["reason"] == "spooling: 5 accepted requests wait for Redis"
    assert client.get("/healthz").status_code == 200

    restarted = restart(own_redis, tmp_path / "redis")
    try:
        wait_until(lambda: spool_empty(own_app), timeout=10)
        connection = redis.Redis.from_url(restarted.url)
        # The same ids as answered, once each, in the order they were accepted.
        assert queued(connection) == [a[1]["data"]["delivery_id"] for a in answers]
        assert client.get("/readyz").status_code == 200
        database = tmp_path / "spool" / DATABASE_NAME
        assert oct(database.stat().st_mode & 0o777) == "0o600"
    finally:
        restarted.stop()


def test_redis_stopped_under_concurrent_load_and_restarted_loses_nothing(  # type: ignore[no-untyped-def]
    own_app, own_redis, tmp_path
) -> None:
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def load(base: str, worker: int) -> None:
        with requests.Session() as session:
            for index in range(worker * 1000, worker * 1000 + 1000):
                if stop.is_set():
                    return
                body = reply(index)
                sent = session.post(base + URL, json=body, headers=headers(ORG_A.token), timeout=5)
                answer = sent.json()
                answers.append((sent.status_code, answer["status"], answer["data"]["delivery_id"]))

    with served(own_app) as base:
        senders = [threading.Thread(target=load, args=(base, n)) for n in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(0.5)
        own_redis.stop()
        time.sleep(1.0)
        restarted = restart(own_redis, tmp_path / "redis")
        time.sleep(0.5)
        stop.set()
        for sender in senders:
            sender.join(timeout=10)
    try:
        wait_until(lambda: spool_empty(own_app), timeout=10)
        stored = queued(redis.Redis.from_url(restarted.url))
        assert {status for status, _, _ in answers} == {200}
        assert {outcome for _, outcome, _ in answers} == {"queued", "spooled"}
        assert sorted(stored) == sorted(delivery_id for _, _, delivery_id in answers)
    finally:
        restarted.stop()


def test_sigterm_drains_the_spool_through_gunicorn_s_worker_exit_hook(  # type: ignore[no-untyped-def]
    app, redis_conn
) -> None:
    from types import SimpleNamespace

    from relay import gunicorn_conf

    spool = app.extensions["dmrelay.front_door"].spool
    store = spool.store

    def refused(entry: Any) -> str | None:
        raise redis.ConnectionError("Redis is away")

    spool.store = refused
    entries = [spool_entry(i) for i in range(3)]
    for entry in entries:
        spool.append(entry)
    spool.store = store  # Redis is back as the process is told to stop

    gunicorn_conf.worker_exit(None, SimpleNamespace(wsgi=app))

    assert queued(redis_conn) == [entry.delivery.id for entry in entries]
    assert spool.depth() == (0, 0)


def test_redis_frozen_answers_within_the_deadline_and_drains_after_sigcont(  # type: ignore[no-untyped-def]
    own_app, own_redis
) -> None:
    client = own_app.test_client()
    first = post(client, 0)
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        frozen = [post(client, i) for i in range(1, 6)]
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)

    assert all(a[0] == 200 and a[1]["status"] == "spooled" for a in frozen)
    # The first waits out the deadline; the others join it in the spool at once.
    assert frozen[0][2] < DEADLINE_SECONDS + 0.5
    assert max(a[2] for a in frozen[1:]) < 0.2
    wait_until(lambda: spool_empty(own_app), timeout=10)
    connection = redis.Redis.from_url(own_redis.url)
    assert queued(connection) == [a[1]["data"]["delivery_id"] for a in [first, *frozen]]


def test_redis_out_of_memory_spools_and_readyz_says_why(own_app, own_redis) -> None:  # type: ignore[no-untyped-def]
    client = own_app.test_client()
    connection = redis.Redis.from_url(own_redis.url)
    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", connection.info("memory")["used_memory"] + 256 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for index in range(10_000):
            connection.set(f"filler:{index}", "x" * 1024)

    status, answer, seconds = post(client, 1)
    ready = client.get("/readyz")

    assert (status, answer["status"]) == (200, "spooled")
    assert seconds < 1
    assert ready.status_code == 503
    # Redis is past the headroom kept for delivery, and says so first.
    reason = ready.get_json()["reason"]
    assert reason.startswith("Redis memory: ")
    assert reason.endswith("; spooling: 1 accepted requests wait for Redis")
    connection.config_set("maxmemory", 0)
    wait_until(lambda: spool_empty(own_app), timeout=10)
    assert queued(connection) == [answer["data"]["delivery_id"]]
    assert client.get("/readyz").status_code == 200


def test_readyz_says_when_redis_refuses_writes_before_anything_is_spooled(  # type: ignore[no-untyped-def]
    own_app, own_redis
) -> None:
    connection = redis.Redis.from_url(own_redis.url)
    connection.config_set("maxmemory", 1)  # below what Redis already uses: every write refused

    ready = own_app.test_client().get("/readyz")
    connection.config_set("maxmemory", 0)

    assert ready.status_code == 503
    assert ready.get_json()["reason"] == "Redis is out of memory and refuses writes"
    assert own_app.test_client().get("/healthz").status_code == 200


def test_requests_while_redis_is_down_are_deduplicated_when_drained(  # type: ignore[no-untyped-def]
    own_app, own_redis, tmp_path
) -> None:
    client = own_app.test_client()
    own_redis.stop()
    sent = [{**DEFAULT_REPLY, "message_content": text} for text in ("yes", "yes", "no", "yes")]
    keyed = headers(ORG_A.token, **{"Idempotency-Key": "evt-9"})
    answers = [client.post(URL, json=body, headers=headers(ORG_A.token)) for body in sent]
    answers += [client.post(URL, json=reply(i), headers=keyed) for i in (3, 4)]
    restarted = restart(own_redis, tmp_path / "redis")
    try:
        wait_until(lambda: spool_empty(own_app), timeout=10)
        ids = [a.get_json()["data"]["delivery_id"] for a in answers]
        # "yes" twice in a row is one delivery; "yes" after "no" is not a repeat.
        assert queued(redis.Redis.from_url(restarted.url)) == [ids[0], ids[2], ids[3], ids[4]]
    finally:
        restarted.stop()


def test_rows_another_process_spooled_are_drained_by_one_that_reaches_redis(  # type: ignore[no-untyped-def]
    settings, redis_conn
) -> None:
    cut_off = create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0"))
    try:
        ids = [post(cut_off.test_client(), i)[1]["data"]["delivery_id"] for i in range(3)]
        other = create_app(settings, redis_conn)  # the same host, so the same spool
        try:
            wait_until(lambda: queued(redis_conn) == ids, timeout=10)
            wait_until(lambda: spool_empty(other), timeout=5)
        finally:
            other.extensions["dmrelay.front_door"].close(drain_seconds=0)
    finally:
        cut_off.extensions["dmrelay.front_door"].close(drain_seconds=0)


def test_a_drain_cut_short_and_repeated_stores_each_request_once(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    first = create_app(settings, redis_conn)
    spool = first.extensions["dmrelay.front_door"].spool
    # One contact going back and forth: after a repeat drain, only the record of a delivery
    # id already stored keeps it from being stored again (dedup alone would not).
    entries = [spool_entry(i, username="same_lead") for i in (0, 1, 0, 1, 0)]
    store = spool.store

    def redis_goes_away_at_the_third(entry: Any) -> str | None:
        if entry.delivery.id == entries[2].delivery.id:
            raise redis.ConnectionError("Redis went away mid-drain")
        return store(entry)

    spool.store = redis_goes_away_at_the_third
    for entry in entries:
        spool.append(entry)
    wait_until(lambda: len(queued(redis_conn)) == 2)
    first.extensions["dmrelay.front_door"].close(drain_seconds=0)  # three requests on disk
    # Worst case: it died before deleting the rows Redis has, so the next drain starts over.
    with sqlite3.connect(Path(settings.spool_dir) / DATABASE_NAME) as database:
        rows = [(e.delivery.id, e.fingerprint, e.delivery.to_json()) for e in entries[:2]]
        database.executemany(
            "INSERT INTO entries (delivery_id, fingerprint, delivery) VALUES (?, ?, ?)", rows
        )

    successor = create_app(settings, redis_conn)
    try:
        wait_until(lambda: spool_empty(successor), timeout=10)
    finally:
        successor.extensions["dmrelay.front_door"].close(drain_seconds=0)
    assert queued(redis_conn) == [entry.delivery.id for entry in entries]


def test_a_request_redis_refuses_for_good_stays_in_the_spool_with_the_reason(  # type: ignore[no-untyped-def]
    app, client, redis_conn
) -> None:
    spool = app.extensions["dmrelay.front_door"].spool
    entries = [spool_entry(i) for i in range(3)]
    store = spool.store

    def refuses_the_second(entry: Any) -> str | None:
        if entry.delivery.id == entries[1].delivery.id:
            return "ERR Error running script: a test's refusal"
        return store(entry)

    spool.store = refuses_the_second
    for entry in entries:
        spool.append(entry)

    wait_until(lambda: spool_empty(app))
    assert queued(redis_conn) == [entries[0].delivery.id, entries[2].delivery.id]
    (kept,) = spool.rejected()
    assert (kept.delivery_id, kept.org_id, kept.endpoint) == (
        entries[1].delivery.id,
        ORG_A.id,
        "default-reply",
    )
    assert kept.reason == "ERR Error running script: a test's refusal"
    sign_in(client)
    overview = client.get("/dashboard/overview.json").get_json()
    assert overview["spool"]["rejected"] == [
        {
            "delivery_id": kept.delivery_id,
            "organization": ORG_A.id,
            "endpoint": "default-reply",
            "reason": kept.reason,
        }
    ]
    assert entries[1].delivery.id in client.get("/dashboard/").get_data(as_text=True)


def test_a_full_spool_answers_503_in_dmtracker_shape(settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(
        with_settings(settings, redis_url="redis://127.0.0.1:1/0", spool_max_bytes=48 * 1024)
    )
    client = app.test_client()
    statuses = [post(client, i)[0] for i in range(40)]
    refused = client.post(URL, json=reply(99), headers=headers(ORG_A.token))
    app.extensions["dmrelay.front_door"].close(drain_seconds=0)

    assert statuses[0] == 200 and 503 in statuses
    assert statuses == sorted(statuses)  # once full, full: no row gets in behind a refusal
    assert refused.status_code == 503
    assert refused.get_json() == {
        "error": "Service Unavailable",
        "message": "The relay cannot store messages right now: its store is unavailable"
        " and its local spool is full.",
    }


def test_an_unwritable_spool_answers_503(settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0"))
    spool = app.extensions["dmrelay.front_door"].spool
    spool.db.connection().execute("PRAGMA query_only = ON")  # every write now fails
    try:
        status, answer, _ = post(app.test_client(), 1)
    finally:
        app.extensions["dmrelay.front_door"].close(drain_seconds=0)

    assert status == 503
    assert answer["error"] == "Service Unavailable"
    assert "cannot be written" in answer["message"]


def test_metrics_and_the_dashboard_show_the_spool_depth(app, client, redis_conn) -> None:  # type: ignore[no-untyped-def]
    spool = app.extensions["dmrelay.front_door"].spool
    store = spool.store

    def refused(entry: Any) -> str | None:
        raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    spool.store = refused
    spool.append(spool_entry(1))
    spool.append(spool_entry(2))
    scraped = client.get(
        "/metrics", headers={"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 60)}"}
    )
    text = scraped.get_data(as_text=True)
    sign_in(client)
    overview = client.get("/dashboard/overview.json").get_json()
    ready = client.get("/readyz").get_json()
    spool.store = store

    assert gauge(text, "dmrelay_spool_entries") == 2
    assert gauge(text, "dmrelay_spool_bytes") > 100
    assert overview["spool"]["entries"] == 2
    assert ready["reason"] == "spooling: 2 accepted requests wait for Redis"
    wait_until(lambda: spool_empty(app))
    assert client.get("/readyz").status_code == 200


def gauge(text: str, name: str) -> float:
    """Return a gauge's value from Prometheus text (no labels)."""
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


# -- quotas and rate limits --------------------------------------------------------------------


def flood(base: str, org: Any, count: int, results: list[int]) -> None:
    with requests.Session() as session:
        for index in range(count):
            body = reply(index, org)
            response = session.post(base + URL, json=body, headers=headers(org.token), timeout=10)
            results.append(response.status_code)


def test_one_organization_at_its_quota_leaves_the_door_open_to_the_others(  # type: ignore[no-untyped-def]
    settings, redis_conn
) -> None:
    app = create_app(with_settings(settings, max_pending_per_org=20), redis_conn)
    results: dict[str, list[int]] = {ORG_A.id: [], ORG_B.id: []}
    with served(app) as base:
        floods = [
            threading.Thread(target=flood, args=(base, ORG_A, 60, results[ORG_A.id])),
            threading.Thread(target=flood, args=(base, ORG_B, 15, results[ORG_B.id])),
        ]
        for thread in floods:
            thread.start()
        for thread in floods:
            thread.join(timeout=60)
        over = requests.post(base + URL, json=reply(99), headers=headers(ORG_A.token), timeout=5)

    assert results[ORG_A.id].count(200) == 20
    assert results[ORG_A.id].count(503) == 40
    assert results[ORG_B.id] == [200] * 15
    assert over.status_code == 503
    assert over.headers["Retry-After"] == "60"
    assert over.json()["message"].endswith(
        "undelivered messages for this organization, its limit; try again later."
    )
    assert len(queued(redis_conn, ORG_A)) == 20
    assert len(queued(redis_conn, ORG_B)) == 15


def test_a_finished_delivery_frees_its_place_in_the_quota(settings, redis_conn) -> None:  # type: ignore[no-untyped-def]
    app = create_app(with_settings(settings, max_pending_per_org=1), redis_conn)
    client = app.test_client()
    first = post(client, 1)[1]["data"]["delivery_id"]
    assert post(client, 2)[0] == 503

    store = Store(redis_conn)
    store.history.finish(store.history.load(first), "delivered", retention_seconds=60)
    assert post(client, 3)[0] == 200


def test_a_runaway_organization_gets_429_with_retry_after_and_the_others_do_not(  # type: ignore[no-untyped-def]
    settings, redis_conn
) -> None:
    app = create_app(with_settings(settings, ingest_rate_per_org=2.0), redis_conn)  # burst 20
    client = app.test_client()
    runaway = [client.post(URL, json=reply(i), headers=headers(ORG_A.token)) for i in range(25)]
    other = post(client, 1, ORG_B)

    statuses = [r.status_code for r in runaway]
    assert statuses[:20] == [200] * 20
    assert set(statuses[20:]) == {429}
    refused = runaway[-1]
    assert refused.get_json()["error"] == "Rate limit exceeded"
    assert refused.get_json()["retry_after"] == int(refused.headers["Retry-After"]) == 1
    assert other[0] == 200
    assert len(queued(redis_conn, ORG_A)) == 20


# -- cost of one accepted request --------------------------------------------------------------
def test_an_accepted_request_is_one_round_trip_of_at_most_thirteen_commands(  # type: ignore[no-untyped-def]
    own_app, own_redis
) -> None:
    client = own_app.test_client()
    post(client, 0)  # loads the script
    door = own_app.extensions["dmrelay.front_door"]
    door._stopping.set()  # no pulses: only the accepts are counted
    time.sleep(0.3)
    connection = redis.Redis.from_url(own_redis.url)
    sent: list[str] = []
    execute = door.intake.redis.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return execute(*args, **options)

    door.intake.redis.execute_command = counted
    connection.config_resetstat()
    started = time.monotonic()
    for index in range(1, 21):
        assert post(client, index)[1]["data"]["duplicate"] is False
    seconds = time.monotonic() - started
    stats = connection.info("commandstats")
    door.store.stats.tally.discard()

    # One round trip each, nothing else on the way but the memory reading, once a second.
    assert [command for command in sent if command != "INFO"] == ["EVALSHA"] * 20
    assert sent.count("INFO") <= seconds + 1
    calls = sum(v["calls"] for k, v in stats.items() if "config" not in k and "info" not in k)
    # The contact's entries are one HMGET, one HSET; the outage check is TIME, one SET and
    # one HMGET of the settling; the byte budget's count and the delivery's size one HINCRBY
    # and one HSET; the delivery's RQ job one HSET.
    assert calls <= 13 * 20
    assert stats["cmdstat_evalsha"]["calls"] == 20
    assert stats["cmdstat_hmget"]["calls"] == 2 * 20
    assert stats["cmdstat_hset"]["calls"] == 3 * 20
    assert "cmdstat_hincrbyfloat" not in stats  # metrics are written later, summed


def test_a_request_waiting_for_its_answer_is_released_when_redis_goes_away(  # type: ignore[no-untyped-def]
    own_settings, own_redis
) -> None:
    waits = dict.fromkeys(own_settings.answer_wait_seconds, 5.0)
    app = create_app(with_settings(own_settings, answer_wait_seconds=waits))
    try:
        client = app.test_client()
        waiting: list[tuple[int, dict[str, Any], float]] = []
        # No worker runs: this request would wait its full 5 s for DmTracker's answer.
        thread = threading.Thread(target=lambda: waiting.append(post(client, 0)))
        thread.start()
        time.sleep(0.5)
        own_redis.stop()
        status, body, _ = post(client, 1)  # spooled: Redis is away, so nobody waits
        thread.join(timeout=10)

        assert (status, body["status"]) == (200, "spooled")
        ((waited_status, waited_body, waited_seconds),) = waiting
        assert (waited_status, waited_body["status"]) == (200, "queued")
        assert waited_body["data"]["state"] == "queued"
        assert waited_seconds < 0.5 + DEADLINE_SECONDS * 2 < 5
    finally:
        app.extensions["dmrelay.front_door"].close(drain_seconds=0)
