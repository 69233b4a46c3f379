"""Crash windows and races around reclaim, finish and replay leave nothing stuck or doubled."""

from __future__ import annotations

import time

import redis

from relay.core.delivery import DeliveryState
from relay.storage.store import Store
from tests.helpers import DEFAULT_REPLY, ORG_A, headers, queued_ids, wait_until
from workers.process import INDEX_GRACE_SECONDS

URL = "/api/v1/contact/default-reply"
WORKER = "gone-worker"


def accept(client, **changes: str) -> str:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, **changes}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    return str(response.get_json()["data"]["delivery_id"])


def take_into(store: Store, worker: str) -> str:
    """Move the next queued delivery into a worker's processing list, as a worker would."""
    taken = store.inflight.take(ORG_A.id, worker)
    assert taken
    return taken


def test_a_finished_delivery_still_heading_its_chain_is_released_when_met_again(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    first, second = accept(client), accept(client, message_content="a follow-up")
    # The state of a worker killed between recording the result and leaving the chain (the
    # old two-step finish): `first` is delivered yet still heads the contact's chain.
    take_into(store, WORKER)
    delivery = store.history.load(first)
    delivery.state = DeliveryState.DELIVERED
    store.history.save(delivery)
    store.redis.lpush(store.keys.queue(ORG_A.id), first)  # as the reclaim hands it back
    start_worker()

    wait_until(lambda: store.history.load(second).state == DeliveryState.DELIVERED)
    assert [r["body"]["message_content"] for r in sandbox.requests()] == ["a follow-up"]


def test_a_stale_copy_of_a_dead_letter_leaves_its_replay_in_the_chain(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    delivery_id = accept(client)
    take_into(store, WORKER)
    store.history.finish(store.history.load(delivery_id), DeliveryState.DEAD, retention_seconds=60)
    stale = store.history.load(delivery_id)  # a leftover copy of the job loads it: dead, so GONE
    assert store.dead.replay(delivery_id)  # meanwhile an operator replays it

    assert store.ordering.release_if_finished(stale) == []
    assert all(
        store.redis.lrange(c, 0, -1) == [delivery_id.encode()]
        for c in store.ordering.chain_keys(stale)
    )
    start_worker()
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)


def test_finish_records_and_releases_in_one_step(client, store) -> None:  # type: ignore[no-untyped-def]
    first, second = accept(client), accept(client, message_content="next")
    for delivery_id in (first, second):
        take_into(store, WORKER)
        assert store.ordering.try_start(store.history.load(delivery_id)) is (delivery_id == first)

    woken = store.history.finish(
        store.history.load(first), DeliveryState.DEAD, retention_seconds=60
    )

    assert woken == [second]
    assert store.history.load(first).state == DeliveryState.DEAD
    assert store.dead.ids() == [first]
    assert 0 < store.redis.ttl(store.keys.delivery(first)) <= 60
    assert all(
        first not in store.redis.lrange(c, 0, -1)
        for c in store.ordering.chain_keys(store.history.load(first))
    )
    assert queued_ids(store.redis) == [second]


def test_an_orphan_is_requeued_once_and_only_while_it_is_listed(client, store) -> None:  # type: ignore[no-untyped-def]
    delivery_id = accept(client)
    take_into(store, WORKER)

    assert store.inflight.requeue_one(delivery_id, WORKER) is True
    assert store.inflight.requeue_one(delivery_id, WORKER) is False  # its thread finished meanwhile
    assert queued_ids(store.redis) == [delivery_id]
    assert store.inflight.processing(WORKER) == []


def test_reclaim_skips_what_something_else_will_run(client, store) -> None:  # type: ignore[no-untyped-def]
    lost = accept(client, username="lost")
    scheduled = accept(client, username="scheduled")
    parked_first = accept(client, username="parked")
    parked = accept(client, username="parked", message_content="second")
    requeued = accept(client, username="already_queued")
    finished = accept(client, username="finished")
    for _ in range(6):
        take_into(store, WORKER)
    store.schedule.put(store.history.load(scheduled), time.time() + 3600)
    assert store.ordering.try_start(store.history.load(parked)) is False
    store.redis.rpush(store.keys.queue(ORG_A.id), requeued)
    store.history.finish(
        store.history.load(finished), DeliveryState.DELIVERED, retention_seconds=60
    )
    store.redis.sadd(store.keys.key("workers"), WORKER)

    assert store.inflight.requeue_processing(WORKER) == 2
    assert sorted(queued_ids(store.redis)) == sorted([lost, parked_first, requeued])
    assert queued_ids(store.redis).count(requeued) == 1


def test_two_replays_of_one_dead_letter_at_once_queue_it_once(client, store, redis_server) -> None:  # type: ignore[no-untyped-def]
    delivery_id = accept(client)
    take_into(store, WORKER)
    store.history.finish(store.history.load(delivery_id), DeliveryState.DEAD, retention_seconds=60)
    rival = Store(redis.Redis.from_url(redis_server.url))

    def replay_while_a_rival_replays(pipe, delivery) -> None:  # type: ignore[no-untyped-def]
        assert rival.dead.replay(delivery_id) is True  # the rival commits first
        store.dead.queue_replay(pipe, delivery)

    assert store.dead.if_still_dead(delivery_id, replay_while_a_rival_replays) is False
    assert queued_ids(store.redis) == [delivery_id]
    chains = store.ordering.chain_keys(store.history.load(delivery_id))
    assert all(store.redis.lrange(c, 0, -1).count(delivery_id.encode()) == 1 for c in chains)
    assert store.dead.purge(delivery_id) is False  # no longer dead: a purge leaves it alone
    assert store.history.load(delivery_id) is not None


def test_a_statistics_failure_after_delivery_does_not_send_it_again(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, monkeypatch
) -> None:
    worker = start_worker()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("blip")

    monkeypatch.setattr(worker.deliverer.store.stats, "record", unreachable)
    delivery_id = accept(client)
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)
    time.sleep(0.5)  # a resend would come from the orphan reclaim; give it the chance
    assert len(sandbox.requests()) == 1


def test_the_worker_forgets_index_entries_older_than_every_retention(  # type: ignore[no-untyped-def]
    client, store, settings, start_worker
) -> None:
    recent = accept(client)
    kept = max(settings.delivered_retention_seconds, settings.dead_letter_retention_seconds)
    expired = time.time() - kept - INDEX_GRACE_SECONDS - 60
    store.redis.zadd(store.keys.key("index"), {"dlv_long_gone": expired})
    start_worker()

    wait_until(lambda: store.redis.zscore(store.keys.key("index"), "dlv_long_gone") is None)
    assert store.history.recent_ids(10) == [recent]
