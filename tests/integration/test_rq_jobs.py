"""Every undelivered delivery as an RQ job RQ reads: the job hash and registries, per state."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from relay.core.delivery import Delivery, DeliveryState
from relay.storage import deadletter_actions, lua, rqjobs
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.keys import queue_name
from relay.storage.store import Store
from tests.helpers import ORG_A, store_dead_letter

QUEUE = queue_name(ORG_A.id)


def accept(store: Store, message: str = "hello", username: str = "john_doe") -> Delivery:
    payload = {"organization_id": ORG_A.id, "username": username, "message_content": message}
    delivery = Delivery.new(ORG_A.id, "default-reply", payload)
    same = fingerprint(ORG_A.id, "default-reply", delivery.id)
    store.intake.accept(delivery, same, window_seconds=0, quotas=NO_QUOTAS)
    return delivery


def fetch(connection: redis.Redis, delivery_id: str) -> Job:
    return Job.fetch(delivery_id, connection=connection, serializer=JSONSerializer)


def test_a_queued_delivery_is_a_job_rq_restores(store: Store, redis_conn: redis.Redis) -> None:
    delivery = accept(store, message="secret lead text")
    job = fetch(redis_conn, delivery.id)

    assert job.func_name == rqjobs.TASK
    assert job.args == [delivery.id] and job.kwargs == {}
    assert job.origin == QUEUE and job.get_status() == JobStatus.QUEUED
    assert job.description is None  # dead letters only: 32 bytes a queued job
    assert abs(job.created_at.timestamp() - delivery.received_at) < 1.5
    assert Queue(QUEUE, connection=redis_conn).get_job_ids() == [delivery.id]
    stored = b"".join(redis_conn.hvals(rqjobs.job_key(delivery.id)))
    assert b"secret lead text" not in stored and ORG_A.token.encode() not in stored


def test_a_retry_waits_in_rqs_scheduled_registry(store: Store, redis_conn: redis.Redis) -> None:
    delivery = accept(store)
    due = time.time() + 60
    store.schedule.put(delivery, due)

    registry = ScheduledJobRegistry(QUEUE, connection=redis_conn)
    assert registry.get_job_ids() == [delivery.id]
    assert fetch(redis_conn, delivery.id).get_status() == JobStatus.SCHEDULED
    assert store.stats.depths([ORG_A.id])[ORG_A.id]["scheduled"] == 1

    assert store.schedule.move_due([ORG_A.id], now=due + 1) == 1
    assert fetch(redis_conn, delivery.id).get_status() == JobStatus.QUEUED
    assert registry.count == 0


def test_a_dead_letter_is_a_failed_job_with_its_reason(
    store: Store, redis_conn: redis.Redis
) -> None:
    delivery_id = store_dead_letter(store, ORG_A.id)

    registry = FailedJobRegistry(QUEUE, connection=redis_conn)
    assert registry.get_job_ids() == [delivery_id]
    job = fetch(redis_conn, delivery_id)
    assert job.get_status() == JobStatus.FAILED and job.ended_at is not None
    result = job.latest_result()
    assert result is not None and result.exc_string == "DmTracker answered 400"
    assert 0 < redis_conn.ttl(rqjobs.job_key(delivery_id)) <= 3600
    assert len(store.dead.ids()) == registry.count == 1


def test_failure_text_never_holds_markup(store: Store, redis_conn: redis.Redis) -> None:
    delivery = accept(store)
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    taken.delivery.reason = 'DmTracker answered 400: <script>alert("x")</script> & co'
    store.history.finish(taken.delivery, DeliveryState.DEAD, 3600, taken.lease)

    job = fetch(redis_conn, delivery.id)
    result = job.latest_result()
    assert result is not None and result.exc_string is not None
    for text in (result.exc_string, job._exc_info or ""):
        assert "<" not in text and ">" not in text
        assert "&lt;script&gt;" in text and "&amp; co" in text


def test_delivered_removes_the_job_and_replay_brings_it_back(
    store: Store, redis_conn: redis.Redis
) -> None:
    delivery = accept(store)
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    store.history.finish(taken.delivery, DeliveryState.DELIVERED, 3600, taken.lease, summary=True)
    assert not redis_conn.exists(rqjobs.job_key(delivery.id))

    dead_id = store_dead_letter(store, ORG_A.id, message="later")
    assert store.dead.replay(dead_id)
    job = fetch(redis_conn, dead_id)
    assert job.get_status() == JobStatus.QUEUED and job.latest_result() is None
    assert redis_conn.ttl(rqjobs.job_key(dead_id)) == -1
    assert FailedJobRegistry(QUEUE, connection=redis_conn).count == 0
    assert dead_id in Queue(QUEUE, connection=redis_conn).get_job_ids()


def test_purge_removes_the_job(store: Store, redis_conn: redis.Redis) -> None:
    dead_id = store_dead_letter(store, ORG_A.id)
    assert store.dead.purge(dead_id)
    assert not redis_conn.exists(rqjobs.job_key(dead_id), rqjobs.results_key(dead_id))
    assert FailedJobRegistry(QUEUE, connection=redis_conn).count == 0


def test_a_job_deleted_from_an_rq_tool_is_a_purge(store: Store, redis_conn: redis.Redis) -> None:
    kept, deleted = store_dead_letter(store, ORG_A.id), store_dead_letter(store, ORG_A.id, "x")
    Job.fetch(deleted, connection=redis_conn).delete()

    assert deadletter_actions.apply_rq_deletions(store) == (1, 0)
    assert store.history.load(deleted) is None and store.dead.ids() == [kept]


def test_a_waiting_job_deleted_from_an_rq_tool_is_a_purge_and_frees_its_contact(
    store: Store, redis_conn: redis.Redis
) -> None:
    first, second = accept(store, "one"), accept(store, "two")  # the same contact
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery_id == first.id
    store.schedule.put(taken.delivery, time.time() + 600, taken.lease)  # retrying
    parked = store.inflight.take("w", [ORG_A.id])
    assert parked is not None and parked.verdict == "parked"
    Job.fetch(first.id, connection=redis_conn).delete()  # rq-dashboard's delete

    assert deadletter_actions.apply_rq_deletions(store) == (1, 0)
    assert store.history.load(first.id) is None
    assert ScheduledJobRegistry(QUEUE, connection=redis_conn).count == 0
    assert Queue(QUEUE, connection=redis_conn).get_job_ids() == [second.id]  # woken
    assert store.stats.pending_count() == 1
    assert deadletter_actions.apply_rq_deletions(store) == (0, 0)


def test_the_lua_scripts_name_rqs_job_keys() -> None:
    assert f"'{Job.redis_job_namespace_prefix}'" in lua.source("rq_job")


@pytest.mark.parametrize("text", ["<b>", "a & b", "x > y"])
def test_plain_text_escapes_markup(text: str) -> None:
    assert not set("<>") & set(rqjobs.plain_text(text)) and "& " not in rqjobs.plain_text(text)
