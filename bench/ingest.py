"""Ingest speed and Redis cost per accepted request: dmrelay beside three baselines.

The four apps run under gunicorn with the relay's own configuration (2 gthread workers x 8
threads): bare Flask answering the same JSON, Flask + stock RQ `Queue.enqueue`, Flask + the
relay's accept script alone (the least a one-round-trip store costs), and dmrelay.
wrk keeps 32 connections busy with unique valid default-replies; each app gets the same
rounds on a fresh private redis-server database, and the table shows medians.

Run: python -m bench.ingest [--rounds 3] [--seconds 10] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from bench.harness import ORG_A, Children, relay_env, wait_until
from relay.devtools.localredis import free_port, start_local_redis
from relay.storage.keys import Keys

ROUTE = "/api/v1/contact/default-reply"
WRK_SCRIPT = Path(__file__).with_name("default_reply.lua")
APPS = {
    "bare Flask": "bench.baselines:bare()",
    "Flask + stock enqueue": "bench.baselines:with_rq()",
    "Flask + the accept script alone": "bench.baselines:accept_only()",
    "dmrelay": "relay.web.app:create_app()",
}
CONNECTIONS, WRK_THREADS = 32, 2
SETTLE_SECONDS = 1.5  # lets the relay's metrics flush (once a second) land before counting


@dataclass
class Round:
    """One wrk run against one app, and what it left in Redis."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    stored: int
    bytes_per_stored: float
    commands: Counter[str]


@dataclass
class Summary:
    """The medians of one app's rounds."""

    rps: float
    p50: float
    p99: float
    errors: float
    bytes: float
    commands: float
    by_command: dict[str, float]


def main() -> None:
    """Run every app's rounds and print the table."""
    args = arguments()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    results, breakdown = run_apps(args, with_breakdown=True)
    print_table(results, breakdown, args)


def run_apps(
    args: argparse.Namespace, with_breakdown: bool
) -> tuple[dict[str, list[Round]], dict[str, float]]:
    """Run every app's rounds on a private redis-server; optionally the memory breakdown."""
    with tempfile.TemporaryDirectory(prefix="dmrelay-ingest-") as scratch:
        root = Path(scratch)
        server = start_local_redis(root / "redis")
        children = Children(root)
        try:
            connection = redis.Redis.from_url(server.url)
            results = {
                name: run_app(name, target, server.url, connection, children, root, args)
                for name, target in APPS.items()
            }
            breakdown = (
                key_breakdown(connection, server.url, children, root) if with_breakdown else {}
            )
        finally:
            children.stop_all()
            server.stop()
    return results, breakdown


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--profile", type=Path, help="py-spy the relay's last round into DIR")
    return parser.parse_args()


def app_env(redis_url: str, port: int, root: Path) -> dict[str, str]:
    """Return one environment for all three apps: the relay's, identical gunicorn sizing."""
    return relay_env(redis_url, "http://127.0.0.1:9/api/v1", (ORG_A,)) | {
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "DMRELAY_WEB_THREADS": "8",
        "DMRELAY_SPOOL_DIR": str(root / "spool"),
        # One organization sends thousands a second here: lift its inbound rate limit (the
        # check itself still runs), as a real deployment would for such an organization.
        "DMRELAY_INGEST_RATE_PER_ORG": "1000000",
        # No worker runs here: answer as soon as the request is stored, as the baselines do,
        # rather than wait for DmTracker's answer (bench.ack_latency measures the wait).
        "DMRELAY_ANSWER_WAIT_SECONDS": "0",
    }


def start_app(target: str, env: dict[str, str], children: Children) -> subprocess.Popen:
    """Start gunicorn with the relay's configuration serving `target`."""
    args = [sys.executable, "-m", "gunicorn", "--config", "python:relay.gunicorn_conf", target]
    process = children.spawn("gunicorn", args, env)
    base = f"http://127.0.0.1:{env['PORT']}"
    body = {"username": "warm_up", "manychat_id": "1", "message_content": "warm up"}

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{target} exited with {process.returncode}")
        try:
            sent = requests.post(
                base + ROUTE, json=body, headers={"x-org-auth-token": ORG_A.token}, timeout=2
            )
        except requests.RequestException:
            return False
        return sent.status_code == 200

    if not wait_until(answers, timeout=30, interval=0.2):
        raise RuntimeError(f"{target} did not answer within 30 s")
    return process


