"""Crash windows and races around reclaim, finish and replay leave nothing stuck or doubled."""

from __future__ import annotations

import time

import pytest
import redis

from relay.core.delivery import DeliveryState
from relay.core.errors import LeaseLost
from relay.storage.inflight import HELD, PARKED, START, Taken
from relay.storage.store import Store
from tests.helpers import DEFAULT_REPLY, ORG_A, headers, queued_ids, wait_until
from workers.maintenance import INDEX_GRACE_SECONDS

URL = "/api/v1/contact/default-reply"
WORKER = "gone-worker"


def accept(client, **changes: str) -> str:  # type: ignore[no-untyped-def]
    body = {**DEFAULT_REPLY, **changes}
    response = client.post(URL, json=body, headers=headers(ORG_A.token))
    return str(response.get_json()["data"]["delivery_id"])


def accept_for(client, name: str) -> str:  # type: ignore[no-untyped-def]
    """Accept a message of a contact of its own."""
    return accept(client, username=name, manychat_id=name)


def take(store: Store, worker: str = WORKER, verdict: str = START) -> Taken:
    """Take the next queued delivery as a worker would, and check what the take found."""
    taken = store.inflight.take(worker, [ORG_A.id])
    assert taken is not None
    assert taken.verdict == verdict
    return taken


def chain_entries(store: Store, delivery_id: str) -> dict[str, int]:
    """Return how often the delivery is in each of ORG_A's chains that hold it."""
    lines = store.redis.hgetall(store.keys.contacts(ORG_A.id))
    counts = {
        field.decode(): line.decode().split(" ").count(delivery_id)
        for field, line in lines.items()
        if field.startswith(b"q:")
    }
    return {field: count for field, count in counts.items() if count}


def test_a_finished_delivery_still_heading_its_chain_is_released_when_met_again(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker
) -> None:
    first, second = accept(client), accept(client, message_content="a follow-up")
    # The state of a worker killed between recording the result and leaving the chain (an
    # old two-step finish): `first` is delivered yet still heads the contact's chain.
    delivery = take(store).delivery
    assert delivery is not None
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
    taken = take(store)
    assert taken.delivery is not None
    store.history.finish(taken.delivery, DeliveryState.DEAD, 60, taken.lease)
    assert store.dead.replay(delivery_id)  # an operator replays it...
    store.redis.rpush(store.keys.queue(ORG_A.id), delivery_id)  # ...while a stale copy waits

    start_worker()
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)
    wait_until(lambda: not queued_ids(store.redis))
    assert len(sandbox.requests()) == 1
    assert chain_entries(store, delivery_id) == {}


def test_finish_records_and_releases_in_one_step(client, store) -> None:  # type: ignore[no-untyped-def]
    first, second = accept(client), accept(client, message_content="next")
    taken = take(store)
    take(store, verdict=PARKED)  # `second` waits behind `first`
    assert taken.delivery is not None

    woken = store.history.finish(taken.delivery, DeliveryState.DEAD, 60, taken.lease)

    assert woken == [second]
    assert store.history.load(first).state == DeliveryState.DEAD
    assert store.dead.ids() == [first]
    assert 0 < store.redis.ttl(store.keys.delivery(first)) <= 60
    assert chain_entries(store, first) == {}
    assert queued_ids(store.redis) == [second]
    assert store.inflight.processing(WORKER) == []
    assert store.inflight.lease_of(first) is None


def test_an_orphan_is_requeued_once_and_a_running_one_never(client, store) -> None:  # type: ignore[no-untyped-def]
    running, orphan = accept_for(client, "running"), accept_for(client, "orphan")
    working = take(store)
    take(store)  # its thread failed before it could record anything

    assert store.inflight.requeue_orphans(WORKER, [working.lease]) == 1
    assert store.inflight.requeue_orphans(WORKER, [working.lease]) == 0
    assert queued_ids(store.redis) == [orphan]
    assert store.inflight.processing(WORKER) == [running]
    assert store.inflight.lease_of(orphan) is None


def test_reclaim_skips_what_something_else_will_run(client, store) -> None:  # type: ignore[no-untyped-def]
    lost = accept_for(client, "lost")
    scheduled = accept_for(client, "scheduled")
    requeued = accept_for(client, "already_queued")
    finished = accept_for(client, "finished")
    taken = {t.delivery_id: t for t in (take(store) for _ in range(4))}
    scheduled_delivery = taken[scheduled].delivery
    finished_delivery = taken[finished].delivery
    assert scheduled_delivery is not None and finished_delivery is not None
    store.schedule.put(scheduled_delivery, time.time() + 3600)
    store.redis.rpush(store.keys.queue(ORG_A.id), requeued)
    store.history.finish(finished_delivery, DeliveryState.DELIVERED, 60)
    store.redis.sadd(store.keys.workers, WORKER)

    assert store.inflight.requeue_processing(WORKER) == 1
    assert sorted(queued_ids(store.redis)) == sorted([lost, requeued])
    assert store.inflight.lease_of(lost) is None


def test_reclaim_leaves_a_parked_delivery_parked(client, store) -> None:  # type: ignore[no-untyped-def]
    first, second = accept(client), accept(client, message_content="second")
    take(store)
    take(store, verdict=PARKED)
    store.redis.rpush(store.keys.processing(WORKER), second)  # listed, as a crash could leave it
    store.redis.sadd(store.keys.workers, WORKER)

    assert store.inflight.requeue_processing(WORKER) == 1
    assert queued_ids(store.redis) == [first]


