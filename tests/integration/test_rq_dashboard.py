"""RQ's own tools on the relay's Redis: rq-dashboard's routes and `rq info` tell the truth and
lose nothing, its requeue is a replay, its delete a purge; then the worker delivers everything."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq_dashboard.cli import make_flask_app
from rq_dashboard.web import setup_rq_connection

from relay.core.delivery import DeliveryState
from relay.devtools.localredis import LocalRedis
from relay.storage import deadletter_actions, rqjobs
from relay.storage.keys import queue_name
from relay.storage.store import Store
from tests.helpers import ORG_A, Sandbox, accept_default_reply, wait_until

QUEUE = queue_name(ORG_A.id)
REASON = 'DmTracker answered 400: <b onmouseover="alert(1)">bad</b> & worse'


@pytest.fixture
def dashboard(redis_server: LocalRedis) -> FlaskClient:
    """Return a test client of rq-dashboard, as `rq-dashboard --redis-url` would serve it."""
    app = make_flask_app(None, None, None, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_server.url
    setup_rq_connection(app)
    return app.test_client()


def take(store: Store) -> Any:
    taken = store.inflight.take("setup", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    return taken


def hold_every_state(store: Store) -> dict[str, list[str]]:
    """Store 3 queued, 1 retrying (due in 3 s) and 2 dead deliveries, as the worker would."""
    ids: dict[str, list[str]] = {"dead": [], "scheduled": []}
    for name in ("dead_one", "dead_two"):
        accept_default_reply(store, name)
        taken = take(store)
        taken.delivery.reason = REASON
        store.history.finish(taken.delivery, DeliveryState.DEAD, 3600, taken.lease)
        ids["dead"].append(taken.delivery_id)
    accept_default_reply(store, "retrying")
    taken = take(store)
    store.schedule.put(taken.delivery, time.time() + 3, taken.lease)
    ids["scheduled"].append(taken.delivery_id)
    ids["queued"] = [accept_default_reply(store, f"queued_{i}").id for i in range(3)]
    return ids


def relay_counts(store: Store) -> dict[str, int]:
    depth = store.stats.depths([ORG_A.id])[ORG_A.id]
    return {
        "queued": depth["queued"],
        "scheduled": depth["scheduled"],
        "dead": len(store.dead.ids()),
    }


def dashboard_counts(dashboard: FlaskClient) -> dict[str, int]:
    queues = get_json(dashboard, "/0/data/queues.json")["queues"]
    mine = next(q for q in queues if q["name"] == QUEUE)
    return {
        "queued": mine["count"],
        "scheduled": mine["scheduled_job_registry_count"],
        "dead": mine["failed_job_registry_count"],
    }


def get_json(dashboard: FlaskClient, path: str) -> Any:
    response = dashboard.get(path)
    assert response.status_code == 200, (path, response.data[:300])
    return response.get_json()


def listed(dashboard: FlaskClient, registry: str) -> list[dict[str, Any]]:
    return list(get_json(dashboard, f"/0/data/jobs/{QUEUE}/{registry}/50/asc/1.json")["jobs"])


def test_rq_dashboard_and_rq_info_tell_the_truth_and_lose_nothing(  # type: ignore[no-untyped-def]
    dashboard: FlaskClient,
    store: Store,
    redis_conn: redis.Redis,
    redis_server: LocalRedis,
    sandbox: Sandbox,
    start_worker,
) -> None:
    ids = hold_every_state(store)
    queue_before = redis_conn.lrange(store.keys.queue(ORG_A.id), 0, -1)
    expected = {"queued": 3, "scheduled": 1, "dead": 2}
    assert relay_counts(store) == dashboard_counts(dashboard) == expected

    # Every list and page, viewed: the same ids, and the queue untouched after each view.
    for page in (
        "/",
        "/0/view/queues",
        "/0/view/workers",
        f"/0/view/jobs/{QUEUE}/queued/8/asc/1",
        f"/0/view/jobs/{QUEUE}/scheduled/8/asc/1",
        f"/0/view/jobs/{QUEUE}/failed/8/asc/1",
        f"/0/view/job/{ids['dead'][0]}",
    ):
        assert dashboard.get(page, follow_redirects=True).status_code == 200, page
        assert redis_conn.lrange(store.keys.queue(ORG_A.id), 0, -1) == queue_before
    for registry in ("queued", "scheduled", "failed"):
        jobs = listed(dashboard, registry)
        assert [job["id"] for job in jobs] == ids["dead" if registry == "failed" else registry]
        assert redis_conn.lrange(store.keys.queue(ORG_A.id), 0, -1) == queue_before
    for job in listed(dashboard, "failed"):
        # The reason, as plain text: nothing a browser would read as markup.
        assert job["exc_info"] == rqjobs.plain_text(REASON)
        assert "<" not in job["exc_info"] and job["description"] == "default-reply"
    page = get_json(dashboard, f"/0/data/job/{ids['queued'][0]}.json")
    assert (page["status"], page["origin"]) == ("queued", QUEUE)
    assert relay_counts(store) == dashboard_counts(dashboard) == expected
    assert queue_line(rq_info(redis_server.url)).endswith(" 3, 0 executing, 0 finished, 2 failed")

    # Delete one dead letter: a purge. Requeue the other (by GET, as the dashboard allows).
    deleted, requeued = ids["dead"]
    assert dashboard.post(f"/job/{deleted}/delete").get_json()["status"] == "OK"
    assert deadletter_actions.apply_rq_deletions(store) == (1, 0)
    assert store.history.load(deleted) is None and store.dead.ids() == [requeued]
    assert get_json(dashboard, f"/requeue/{QUEUE}")["count"] == 1

    worker = start_worker()
    everything = [*ids["queued"], *ids["scheduled"], requeued]
    delivered = lambda: all(  # noqa: E731
        (d := store.history.load(i)) is not None and d.state == DeliveryState.DELIVERED
        for i in everything
    )
    wait_until(delivered, timeout=30)
    sent = [r["body"]["username"] for r in sandbox.requests()]
    assert sorted(sent) == sorted(["dead_two", "retrying", "queued_0", "queued_1", "queued_2"])
    replayed = store.history.load(requeued)
    assert replayed is not None and replayed.replays == 1
    assert (
        relay_counts(store)
        == dashboard_counts(dashboard)
        == {"queued": 0, "scheduled": 0, "dead": 0}
    )
    assert not any(redis_conn.exists(rqjobs.job_key(i)) for i in everything)

    # `rq info` lists the queues with their counts and the running worker.
    workers = get_json(dashboard, "/0/data/workers.json")["workers"]
    assert [w["name"] for w in workers] == [worker.process.name]
    assert workers[0]["queues"] == [queue_name(ORG_A.id), queue_name(org_b_id(worker))]
    info = rq_info(redis_server.url)
    assert queue_line(info).endswith(" 0, 0 executing, 0 finished, 0 failed")
    line = next(line for line in info.splitlines() if line.startswith(f"{worker.process.name} ("))
    assert ": idle " in line or ": busy " in line
    assert QUEUE in line and queue_name(org_b_id(worker)) in line
    assert "1 workers" in info


def org_b_id(worker: Any) -> str:
    return str(worker.process.org_ids[1])


def queue_line(info: str) -> str:
    return next(line for line in info.splitlines() if line.startswith(f"{QUEUE} |"))


def rq_info(url: str) -> str:
    rq = Path(sys.executable).with_name("rq")
    done = subprocess.run(
        [str(rq), "info", "--url", url], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout
