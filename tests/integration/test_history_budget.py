"""Delivered history is trimmed to its memory budget, so it never crowds out new leads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relay.config import Settings
from relay.core.delivery import Delivery, DeliveryState
from relay.core.record import record_json
from relay.devtools.localredis import start_local_redis
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    RunningWorker,
    Sandbox,
    headers,
    wait_until,
    with_settings,
)

MAXMEMORY = 25 * 1024 * 1024
MESSAGE = "Hi! I saw your post about the spring offer and I would love to know more. " * 8


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """Start a redis-server with a mini plan's memory: 25 MB, noeviction."""
    server = start_local_redis(tmp_path)
    connection = redis.Redis.from_url(server.url)
    connection.config_set("maxmemory", MAXMEMORY)
    yield connection
    connection.close()
    server.stop()


def keep(store: Store, count: int, state: str = DeliveryState.DELIVERED) -> list[str]:
    """Store records as accept and finish leave them, in one round trip."""
    ids = []
    with store.redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            payload = {**DEFAULT_REPLY, "message_content": MESSAGE, "manychat_id": str(i)}
            delivery = Delivery.new(ORG_A.id, "default-reply", payload, state=state)
            pipe.set(store.keys.delivery(delivery.id), record_json(delivery))
            pipe.zadd(store.keys.index, {delivery.id: delivery.received_at})
            if state == DeliveryState.DEAD:
                pipe.zadd(store.keys.dead, {delivery.id: delivery.received_at})
            elif state != DeliveryState.DELIVERED:
                pipe.hincrby(store.keys.pending, ORG_A.id, 1)  # counted by organization
            ids.append(delivery.id)
        pipe.execute()
    return ids


def test_budget_is_a_quarter_of_maxmemory_else_the_setting(
    small_redis: redis.Redis, redis_conn: redis.Redis
) -> None:
    assert Store(small_redis).history.budget_bytes(64) == MAXMEMORY // 4
    assert Store(redis_conn).history.budget_bytes(64) == 64 * 1024 * 1024


def test_trim_deletes_the_oldest_delivered_and_never_a_lead(small_redis: redis.Redis) -> None:
    store = Store(small_redis)
    oldest = keep(store, 300)
    queued, dead = keep(store, 50, DeliveryState.QUEUED), keep(store, 50, DeliveryState.DEAD)
    newest = keep(store, 300)
    size = small_redis.memory_usage(store.keys.delivery(newest[0]))
    deleted = store.history.trim(budget_bytes=400 * size)
    assert 150 <= deleted <= 300
    kept = [bool(small_redis.exists(store.keys.delivery(i))) for i in oldest + newest]
    assert kept == sorted(kept)  # the oldest went first
    assert all(small_redis.exists(store.keys.delivery(i)) for i in queued + dead)
    assert store.history.trim(budget_bytes=400 * size) == 0  # within budget now


def test_history_never_crowds_out_new_leads_on_a_25mb_redis(
    small_redis: redis.Redis, settings: Settings, sandbox: Sandbox
) -> None:
    store = Store(small_redis)
    budget = store.history.budget_bytes(settings.history_max_mb)
    for _ in range(12):  # about 30 MB of delivered history in all: more than the server holds
        keep(store, 2000)
        store.history.trim(budget)
    assert small_redis.info("memory")["used_memory"] < MAXMEMORY * 0.6

    url = small_redis.connection_pool.connection_kwargs
    custom = with_settings(settings, redis_url=f"redis://{url['host']}:{url['port']}")
    client = create_app(custom, small_redis).test_client()
    response = client.post(
        "/api/v1/contact/default-reply", json=DEFAULT_REPLY, headers=headers(ORG_A.token)
    )
    assert response.status_code == 200
    delivery_id = response.get_json()["data"]["delivery_id"]
    worker = RunningWorker(custom, small_redis).start()
    try:
        wait_until(
            lambda: (d := store.history.load(delivery_id)) and d.state == DeliveryState.DELIVERED
        )
    finally:
        worker.stop()