def run_app(
    name: str,
    target: str,
    redis_url: str,
    connection: redis.Redis,
    children: Children,
    root: Path,
    args: argparse.Namespace,
) -> list[Round]:
    """Serve one app and measure it for every round."""
    env = app_env(redis_url, free_port(), root)
    process = start_app(target, env, children)
    rounds = []
    try:
        for index in range(args.rounds):
            profile = args.profile if name == "dmrelay" and index == args.rounds - 1 else None
            rounds.append(measure(env, connection, process, args.seconds, profile))
            print(f"{name} round {index + 1}: {rounds[-1].requests_per_second:,.0f} req/s")
    finally:
        children.stop(process)
    return rounds


def measure(
    env: dict[str, str],
    connection: redis.Redis,
    process: subprocess.Popen,
    seconds: int,
    profile: Path | None,
) -> Round:
    """Run wrk once on an empty database; count what it stored and what Redis ran."""
    connection.flushall()
    time.sleep(SETTLE_SECONDS)
    connection.flushall()
    before = connection.info("memory")["used_memory"]
    connection.config_resetstat()
    spy = start_profiler(process, seconds, profile) if profile else None
    output = run_wrk(env, seconds)
    if spy is not None:
        spy.wait(timeout=seconds + 60)
    time.sleep(SETTLE_SECONDS)
    stats = connection.info("commandstats")
    stored = queued_count(connection)
    used = connection.info("memory")["used_memory"] - before
    commands = Counter(
        {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if not name.startswith(("cmdstat_config", "cmdstat_info", "cmdstat_flushall"))
        }
    )
    rps, p50, p99, total, errors = parse_wrk(output)
    return Round(rps, p50, p99, total, errors, stored, used / max(1, stored), commands)


