"""What one delivery costs, each figure beside its baseline in the same run, on a private
redis-server and the DmTracker sandbox (200 ms latency) in a subprocess.

(a) Redis cost: N default-replies queued, then drained by one worker (32 in flight) running in
    this process on a counting Redis connection: round trips per delivery (every request the
    worker's client sends; a pipeline or a script is one), commands per delivery (Redis's own
    INFO commandstats, commands run inside scripts included), deliveries per second, and the
    bytes kept per delivered message (MEMORY USAGE of its record and its share of the index).
(b) Redis restarts: one `dmrelay worker` process; the rate it drains N queued default-replies
    at (queued while it is paused with SIGSTOP), before and after restarting redis-server 10
    times under load (AOF on, so nothing is lost).

Run: python -m bench.delivery_costs [--count 1000] [--restarts 10] [--only ab]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench.harness import (
    DEFAULT_REPLY_PATH,
    ORG_A,
    SECRET,
    Children,
    Stack,
    answered,
    default_reply,
    enqueue,
    running_stack,
    start_sandbox,
    steady_rate,
    username_of,
    wait_until,
)
from bench.throughput import _git, print_table
from relay.config import Settings
from relay.devtools.counting import CountingConnection
from relay.devtools.localredis import LocalRedis, start_local_redis
from workers.bootstrap import build_worker

LATENCY_MS = 200
IN_FLIGHT = 32
SANDBOX_ARGS = ["--latency-ms", str(LATENCY_MS), "--create-contact-limit", "1000000"]


def commands_run(connection: redis.Redis) -> int:
    """Return how many commands Redis ran since its statistics were reset (INFO excluded)."""
    stats = connection.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def bytes_kept(connection: redis.Redis, stack: Stack, ids: list[str]) -> dict[str, float]:
    """Return the average bytes of a delivered record, its index entry and the keys beside it."""
    keys = stack.store.keys
    record = sum(connection.memory_usage(keys.delivery(i)) or 0 for i in ids) / len(ids)
    index_bytes = connection.memory_usage(keys.index, samples=0) or 0
    index = index_bytes / max(1, connection.zcard(keys.index))
    others: dict[str, int] = {}
    for key in connection.scan_iter(count=1000):
        name = key.decode()
        family = name.split(":")[1] if name.startswith(keys.prefix + ":") else name.split(":")[0]
        if family in ("d", "index"):
            continue
        if connection.ttl(key) > 0 or family in ("rq",):
            others[family] = others.get(family, 0) + (connection.memory_usage(key) or 0)
    result = {"record": record, "index entry": index}
    result |= {f"{family} (expiring)": total / len(ids) for family, total in sorted(others.items())}
    return result


def part_costs(count: int) -> dict[str, Any]:
    """Drain `count` queued default-replies with an in-process worker on a counting client."""
    with running_stack((ORG_A,), SANDBOX_ARGS) as stack:
        ids = enqueue(stack.client(), ORG_A, DEFAULT_REPLY_PATH, default_reply, "rt", count)
        settings = Settings(
            redis_url=stack.redis_server.url,
            secret_key=SECRET,
            orgs=(ORG_A,),
            dmtracker_base_url=stack.api_url,
            worker_concurrency=IN_FLIGHT,
        )
        # The worker's own kind of pool, bounded as in production, counting what it sends.
        pool = redis.BlockingConnectionPool.from_url(
            stack.redis_server.url,
            connection_class=CountingConnection,
            max_connections=settings.worker_redis_connections,
            timeout=2.0,
        )
        counted = redis.Redis(connection_pool=pool)
        worker = build_worker(settings, counted)
        stack.connection.config_resetstat()
        CountingConnection.sent = 0
        started = time.monotonic()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        wait_until(lambda: stack.pending() == 0, 600, 0.02)
        seconds = time.monotonic() - started
        trips = CountingConnection.sent
        commands = commands_run(stack.connection)
        worker.stopping.set()
        thread.join(timeout=60)
        times = [e["at"] for e in answered(stack.journal(), DEFAULT_REPLY_PATH)]
        memory = bytes_kept(stack.connection, stack, ids)
    return {
        "count": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "steady": steady_rate(times),
        "trips": trips / count,
        "commands": commands / count,
        "memory": memory,
    }


@contextlib.contextmanager
def persistent_stack(root: Path) -> Iterator[tuple[Stack, Path]]:
    """Start a private Redis with AOF on and the sandbox; stop both afterwards."""
    children = Children(root)
    server = start_local_redis(root / "redis", persist=True)
    stack = None
    try:
        env = {"REDIS_URL": server.url}
        base = start_sandbox(children, _sandbox_env(server), SANDBOX_ARGS)
        stack = Stack(server, base, (ORG_A,), children, env)
        yield stack, root / "redis"
    finally:
        children.stop_all()
        if stack:
            stack.connection.close()
            stack.redis_server.stop()


def _sandbox_env(server: LocalRedis) -> dict[str, str]:
    from bench.harness import relay_env

    return relay_env(server.url, "http://127.0.0.1:9/api/v1", (ORG_A,))


def phase_rate(stack: Stack, worker: subprocess.Popen, tag: str, count: int) -> float:
    """Queue `count` default-replies with the worker paused; return the rate it drains them at."""
    os.kill(worker.pid, signal.SIGSTOP)  # so posting never limits the rate measured
    try:
        ids = enqueue(stack.client(), ORG_A, DEFAULT_REPLY_PATH, default_reply, tag, count)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: stack.pending() == 0, 600, 0.05)
    times = [
        e["at"]
        for e in answered(stack.journal(), DEFAULT_REPLY_PATH)
        if (username_of(e) or "").startswith(f"{tag}_")
    ]
    if len(times) < len(ids):
        print(f"  phase {tag}: {len(ids) - len(times)} of {len(ids)} not seen by the sandbox")
    return steady_rate(times)


class Feeder:
    """Post default-replies at a steady pace from a thread; failures (Redis down) are counted."""

    def __init__(self, stack: Stack, per_second: float) -> None:
        self.stack, self.interval = stack, 1 / per_second
        self.accepted: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = self.stack.client()
        index = 0
        while not self.stop.wait(self.interval):
            body = default_reply("load", index)
            index += 1
            with contextlib.suppress(Exception):
                response = client.post(
                    f"/api/v1/{DEFAULT_REPLY_PATH}",
                    json=body,
                    headers={"x-org-auth-token": ORG_A.token},
                )
                if response.status_code == 200:
                    self.accepted.append(body["username"])
                    continue
            self.refused += 1


def part_restarts(count: int, restarts: int) -> dict[str, Any]:
    """Measure one worker process's rate before and after restarting Redis under load."""
    with (
        tempfile.TemporaryDirectory(prefix="dmrelay-bench-") as scratch,
        persistent_stack(Path(scratch)) as (stack, data_dir),
    ):
        worker = stack.start_worker(DMRELAY_WORKER_CONCURRENCY=str(IN_FLIGHT))
        wait_until(lambda: stack.workers_registered() > 0, 30)
        before = phase_rate(stack, worker, "before", count)
        feeder = Feeder(stack, 60)
        feeder.thread.start()
        for _ in range(restarts):
            time.sleep(1.0)
            port = stack.redis_server.port
            stack.redis_server.stop()
            time.sleep(0.5)
            stack.redis_server = start_local_redis(data_dir, port=port, persist=True)
        time.sleep(1.0)
        feeder.stop.set()
        feeder.thread.join(timeout=30)
        drained = wait_until(lambda: stack.pending() == 0, 300, 0.1)
        after = phase_rate(stack, worker, "after", count)
        seen = {username_of(e) for e in answered(stack.journal(), DEFAULT_REPLY_PATH)}
        unseen = sum(1 for user in feeder.accepted if user not in seen)
    return {
        "before": before,
        "after": after,
        "restarts": restarts,
        "load_accepted": len(feeder.accepted),
        "load_refused": feeder.refused,
        "load_not_delivered": unseen,
        "drained": drained,
    }


