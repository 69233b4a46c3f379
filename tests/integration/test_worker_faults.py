"""A worker that never stalls: Redis restarts, a slow loop, an expired heartbeat, a vanished
record, and keys of its own."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from relay.config import Org
from relay.core.delivery import DeliveryState
from relay.devtools.localredis import start_local_redis
from relay.storage.connection import connect
from relay.storage.keys import queue_name
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    ORG_B,
    RunningWorker,
    headers,
    wait_until,
    with_settings,
)

URL = "/api/v1/contact/default-reply"


def accept(client, name: str, message: str = "hello", org: Org = ORG_A) -> str | None:  # type: ignore[no-untyped-def]
    """Post a message of a contact of its own; return its id, or None if refused."""
    body = {**DEFAULT_REPLY, "username": name, "manychat_id": name, "message_content": message}
    body["page_name"] = org.page_name
    response = client.post(URL, json=body, headers=headers(org.token))
    return str(response.get_json()["data"]["delivery_id"]) if response.status_code == 200 else None


def delivered(store: Store, ids: list[str]) -> bool:
    return all(
        (d := store.history.load(i)) is not None and d.state == DeliveryState.DELIVERED for i in ids
    )


def leases(store: Store) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in store.redis.hgetall(store.keys.leases).items()}


class Feeder:
    """Post messages from a thread at a steady pace while Redis comes and goes."""

    def __init__(self, client: Any, per_second: float) -> None:
        self.client, self.interval = client, 1 / per_second
        self.accepted: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        index = 0
        while not self.stop.wait(self.interval):
            index += 1
            with contextlib.suppress(redis.RedisError):
                if delivery_id := accept(self.client, f"load_{index}"):
                    self.accepted.append(delivery_id)


# -- A Redis error never costs a slot -----------------------------------------------------------
def test_ten_redis_restarts_under_load_leave_every_slot(settings, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_local_redis(tmp_path / "redis", persist=True)
    own = with_settings(settings, redis_url=server.url, worker_concurrency=4)
    connection = redis.Redis.from_url(server.url)
    store = Store(connection)
    client_of_worker = connect(server.url, own.worker_redis_connections, "dmrelay-worker")
    worker = RunningWorker(own, client_of_worker).start()  # the production client
    feeder = Feeder(create_app(own, connection).test_client(), per_second=20)
    sandbox.configure(latency_ms=50)
    try:
        feeder.thread.start()
        for _ in range(10):
            time.sleep(0.4)
            server.stop()
            time.sleep(0.3)
            server = start_local_redis(tmp_path / "redis", port=server.port, persist=True)
        feeder.stop.set()
        feeder.thread.join(timeout=10)
        wait_until(lambda: delivered(store, feeder.accepted), timeout=60)

        sandbox.configure(latency_ms=1500)
        client = create_app(own, connection).test_client()
        # Both organizations: neither may hold more than three quarters of the slots.
        ids = [accept(client, f"after_{i}", org=org) for i in range(4) for org in (ORG_A, ORG_B)]
        wait_until(lambda: len(leases(store)) == 4)  # every slot is in use again
        assert worker.thread.is_alive()
        assert feeder.accepted and all(ids)
    finally:
        worker.stop()
        server.stop()


# -- A slow main loop is not a dead worker --------------------------------------------------------
def test_a_main_loop_stalled_past_the_heartbeat_ttl_is_not_taken_for_dead(  # type: ignore[no-untyped-def]
    client, store, settings, sandbox, start_worker, monkeypatch
) -> None:
    quick = with_settings(settings, worker_heartbeat_ttl_seconds=3)
    sandbox.configure(latency_ms=5000)
    workers = [start_worker(quick), start_worker(quick)]
    delivery_id = accept(client, "stalled")
    assert delivery_id
    wait_until(lambda: delivery_id in leases(store))
    lease = leases(store)[delivery_id]
    holder = next(w for w in workers if w.process.name == lease.split()[0])
    move_due = holder.process.store.schedule.move_due

    def slow_move_due(*args: Any, **kwargs: Any) -> int:
        time.sleep(4.5)  # one slow Redis call: the loop stalls past the 3 s TTL
        return move_due(*args, **kwargs)

    monkeypatch.setattr(holder.process.store.schedule, "move_due", slow_move_due)
    taken_for_dead, taken_over = False, False
    for _ in range(100):  # 5 s: the stall, and the time the others take to notice
        taken_for_dead |= holder.process.name in store.inflight.dead_workers("test")
        taken_over |= leases(store).get(delivery_id, lease) != lease
        time.sleep(0.05)

    assert not taken_for_dead
    assert not taken_over
    wait_until(lambda: delivered(store, [delivery_id]), timeout=15)
    assert len(sandbox.requests()) == 1


# -- Nothing can park a contact for ever ----------------------------------------------------------
def test_a_contact_whose_head_vanished_in_flight_still_gets_its_next_message(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    first, second = accept(client, "vanishing"), accept(client, "vanishing", "the next one")
    assert first and second
    # A worker took `first` and then died; `second` waits, parked, behind it.
    assert store.inflight.take("dead-worker", [ORG_A.id]).verdict == "start"  # type: ignore[union-attr]
    assert store.inflight.take("dead-worker", [ORG_A.id]).verdict == "parked"  # type: ignore[union-attr]
    store.redis.sadd(store.keys.workers, "dead-worker")
    store.redis.delete(store.keys.delivery(first))  # its record vanishes while in flight

    start_worker()
    wait_until(lambda: delivered(store, [second]))
    assert [r["body"]["message_content"] for r in sandbox.requests()] == ["the next one"]
    assert f"its head {first} will never finish" in caplog.text


def test_a_vanished_record_met_on_the_queue_frees_its_contact_at_once(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    first, second = accept(client, "gone"), accept(client, "gone", "the next one")
    assert first and second
    assert store.inflight.take("dead-worker", [ORG_A.id]).verdict == "start"  # type: ignore[union-attr]
    assert store.inflight.take("dead-worker", [ORG_A.id]).verdict == "parked"  # type: ignore[union-attr]
    store.redis.delete(store.keys.delivery(first), store.keys.processing("dead-worker"))
    store.redis.rpush(store.keys.queue(ORG_A.id), first)  # a copy comes round again

    start_worker()
    wait_until(lambda: delivered(store, [second]))


# -- Own keys, honest claims -------------------------------------------------------------------
def test_retries_wait_in_rqs_scheduled_registry_and_rqs_scheduler_only_queues_them(  # type: ignore[no-untyped-def]
    client, store, redis_conn
) -> None:
    delivery_id = accept(client, "retry")
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    store.schedule.put(taken.delivery, time.time() - 1, taken.lease)  # due already
    assert ScheduledJobRegistry(queue_name(ORG_A.id), connection=redis_conn).get_job_ids() == [
        delivery_id
    ]

    # A stock `rq worker --with-scheduler` moves a due one onto its queue, as the relay would.
    scheduler = RQScheduler([queue_name(ORG_A.id)], connection=redis_conn)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()

    again = store.inflight.take("w", [ORG_A.id])
    assert again is not None and (again.verdict, again.delivery_id) == ("start", delivery_id)


def test_the_worker_trims_dead_letters_whose_records_expired(  # type: ignore[no-untyped-def]
    client, store, settings, start_worker
) -> None:
    kept = accept(client, "kept")
    assert kept
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    store.history.finish(taken.delivery, DeliveryState.DEAD, 3600, taken.lease)
    retention = settings.dead_letter_retention_seconds
    store.redis.zadd(store.keys.dead, {"dlv_expired_long_ago": time.time() - retention - 60})
    store.redis.zadd(store.keys.dead, {"dlv_evicted": time.time()})
    assert store.stats.totals()["dead_letters"] == 3

    start_worker()  # nobody lists the dead letters: the worker's maintenance trims them
    wait_until(lambda: store.stats.totals()["dead_letters"] == 1)
    assert store.redis.zrange(store.keys.dead, 0, -1) == [kept.encode()]
