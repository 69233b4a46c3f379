"""Redis connections of the default formation under load: one web process + one worker.

`dmrelay web` (gunicorn, its default 2 workers x 8 threads, answer wait on) and one
`dmrelay worker` (32 in flight) run against the sandbox at 200 ms and a private
redis-server, while wrk keeps 32 connections busy with unique default-replies. CLIENT LIST
is sampled every 50 ms; the table gives the peak per process role beside the budget
`dmrelay check` computes and Heroku mini's 20.

Run: python -m bench.connections [--seconds 20]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis

from bench.harness import ORG_A, Children, relay_env, start_sandbox
from bench.ingest import run_wrk, start_app
from relay.devtools.localredis import free_port, start_local_redis
from relay.storage.server import ONE_OFF_CONNECTIONS, Formation, connections_needed


def main() -> None:
    """Run the formation under load and print the peak connections by role."""
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--seconds", type=int, default=20)
    seconds = args.parse_args().seconds
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    root = Path(tempfile.mkdtemp(prefix="dmrelay-bench-conn-"))
    server = start_local_redis(root / "redis")
    (root / "logs").mkdir()
    children = Children(root / "logs")
    try:
        peaks, total = measure(server.url, children, root, seconds)
    finally:
        children.stop_all()
        server.stop()
    print_table(peaks, total)


def measure(
    redis_url: str, children: Children, root: Path, seconds: int
) -> tuple[Counter[str], int]:
    """Start sandbox, worker and web; load the web with wrk; return peaks by role and in all."""
    env = relay_env(redis_url, "", (ORG_A,)) | {"DMRELAY_SPOOL_DIR": str(root / "spool")}
    env["DMTRACKER_BASE_URL"] = start_sandbox(children, env, ["--latency-ms", "200"]) + "/api/v1"
    env |= {"DMRELAY_INGEST_RATE_PER_ORG": "1000000", "PORT": str(free_port())}
    children.spawn("worker", [sys.executable, "-m", "relay", "worker"], env)
    start_app("relay.web.app:create_app()", env, children)
    connection = redis.Redis.from_url(redis_url)
    peaks, total, stop = Counter[str](), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            roles = Counter(c.get("name") or "other" for c in connection.client_list())
            roles.pop("other", None)  # this sampler
            for role, count in roles.items():
                peaks[role] = max(peaks[role], count)
            total[0] = max(total[0], sum(roles.values()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_wrk(env, seconds)
    stop.set()
    sampler.join(timeout=5)
    return peaks, total[0]


def print_table(peaks: Counter[str], total: int) -> None:
    """Print the peaks beside the computed budget and the mini plan's limit."""
    print("\nRedis connections, default formation (1 web process 2 x 8, 1 worker), wrk -c32\n")
    print("| role | peak under load |")
    print("| --- | ---: |")
    for role, count in sorted(peaks.items()):
        print(f"| {role} | {count} |")
    print(f"| all at once | {total} |")
    budget = connections_needed(Formation()) - ONE_OFF_CONNECTIONS
    print(f"\n`dmrelay check` budgets {budget} for this formation; Heroku mini allows 20.")


if __name__ == "__main__":
    main()