def print_costs(result: dict[str, Any]) -> None:
    """Print table (a)."""
    print(
        f"\n### (a) Redis cost of one delivery: {result['count']} default-replies queued, one"
        f" worker in this process, {IN_FLIGHT} in flight, sandbox latency {LATENCY_MS} ms\n"
    )
    rows = [
        ["deliveries/s (worker start -> all delivered)", f"{result['per_second']:.1f}"],
        ["deliveries/s (sandbox: first -> last arrival)", f"{result['steady']:.1f}"],
        ["Redis round trips per delivery (client side)", f"{result['trips']:.2f}"],
        ["Redis commands per delivery (commandstats)", f"{result['commands']:.1f}"],
    ]
    rows += [[f"bytes per delivered message: {k}", f"{v:.0f}"] for k, v in result["memory"].items()]
    print_table(["figure", "value"], rows)


def print_restarts(result: dict[str, Any]) -> None:
    """Print table (b)."""
    print(
        f"\n### (b) {result['restarts']} Redis restarts under load: one `dmrelay worker`,"
        f" {IN_FLIGHT} in flight, sandbox latency {LATENCY_MS} ms\n"
    )
    rows = [
        ["deliveries/s before the restarts (steady)", f"{result['before']:.1f}"],
        ["deliveries/s after the restarts (steady)", f"{result['after']:.1f}"],
        ["after / before", f"{result['after'] / result['before']:.2f}x"],
        [
            "load accepted / refused while restarting",
            f"{result['load_accepted']} / {result['load_refused']}",
        ],
        ["accepted load never seen by the sandbox", str(result["load_not_delivered"])],
    ]
    print_table(["figure", "value"], rows)


def main() -> None:
    """Run the chosen parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--only", default="ab")
    args = parser.parse_args()
    commit = _git("rev-parse", "--short", "HEAD")
    print(f"bench.delivery_costs: commit {commit}, {os.cpu_count()} CPUs", flush=True)
    if "a" in args.only:
        print_costs(part_costs(args.count))
    if "b" in args.only:
        print_restarts(part_restarts(args.count, args.restarts))


if __name__ == "__main__":
    main()
