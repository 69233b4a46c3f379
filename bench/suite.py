"""`make bench`: every figure of docs/performance.md beside its baseline, in one table.

It starts what it needs (private redis-servers, the sandbox, the Procfile's `dmrelay web` and
`dmrelay worker`) and runs, in order:
- ingest: wrk (2 threads, 32 connections, unique valid default-replies) against bare Flask,
  Flask + stock `Queue.enqueue` and dmrelay, under one gunicorn configuration (bench.ingest);
- connections: the default formation (one web process, one worker) under the same load
  (bench.connections);
- delivery: one `dmrelay worker` at 200 ms DmTracker latency, 32 in flight, against stock
  `rq worker` on the same task (bench.throughput, part a);
- queued memory: 100,000 default-replies of new contacts through the accept script, against
  stock `Queue.enqueue` of the same bodies (bench.queued_memory);
- delivery costs: round trips and commands per delivery, bytes kept per delivered message
  (bench.delivery_costs, part a).
`--quick` (under 3 minutes) runs one short ingest round, the small delivery run, 20,000
queued deliveries and 300 delivery costs.

Run: python -m bench.suite [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import connections, delivery_costs, ingest, queued_memory, throughput
from bench.harness import Children
from relay.devtools.localredis import start_local_redis
from relay.storage.server import QUEUED_DELIVERY_BYTES


def main() -> None:
    """Run the three parts and print one table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="under 3 minutes")
    quick = parser.parse_args().quick
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    started = time.monotonic()
    ingest_medians = run_ingest(rounds=1 if quick else 3, seconds=5 if quick else 10)
    peak = run_connections(seconds=10 if quick else 20)
    deliveries = throughput.part_throughput(throughput.QUICK if quick else throughput.FULL, None)
    queued = queued_memory.measure(20_000 if quick else 100_000)
    costs = delivery_costs.part_costs(300 if quick else 1000)
    print_table(ingest_medians, peak, deliveries, queued, costs, quick, time.monotonic() - started)


def run_ingest(rounds: int, seconds: int) -> dict[str, ingest.Summary]:
    """Return each app's medians over the rounds."""
    args = argparse.Namespace(rounds=rounds, seconds=seconds, profile=None)
    results, _ = ingest.run_apps(args, with_breakdown=False)
    return {name: ingest.median_round(rounds) for name, rounds in results.items()}


def run_connections(seconds: int) -> int:
    """Return the default formation's peak Redis connections under load."""
    with tempfile.TemporaryDirectory(prefix="dmrelay-suite-") as scratch:
        root = Path(scratch)
        (root / "logs").mkdir()
        server = start_local_redis(root / "redis")
        children = Children(root / "logs")
        try:
            return connections.measure(server.url, children, root, seconds)[1]
        finally:
            children.stop_all()
            server.stop()


VERDICTS = {True: "yes", False: "no", None: "-"}


def print_table(
    medians: dict[str, ingest.Summary],
    peak_connections: int,
    deliveries: list[throughput.ThroughputRun],
    queued: tuple[queued_memory.Footprint, queued_memory.Footprint],
    costs: dict[str, Any],
    quick: bool,
    seconds: float,
) -> None:
    """Print every figure with its baseline, ratio and target."""
    bare, enqueue, accept_only, relay = (medians[name] for name in ingest.APPS)
    stock, at_32 = deliveries[0], deliveries[1]
    relay_queued, stock_queued = queued
    kept = costs["memory"]["record"] + costs["memory"]["index entry"]
    rows = [
        ("ingest requests/s", f"{relay.rps:,.0f}", f"bare Flask {bare.rps:,.0f}",
         f"{relay.rps / bare.rps:.2f}x", ">= 0.5x", relay.rps >= 0.5 * bare.rps),
        ("ingest requests/s", f"{relay.rps:,.0f}", f"Flask + stock enqueue {enqueue.rps:,.0f}",
         f"{relay.rps / enqueue.rps:.2f}x", ">= 2x", relay.rps >= 2 * enqueue.rps),
        ("ingest requests/s, Flask + the accept script alone (no auth, validation, log)",
         f"{accept_only.rps:,.0f}", f"bare Flask {bare.rps:,.0f}",
         f"{accept_only.rps / bare.rps:.2f}x", "(the design's ceiling)", None),
        ("ingest p99 ack ms", f"{relay.p99:.1f}", f"bare Flask {bare.p99:.1f}",
         f"{relay.p99 / bare.p99:.2f}x", "<= 50 ms", relay.p99 <= 50),
        ("Redis commands per accepted request", f"{relay.commands:.1f}",
         f"stock enqueue {enqueue.commands:.1f}", f"{relay.commands / enqueue.commands:.2f}x",
         "<= 10", relay.commands <= 10),
        (f"Redis bytes per queued request ({relay_queued.count:,} queued)",
         f"{relay_queued.per_request:,.0f}", f"stock enqueue {stock_queued.per_request:,.0f}",
         f"{relay_queued.per_request / stock_queued.per_request:.2f}x", "<= 1,200",
         relay_queued.per_request <= QUEUED_DELIVERY_BYTES),
        (f"Redis MB for {relay_queued.count:,} queued (accept script)",
         f"{relay_queued.megabytes:.1f}", f"stock enqueue {stock_queued.megabytes:.1f}",
         f"{relay_queued.megabytes / stock_queued.megabytes:.2f}x",
         f"<= {relay_queued.count * QUEUED_DELIVERY_BYTES / 1e6:,.0f} MB",
         relay_queued.per_request <= QUEUED_DELIVERY_BYTES),
        ("Redis connections, default formation, peak", str(peak_connections), "Heroku mini 20",
         f"{peak_connections / 20:.2f}x", "<= 15", peak_connections <= 15),
        ("deliveries/s, 32 in flight, 200 ms", f"{at_32.steady_per_second:.1f}",
         f"stock rq worker {stock.steady_per_second:.1f}",
         f"{at_32.steady_per_second / stock.steady_per_second:.1f}x", ">= 140/s",
         at_32.steady_per_second >= 140),
        ("Redis round trips per delivery", f"{costs['trips']:.2f}", "-", "-", "<= 3",
         costs["trips"] <= 3),
        ("bytes kept per delivered message (record + index entry)", f"{kept:,.0f}", "-", "-",
         "<= 500", kept <= 500),
    ]  # fmt: skip
    print(f"\n### make bench ({'quick' if quick else 'full'}), commit {commit()},"
          f" {time.strftime('%Y-%m-%d')}, {seconds:.0f} s")  # fmt: skip
    print("Load generator: wrk, 2 threads, 32 connections; gunicorn 2 gthread workers x 8.\n")
    print("| figure | dmrelay | baseline (same run) | ratio | target | met |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for figure, value, baseline, ratio, target, met in rows:
        print(f"| {figure} | {value} | {baseline} | {ratio} | {target} | {VERDICTS[met]} |")


def commit() -> str:
    """Return the short commit the run measured, marked when the tree has changes."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet"], check=False).returncode != 0
    return f"{head}{'+changes' if dirty else ''}" or "?"


if __name__ == "__main__":
    main()