def run_wrk(env: dict[str, str], seconds: int) -> str:
    """Return wrk's report of one run."""
    url = f"http://127.0.0.1:{env['PORT']}{ROUTE}"
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    args += ["-s", str(WRK_SCRIPT), url]
    run = subprocess.run(
        args,
        env={**os.environ, "TOKEN": ORG_A.token},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return run.stdout


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """Return requests/s, p50 and p99 (ms), requests sent and non-2xx answers or errors."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    latency = {
        q: _ms(v, unit) for q, v, unit in re.findall(r"(50|99)%\s+([\d.]+)(us|ms|s)", output)
    }
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return rps, latency["50"], latency["99"], total, errors


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def queued_count(connection: redis.Redis) -> int:
    """Return how many requests wait in any RQ queue (the relay's or the baseline's)."""
    return sum(int(connection.llen(key)) for key in connection.scan_iter("rq:queue:*"))


def start_profiler(process: subprocess.Popen, seconds: int, directory: Path) -> subprocess.Popen:
    """Sample where the relay's gunicorn workers spend CPU, with py-spy, while wrk runs."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    args = [str(spy), "record", "--pid", str(process.pid), "--subprocesses"]
    args += ["--duration", str(seconds), "--rate", "200", "--format", "raw"]
    args += ["-o", str(directory / "ingest.txt")]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- memory of one queued delivery ---------------------------------------------------------------
def key_breakdown(
    connection: redis.Redis, redis_url: str, children: Children, root: Path
) -> dict[str, float]:
    """Accept 2,000 requests through the relay; return MEMORY USAGE by key family per delivery."""
    connection.flushall()
    env = app_env(redis_url, free_port(), root)
    process = start_app(APPS["dmrelay"], env, children)
    try:
        connection.flushall()
        with requests.Session() as session:
            for index in range(2000):
                body = {
                    "username": f"lead_m{index}",
                    "manychat_id": str(5_000_000 + index),
                    "message_content": f"Reply {index}: how much is the coaching?",
                }
                session.post(
                    f"http://127.0.0.1:{env['PORT']}{ROUTE}",
                    json=body,
                    headers={"x-org-auth-token": ORG_A.token},
                    timeout=10,
                ).raise_for_status()
        time.sleep(SETTLE_SECONDS)
    finally:
        children.stop(process)
    return memory_by_family(connection, 2000)


def memory_by_family(connection: redis.Redis, deliveries: int) -> dict[str, float]:
    """Sum MEMORY USAGE over every key, by family, per delivery."""
    keys = Keys()
    families = {
        keys.key("d", ""): "record (JSON string)",
        keys.key("contacts", ""): "contact's chain, dedup mark and manychat_id link (hash fields)",
        keys.index: "time index (zset)",
        "rq:queue:": "RQ queue (list)",
        "rq:job:": "RQ job hash (the relay stores none)",
    }
    totals: Counter[str] = Counter()
    for key in connection.scan_iter(count=1000):
        name = key.decode()
        family = next((f for prefix, f in families.items() if name.startswith(prefix)), "other")
        totals[family] += connection.memory_usage(key, samples=0) or 0
    return {family: size / deliveries for family, size in totals.most_common()}


# -- the table -----------------------------------------------------------------------------------
def print_table(
    results: dict[str, list[Round]], breakdown: dict[str, float], args: argparse.Namespace
) -> None:
    """Print one table of medians, with the ratios the targets are stated in."""
    medians = {name: median_round(rounds) for name, rounds in results.items()}
    bare, rq_, floor, relay = (medians[name] for name in APPS)
    print()
    print(
        f"Load: wrk {WRK_THREADS} threads, {CONNECTIONS} connections, {args.seconds} s per round,"
        f" unique valid default-replies; gunicorn 2 gthread workers x 8 threads; medians of"
        f" {args.rounds} rounds; private redis-server {redis_version()}."
    )
    print()
    print(
        "| figure | bare Flask | Flask + stock `Queue.enqueue` | Flask + the accept script"
        " alone | dmrelay | target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    rps = (bare.rps, rq_.rps, floor.rps, relay.rps)
    print(
        f"| requests/s | {rps[0]:,.0f} | {rps[1]:,.0f} ({rps[1] / rps[0]:.2f}x) |"
        f" {rps[2]:,.0f} ({rps[2] / rps[0]:.2f}x) |"
        f" {rps[3]:,.0f} ({rps[3] / rps[0]:.2f}x bare, {rps[3] / rps[1]:.2f}x enqueue) |"
        " >= 0.5x bare, >= 2x enqueue |"
    )
    print(
        f"| p50 / p99 ack latency (ms) | {bare.p50:.1f} / {bare.p99:.1f} |"
        f" {rq_.p50:.1f} / {rq_.p99:.1f} | {floor.p50:.1f} / {floor.p99:.1f} |"
        f" {relay.p50:.1f} / {relay.p99:.1f} | p99 <= 50 ms |"
    )
    print(
        f"| errors (non-2xx, socket) | {bare.errors:.0f} | {rq_.errors:.0f} |"
        f" {floor.errors:.0f} | {relay.errors:.0f} | 0 |"
    )
    print(
        f"| Redis bytes per queued request (used_memory) | - | {rq_.bytes:,.0f} |"
        f" {floor.bytes:,.0f} | {relay.bytes:,.0f} | <= 1,000 |"
    )
    print(
        f"| Redis commands per accepted request | - | {rq_.commands:.1f} |"
        f" {floor.commands:.1f} | {relay.commands:.1f} | <= 10, 1 round trip |"
    )
    print()
    print("dmrelay commands per accepted request, by command (median round):")
    print("  " + ", ".join(f"{name} {count:.2f}" for name, count in relay.by_command.items()))
    print()
    print("MEMORY USAGE per queued delivery by key family (2,000 new contacts, within the window):")
    for family, size in breakdown.items():
        print(f"  {family}: {size:,.0f} B")
    print(f"  total: {sum(breakdown.values()):,.0f} B")


def median_round(rounds: list[Round]) -> Summary:
    """Return the median of each figure over rounds (commands from the median-speed round)."""
    middle = sorted(rounds, key=lambda r: r.requests_per_second)[len(rounds) // 2]
    stored = max(1, middle.stored)
    by_command = {k: v / stored for k, v in middle.commands.most_common()}
    return Summary(
        rps=statistics.median(r.requests_per_second for r in rounds),
        p50=statistics.median(r.p50_ms for r in rounds),
        p99=statistics.median(r.p99_ms for r in rounds),
        errors=statistics.median(r.errors for r in rounds),
        bytes=statistics.median(r.bytes_per_stored for r in rounds),
        commands=sum(by_command.values()),
        by_command=by_command,
    )


def redis_version() -> str:
    from relay.devtools.localredis import redis_server_binary

    found = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"v=([\d.]+)", found)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
