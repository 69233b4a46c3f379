"""Replies lost or late between a worker and Redis: nothing is stranded, nothing runs twice
unasked, and the logs say what happened (a proxy in the test loses or holds the replies)."""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from relay.core.delivery import Delivery, DeliveryState
from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.storage.connection import connect
from relay.storage.inflight import START
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.ratelimit import RateLimiter
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    CapturedLog,
    RunningWorker,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)
from tests.redis_proxy import RedisProxy, Rule

URL = "/api/v1/contact/default-reply"
WORKER_LOGS = ("dmrelay.worker", "dmrelay.delivery", "relay.storage")


@pytest.fixture
def proxy(redis_server: LocalRedis) -> Iterator[RedisProxy]:
    """Return a proxy in front of the test's redis-server."""
    found = RedisProxy(redis_server.port)
    yield found
    found.close()


@pytest.fixture
def proxied_worker(settings, redis_conn, proxy) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Return a function that starts a worker whose Redis client goes through the proxy."""
    started: list[RunningWorker] = []

    def start(**changes: Any) -> RunningWorker:
        own = with_settings(settings, **changes)
        # The production client: its retries are what these tests are about.
        connection = connect(proxy.url, own.worker_redis_connections, "dmrelay-worker")
        worker = RunningWorker(own, connection).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def worker_log() -> CapturedLog:
    """Capture what the delivery side logs (not the web app's lines)."""
    return CapturedLog(lambda record: record.name.startswith(WORKER_LOGS))


def accept(client: Any, name: str, message: str = "hello") -> str:
    body = {**DEFAULT_REPLY, "username": name, "manychat_id": name, "message_content": message}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200
    return str(response.get_json()["data"]["delivery_id"])


def delivered(store: Store, delivery_id: str) -> bool:
    found = store.history.load(delivery_id)
    return found is not None and found.state == DeliveryState.DELIVERED


def shas(worker: RunningWorker) -> dict[str, str]:
    """Return the SHA1 of the scripts that move a delivery along, as the worker sends them."""
    store = worker.process.store
    return {
        "take": store.inflight._take.sha,
        "finish": store.history._finish.sha,
        "retry": store.schedule._retry.sha,
    }


def overlapping(calls: list[dict[str, Any]]) -> list[str]:
    """Return the request ids DmTracker saw a second call of while the first was running."""
    spans = defaultdict(list)
    for call in calls:
        spans[call["headers"].get("x-request-id")].append((call["at"], call["answered_at"]))
    return [
        request_id
        for request_id, found in spans.items()
        if any(b[0] < a[1] for a, b in itertools.pairwise(sorted(found)))
    ]


def problems(log: CapturedLog) -> list[str]:
    """Return lines that would mislead an operator: errors, and lease losses nobody caused."""
    return [
        line["message"]
        for line in log.lines
        if line["level"] in ("error", "critical") or "lease" in line["message"]
    ]


def test_a_take_whose_reply_is_lost_is_sent_within_one_maintenance_period(  # type: ignore[no-untyped-def]
    client, store, sandbox, proxied_worker, proxy
) -> None:
    """The take ran, its reply never arrived, and Redis looked down for a while after."""
    worker = proxied_worker()  # the default heartbeat: maintenance every 10 s
    period = worker.process.maintenance.period
    proxy.watch(Rule(shas(worker)["take"], skip_empty=True, refuse_seconds=2))
    with worker_log() as log:
        delivery_id = accept(client, "lost_take")
        wait_until(lambda: proxy.applied[shas(worker)["take"]] == 1)
        back_at = time.time() + 2
        assert store.inflight.processing(worker.process.name) == [delivery_id]  # it ran

        wait_until(lambda: delivered(store, delivery_id), timeout=2 + period + 5)
        wait_until(lambda: store.inflight.processing(worker.process.name) == [])
        worker.stop()
    (call,) = sandbox.requests()
    assert call["at"] - back_at < period
    assert problems(log) == []


def test_a_delivery_left_in_a_live_workers_list_is_run_at_its_next_maintenance(  # type: ignore[no-untyped-def]
    client, store, settings, redis_conn, sandbox
) -> None:
    """A take whose reply never reached a thread, with no error seen: the list is reconciled."""
    worker = RunningWorker(with_settings(settings, worker_heartbeat_ttl_seconds=3), redis_conn)
    delivery_id = accept(client, "stranded")
    assert store.inflight.take(worker.process.name, [ORG_A.id]) is not None  # nobody runs it
    with worker_log() as log:
        worker.start()
        try:
            wait_until(lambda: delivered(store, delivery_id), timeout=10)
        finally:
            worker.stop()
    assert "requeued 1 deliveries no thread of" in " ".join(log.messages())
    assert len(sandbox.requests()) == 1


def test_a_take_sent_twice_after_a_lost_reply_starts_its_delivery_once(  # type: ignore[no-untyped-def]
    client, store, sandbox, proxied_worker, proxy
) -> None:
    worker = proxied_worker()
    proxy.watch(Rule(shas(worker)["take"], skip_empty=True))  # the client sends it again
    with worker_log() as log:
        delivery_id = accept(client, "twice")
        wait_until(lambda: delivered(store, delivery_id))
        wait_until(lambda: store.inflight.processing(worker.process.name) == [])
        assert queued_ids(store.redis) == []
        worker.stop()
    assert proxy.applied[shas(worker)["take"]] == 1
    assert len(sandbox.requests()) == 1
    # Answered from the first run: nothing was left for the maintenance pass to requeue.
    assert not any("no thread of" in message for message in log.messages())
    assert problems(log) == []


@pytest.mark.parametrize("script", ["finish", "retry"])
def test_a_finish_or_retry_sent_twice_after_a_lost_reply_is_recorded_once(  # type: ignore[no-untyped-def]
    client, store, sandbox, proxied_worker, proxy, script
) -> None:
    worker = proxied_worker()
    proxy.watch(Rule(shas(worker)[script]))
    if script == "retry":
        sandbox.fault(endpoint="contact/default-reply", status=503)
    with worker_log() as log:
        delivery_id = accept(client, f"twice_{script}")
        wait_until(lambda: delivered(store, delivery_id))
        worker.stop()  # its thread has handled the reply of the second run too
    assert proxy.applied[shas(worker)[script]] == 1
    expected = [503, 200] if script == "retry" else [200]
    assert [call["status"] for call in sandbox.requests()] == expected
    assert store.history.load(delivery_id).attempt_count == len(sandbox.requests())
    assert problems(log) == []


def test_a_script_timed_out_is_never_sent_again(redis_conn, proxy) -> None:  # type: ignore[no-untyped-def]
    client = connect(proxy.url, 2, "dmrelay-test")
    count = client.register_script("return redis.call('INCR', KEYS[1])")
    count(keys=["counted"])  # loaded, and run once
    proxy.watch(Rule(count.sha, hold_seconds=6))  # longer than the 5 s socket timeout

    with pytest.raises(redis.TimeoutError):
        count(keys=["counted"])
    time.sleep(1.5)  # the held reply is delivered to a closed socket: nothing else comes
    assert proxy.sent[count.sha] == 1
    assert int(redis_conn.get("counted")) == 2


def test_a_redis_restart_is_one_warning_not_an_error(settings, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_local_redis(tmp_path / "redis", persist=True)
    own = with_settings(settings, redis_url=server.url)
    connection = redis.Redis.from_url(server.url)
    store = Store(connection)
    client = create_app(own, connection).test_client()
    worker = RunningWorker(own, connect(server.url, own.worker_redis_connections, "w")).start()
    sandbox.configure(latency_ms=1500)
    try:
        with worker_log() as log:
            ids = [accept(client, f"restart_{i}") for i in range(3)]
            wait_until(lambda: len(store.redis.hkeys(store.keys.leases)) == 3)
            server.stop()  # the calls in flight end while Redis is down: finish fails
            time.sleep(2.5)
            server = start_local_redis(tmp_path / "redis", port=server.port, persist=True)
            wait_until(lambda: all(delivered(store, i) for i in ids), timeout=20)
            wait_until(lambda: any(m.startswith("redis answers again") for m in log.messages()))
    finally:
        worker.stop()
        server.stop()
    warnings = [line for line in log.lines if line["level"] == "warning"]
    assert [line["message"].split(" (")[0] for line in warnings] == ["redis unavailable"]
    # The calls in flight recorded their outcome once Redis was back: none was sent again.
    assert len(sandbox.requests()) == len(ids)
    assert problems(log) == []


def snapshot(connection: redis.Redis) -> dict[bytes, Any]:
    """Return every key's value, in a form two snapshots can be compared in (counts left out)."""
    readers = {
        b"string": connection.get,
        b"list": lambda key: connection.lrange(key, 0, -1),
        b"set": lambda key: sorted(connection.smembers(key)),
        b"zset": lambda key: connection.zrange(key, 0, -1, withscores=True),
        b"hash": connection.hgetall,
    }
    state = {}
    for key in connection.keys("*"):
        # The settle mark (":settle:at") is a clock reading: when a web process last ran.
        if b":stats:" in key or key.endswith((b":metrics", b":ready", b":settle:at")):
            continue
        state[key] = readers[connection.type(key)](key)
    return state


def test_every_other_script_that_changes_state_is_safe_to_run_twice(client, store) -> None:  # type: ignore[no-untyped-def]
    """A reply lost on a closed connection makes the client send the script again."""
    worker = "twice"
    store.inflight.heartbeat(worker, 30)
    fresh = Delivery.new(ORG_A.id, "default-reply", {**DEFAULT_REPLY, "organization_id": ORG_A.id})
    head, follow_up = accept(client, "stuck"), accept(client, "stuck", "a follow-up")
    limiter = RateLimiter(store.redis, store.keys)
    permit_keys = list(store.keys.rate_limit(ORG_A.id, "create-contact"))

    def take_and_schedule() -> None:
        taken = store.inflight.take(worker, [ORG_A.id])
        assert taken is not None and taken.delivery is not None
        store.schedule.put(taken.delivery, time.time() - 1, taken.lease)

    def take_one() -> None:
        """Take until a delivery starts (one parked behind its contact's head is passed over)."""
        while (taken := store.inflight.take(worker, [ORG_A.id])) and taken.verdict != START:
            pass
        assert taken is not None

    scenarios = [
        (
            "accept",
            lambda: None,
            lambda: store.intake.accept(
                fresh,
                fingerprint(ORG_A.id, "default-reply", fresh.id),
                window_seconds=0,
                quotas=NO_QUOTAS,
            ),
        ),
        ("move_due", take_and_schedule, lambda: store.schedule.move_due([ORG_A.id])),
        ("requeue_orphans", take_one, lambda: store.inflight.requeue_orphans(worker, [])),
        ("requeue_processing", take_one, lambda: store.inflight.requeue_processing(worker)),
        (
            "release_stuck",
            lambda: store.redis.delete(store.keys.delivery(head)),
            store.ordering.release_all_stuck,
        ),
        (  # the last permit of the window: run again, it must not reserve a later slot
            "rate_limit",
            lambda: None,
            lambda: limiter._acquire(keys=permit_keys, args=[61.0, 1, 0, "one-call"]),
        ),
    ]
    changed = []
    for name, prepare, run in scenarios:
        prepare()
        before = snapshot(store.redis)
        run()
        once = snapshot(store.redis)
        run()
        assert snapshot(store.redis) == once, name
        changed.append(once != before)
    assert changed == [True] * len(scenarios)  # each first run did something
    assert follow_up in queued_ids(store.redis)  # freed from behind the vanished head


def test_redis_paused_past_the_timeout_strands_nothing_and_sends_nothing_twice_at_once(  # type: ignore[no-untyped-def]
    settings, sandbox, tmp_path
) -> None:
    """SIGSTOP for longer than the client's 5 s timeout: what was sent runs on SIGCONT, once."""
    server = start_local_redis(tmp_path / "redis")
    own = with_settings(settings, redis_url=server.url)
    connection = redis.Redis.from_url(server.url)
    store = Store(connection)
    client = create_app(own, connection).test_client()
    worker = RunningWorker(own, connect(server.url, own.worker_redis_connections, "w")).start()
    sandbox.configure(latency_ms=300)
    try:
        with worker_log() as log:
            ids = [accept(client, f"paused_{i}") for i in range(12)]
            wait_until(lambda: len(sandbox.requests()) >= 2)
            server.process.send_signal(signal.SIGSTOP)  # takes and finishes are under way
            time.sleep(6)
            server.process.send_signal(signal.SIGCONT)
            wait_until(lambda: all(delivered(store, i) for i in ids), timeout=20)
            wait_until(lambda: store.inflight.processing(worker.process.name) == [])
            worker.stop()
            request_ids = {store.history.load(i).request_id for i in ids}
    finally:
        worker.stop()
        server.stop()
    calls = sandbox.requests()
    assert overlapping(calls) == []
    assert {call["headers"]["x-request-id"] for call in calls} == request_ids
    assert problems(log) == []
