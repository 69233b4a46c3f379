"""A stock `rq worker` on the relay's queues: it stops at its first job, saying to run
`dmrelay worker`, and the job goes back where it was; nothing is lost or sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from relay.core.delivery import DeliveryState
from relay.devtools.localredis import LocalRedis
from relay.storage.keys import queue_name
from relay.storage.store import Store
from tests.helpers import ORG_A, Sandbox, accept_default_reply, wait_until
from workers.rqtask import REFUSAL


def stock_worker(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    rq = Path(sys.executable).with_name("rq")
    args = [str(rq), "worker", "--burst", "--url", url, *options, queue_name(ORG_A.id)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("options", [(), ("--serializer", "rq.serializers.JSONSerializer")])
def test_a_stock_worker_refuses_and_loses_nothing(  # type: ignore[no-untyped-def]
    store: Store,
    redis_conn: redis.Redis,
    redis_server: LocalRedis,
    sandbox: Sandbox,
    start_worker,
    options: tuple[str, ...],
) -> None:
    ids = [accept_default_reply(store, f"lead_{i}").id for i in range(3)]

    done = stock_worker(redis_server.url, *options)

    assert REFUSAL in done.stderr + done.stdout
    assert sandbox.requests() == []
    assert store.rqjobs.put_back_refused([ORG_A.id]) >= 1
    queued = [i.decode() for i in redis_conn.lrange(store.keys.queue(ORG_A.id), 0, -1)]
    assert queued == ids  # every one, in its place
    start_worker()
    wait_until(
        lambda: all(
            (d := store.history.load(i)) is not None and d.state == DeliveryState.DELIVERED
            for i in ids
        ),
        timeout=30,
    )
    assert len(sandbox.requests()) == 3