def test_reclaim_never_sends_a_delivery_twice_at_once(client, store) -> None:  # type: ignore[no-untyped-def]
    """Reclaim while the first worker still runs, at the store level: one send at a time."""
    x = accept(client)
    follow_up = accept(client, message_content="a follow-up")
    for alive in ("B", "C"):
        store.inflight.heartbeat(alive, 30)
    store.redis.sadd(store.keys.workers, "A")  # A is registered; its heartbeat has expired

    # 1. Worker A took X, got a 503 and scheduled the retry, and was killed before done().
    a = take(store, "A")
    take(store, "A", verdict=PARKED)  # the follow-up waits behind X
    assert a.delivery is not None
    store.schedule.put(a.delivery, time.time() - 1, a.lease)
    store.redis.rpush(store.keys.processing("A"), x)  # what the old two-step left behind
    # 2. X came due and worker B took it.
    assert store.schedule.move_due([ORG_A.id]) == 1
    b = take(store, "B")
    assert (b.delivery_id, store.inflight.lease_of(x)) == (x, b.lease.value)
    # 3. Reclaiming A's list must not queue X again while B holds it.
    assert store.inflight.requeue_processing("A") == 0
    assert queued_ids(store.redis) == []
    # 4. Even a stray copy on the queue does not let worker C start it.
    store.redis.rpush(store.keys.queue(ORG_A.id), x)
    c = take(store, "C", verdict=HELD)
    assert c.delivery_id == x
    assert (queued_ids(store.redis), store.inflight.processing("C")) == ([], [])
    # A's late result is refused; B's finish wakes the contact's next message, once.
    with pytest.raises(LeaseLost):
        store.history.finish(a.delivery, DeliveryState.DELIVERED, 60, a.lease)
    assert b.delivery is not None
    assert store.history.finish(b.delivery, DeliveryState.DELIVERED, 60, b.lease) == [follow_up]
    assert queued_ids(store.redis) == [follow_up]


def test_a_worker_taken_for_dead_loses_its_delivery_and_records_nothing(client, store) -> None:  # type: ignore[no-untyped-def]
    x = accept(client)
    follow_up = accept(client, message_content="a follow-up")
    store.inflight.heartbeat("A", 30)
    a = take(store, "A")
    take(store, "A", verdict=PARKED)  # the follow-up waits behind X
    store.redis.delete(store.keys.worker("A"))  # A stalls past its heartbeat TTL
    assert store.inflight.dead_workers("B") == ["A"]
    assert store.inflight.requeue_processing("A") == 1  # another worker reclaims X
    assert a.delivery is not None
    with pytest.raises(LeaseLost) as handed_back:  # requeued, nobody has taken it yet
        store.history.finish(a.delivery, DeliveryState.DELIVERED, 60, a.lease)
    assert handed_back.value.holder is None
    store.inflight.heartbeat("B", 30)
    b = take(store, "B")
    assert a.delivery is not None and b.delivery is not None

    with pytest.raises(LeaseLost) as lost_retry:
        store.schedule.put(a.delivery, time.time() + 60, a.lease)
    with pytest.raises(LeaseLost) as lost_finish:
        store.history.finish(a.delivery, DeliveryState.DELIVERED, 60, a.lease)
    assert lost_retry.value.holder == lost_finish.value.holder == "B"  # named in the log line
    assert store.history.load(x).state == "queued"  # nothing A wrote stuck
    assert store.redis.zcard(store.keys.scheduled(ORG_A.id)) == 0
    assert queued_ids(store.redis) == []  # the contact's next message still waits for B
    assert store.history.finish(b.delivery, DeliveryState.DELIVERED, 60, b.lease) == [follow_up]


def test_two_replays_of_one_dead_letter_at_once_queue_it_once(client, store, redis_server) -> None:  # type: ignore[no-untyped-def]
    delivery_id = accept(client)
    taken = take(store)
    assert taken.delivery is not None
    store.history.finish(taken.delivery, DeliveryState.DEAD, 60, taken.lease)
    rival = Store(redis.Redis.from_url(redis_server.url))

    def replay_while_a_rival_replays(pipe, delivery) -> None:  # type: ignore[no-untyped-def]
        assert rival.dead.replay(delivery_id) is True  # the rival commits first
        store.dead.queue_replay(pipe, delivery)

    assert store.dead.if_still_dead(delivery_id, replay_while_a_rival_replays) is False
    assert queued_ids(store.redis) == [delivery_id]
    assert set(chain_entries(store, delivery_id).values()) == {1}
    assert store.dead.purge(delivery_id) is False  # no longer dead: a purge leaves it alone
    assert store.history.load(delivery_id) is not None


def test_a_statistics_failure_after_delivery_does_not_send_it_again(  # type: ignore[no-untyped-def]
    client, store, sandbox, start_worker, monkeypatch
) -> None:
    worker = start_worker()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("blip")

    monkeypatch.setattr(worker.deliverer.store.stats, "_write_increments", unreachable)
    delivery_id = accept(client)
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DELIVERED)
    time.sleep(1.5)  # a resend would come from the orphan reclaim; give it the chance
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
