"""Delivered history is trimmed to its memory budget, so it never crowds out new leads."""

from __future__ import annotations

import time
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


def expire(store: Store, ids: list[str]) -> None:
    """Delete records as their TTL would, leaving their index entries behind."""
    store.redis.delete(*(store.keys.delivery(i) for i in ids))


def test_index_entries_go_with_their_records(small_redis: redis.Redis) -> None:
    store = Store(small_redis)
    expired, kept = keep(store, 700), keep(store, 100)
    dead = keep(store, 10, DeliveryState.DEAD)
    expire(store, expired)
    store.history.trim(budget_bytes=MAXMEMORY)  # within budget: nothing else goes
    assert {i.decode() for i in small_redis.zrange(store.keys.index, 0, -1)} == {*kept, *dead}


def test_the_trim_measures_records_that_exist_not_a_sample_that_expired(
    small_redis: redis.Redis,
) -> None:
    store = Store(small_redis)
    expire(store, keep(store, 200))  # the index's head: records gone
    newest = keep(store, 400)
    size = small_redis.memory_usage(store.keys.delivery(newest[0]))
    assert 100 <= store.history.trim(budget_bytes=200 * size) <= 300
    assert store.history.oldest_kept_delivered(0) > 0  # the contacts upkeep's cutoff


def test_contact_links_count_against_the_budget(small_redis: redis.Redis) -> None:
    store = Store(small_redis)
    records = keep(store, 100)
    links = {f"a:{n}": f"user_{n}|{2**31}" for n in range(2000)}
    small_redis.hset(store.keys.contacts(ORG_A.id), mapping=links)
    cost = store.history.cost([ORG_A.id])
    assert cost.contacts_bytes == small_redis.memory_usage(store.keys.contacts(ORG_A.id), samples=0)
    assert cost.total == cost.records_bytes + cost.index_bytes + cost.contacts_bytes
    # The links alone are over it: every delivered record goes, then the idle links do.
    assert store.history.trim(cost.contacts_bytes // 2, [ORG_A.id]) == len(records)
    assert store.history.oldest_kept_delivered(0) > 0
    assert store.history.trim(cost.contacts_bytes // 2, [ORG_A.id]) == 0
    assert store.history.oldest_kept_delivered(0) >= time.time() - 5


def test_idle_aliases_older_than_the_history_go_and_those_on_their_way_stay(
    small_redis: redis.Redis,
) -> None:
    store = Store(small_redis)
    contacts = store.keys.contacts(ORG_A.id)
    made_long_ago = int(time.time()) + 30 * 24 * 3600 - 3600  # expiry of an alias an hour old
    small_redis.hset(
        contacts,
        mapping={
            "a:idle": f"idle_user|{made_long_ago}",
            "a:busy": f"busy_user|{made_long_ago}",
            "q:u:busy_user": "some-delivery-id",
            "a:young": f"young_user|{made_long_ago + 3000}",
        },
    )
    cursor = -1
    while cursor:
        cursor, _ = store.contacts.forget_expired(
            ORG_A.id, max(cursor, 0), aliases_made_before=time.time() - 1800
        )
    assert sorted(f.decode() for f in small_redis.hkeys(contacts)) == [
        "a:busy",
        "a:young",
        "q:u:busy_user",
    ]
