"""Ack latency of default-reply under gunicorn, against /healthz measured in the same run.

Run: python -m bench.ack_latency [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.harness import percentile_ms
from relay.devtools.localredis import free_port, start_local_redis

Call = Callable[[requests.Session, str, int], float]

ORG = {"id": str(uuid.uuid4()), "token": "bench-token-0123456789"}


def main() -> None:
    """Start Redis and the web process, measure, print the table."""
    args = _arguments()
    with tempfile.TemporaryDirectory() as scratch:
        redis_server = start_local_redis(Path(scratch))
        port = free_port()
        web = _start_web(redis_server.url, port)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base)
            rows = _measure(base, args.requests, args.concurrency)
        finally:
            web.terminate()
            web.wait(timeout=30)
            redis_server.stop()
    _print_table(rows, args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    return parser.parse_args()


def _start_web(redis_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "DMRELAY_ORGS": json.dumps([ORG]),
        "DMRELAY_SECRET_KEY": "bench-secret-0123456789abcdef-0123456789",
        "DMTRACKER_BASE_URL": "http://127.0.0.1:9/api/v1",
        "WEB_CONCURRENCY": "2",
        "DMRELAY_ANSWER_WAIT_SECONDS": "0",  # the ack alone: no worker runs here
    }
    return subprocess.Popen(
        [sys.executable, "-m", "relay", "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("web process did not start")


def _default_reply(session: requests.Session, base: str, index: int) -> float:
    body = {
        "manychat_id": str(10_000 + index),
        "username": f"bench_{index}",
        "message_content": f"Hello, message {index} {uuid.uuid4().hex}",
    }
    headers = {"x-org-auth-token": ORG["token"]}
    started = time.perf_counter()
    response = session.post(f"{base}/api/v1/contact/default-reply", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json()["status"] == "queued", response.text
    return elapsed


def _healthz(session: requests.Session, base: str, index: int) -> float:
    started = time.perf_counter()
    response = session.get(f"{base}/healthz")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    return elapsed


def _sequential(call: Call, base: str, count: int) -> tuple[list[float], float]:
    session = requests.Session()
    started = time.perf_counter()
    samples = [call(session, base, i) for i in range(count)]
    return samples, time.perf_counter() - started


def _concurrent(call: Call, base: str, count: int, workers: int) -> tuple[list[float], float]:
    sessions = [requests.Session() for _ in range(workers)]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        samples = list(
            pool.map(lambda i: call(sessions[i % workers], base, 1_000_000 + i), range(count))
        )
    return samples, time.perf_counter() - started


def _measure(base: str, count: int, workers: int) -> list[tuple[str, list[float], float]]:
    _sequential(_healthz, base, 100)  # warm up connections and imports
    return [
        ("GET /healthz, sequential (baseline)", *_sequential(_healthz, base, count)),
        ("POST default-reply, sequential", *_sequential(_default_reply, base, count)),
        (
            f"GET /healthz, {workers} clients (baseline)",
            *_concurrent(_healthz, base, count, workers),
        ),
        (
            f"POST default-reply, {workers} clients",
            *_concurrent(_default_reply, base, count, workers),
        ),
    ]


def _print_table(rows: list[tuple[str, list[float], float]], args: argparse.Namespace) -> None:
    print(f"\nack latency, {args.requests} requests per row, gunicorn 2 workers x 8 threads\n")
    print("| case | p50 ms | p99 ms | req/s | p50 vs baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for index, (name, samples, seconds) in enumerate(rows):
        baseline = rows[index - index % 2][1]
        ratio = percentile_ms(samples, 50) / percentile_ms(baseline, 50)
        print(
            f"| {name} | {percentile_ms(samples, 50):.2f} | {percentile_ms(samples, 99):.2f} "
            f"| {len(samples) / seconds:.0f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
