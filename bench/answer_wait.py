"""What waiting for DmTracker's answer costs the intake, against a no-wait baseline of the same run.

One web process (gunicorn, 2 gthread workers x 8 threads), one `dmrelay worker` (32 in
flight), a private redis-server and the DmTracker sandbox with a fixed latency; each row on a
fresh stack, so no backlog carries over. wrk drives default-replies for distinct contacts:

- closed loop: wrk, 32 connections, each sending its next request as soon as it is answered;
- open loop: a fixed rate (Python threads, up to 32 requests in flight), closer to ManyChat,
  whose flows send when subscribers write, whatever the relay's answer time;
- the wait rows use the shipped default (5 s for default-reply), the baseline `?wait=0`.

Columns: requests/s, p50 / p99 / max answer time, and how many answers carried DmTracker's
own body (what a flow maps `$.data.contact_type` from) rather than the queued body.

Run: python -m bench.answer_wait [--seconds 20] [--latencies 200,2000] [--keep-logs DIR]
(about 4 minutes with the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.harness import ORG_A, Stack, percentile_ms, running_stack, wait_http
from relay.devtools.localredis import free_port

CONNECTIONS = 32
WRK_THREADS = 2
TARGET_REQUESTS_PER_SECOND = 100  # at 200 ms, with the wait on
TARGET_MAX_SECONDS = 6.0
# Open-loop rate per DmTracker latency: what 8 waiting slots can answer in full, and then some.
OPEN_LOOP_RATES = {200: 20.0, 2000: 3.0}

# wrk script: a distinct contact per request; sort answers by what they carried.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  tag = args[1]
  sent, delivered, queued, other = 0, 0, 0, 0
end
function request()
  sent = sent + 1
  local name = string.format("%s_%d_%d", tag, id, sent)
  local body = string.format(
    '{"manychat_id":"%s","username":"%s","message_content":"How much is coaching? %d"}',
    name, name, sent)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["x-org-auth-token"] = token_header}, body)
end
function response(status, headers, body)
  if status ~= 200 then other = other + 1
  elseif string.find(body, '"status":"success"', 1, true) then delivered = delivered + 1
  else queued = queued + 1 end
end
function done(summary, latency, requests)
  local d, q, o = 0, 0, 0
  for _, t in ipairs(threads) do
    d = d + t:get("delivered"); q = q + t:get("queued"); o = o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%f,"p50_ms":%f,"p99_ms":%f,"max_ms":%f,'
    .. '"delivered":%d,"queued":%d,"other":%d,"errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, d, q, o,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Row:
    """One measured case."""

    latency_ms: int
    load: str
    wait: bool
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    delivered: int
    answered: int
    failures: int


def main() -> None:
    """Measure every latency with and without the wait; print the table."""
    args = _arguments()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    rows = []
    for latency_ms in args.latencies:
        rate = OPEN_LOOP_RATES.get(latency_ms, 10.0)
        for load in ("closed", f"open {rate:g}/s"):
            for wait in (False, True):
                rows.append(measure(latency_ms, load, wait, args.seconds, args.keep_logs))
                print(_line(rows[-1]), file=sys.stderr)
    print_table(rows, args.seconds)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument(
        "--latencies", type=lambda v: [int(x) for x in v.split(",")], default=[200, 2000]
    )
    parser.add_argument("--keep-logs", type=Path, default=None)
    return parser.parse_args()


def measure(latency_ms: int, load: str, wait: bool, seconds: int, logs: Path | None) -> Row:
    """Run one row on a fresh stack: web, worker, Redis and the sandbox at that latency."""
    tag = f"r{latency_ms}{load[0]}{'w' if wait else 'n'}"
    sandbox_args = ["--latency-ms", str(latency_ms)]
    with running_stack((ORG_A,), sandbox_args, log_dir=logs / tag if logs else None) as stack:
        base = start_web(stack)
        stack.start_worker()
        url = f"{base}/api/v1/contact/default-reply" + ("" if wait else "?wait=0")
        if load == "closed":
            result = run_wrk(url, seconds, tag)
        else:
            result = run_open_loop(url, OPEN_LOOP_RATES.get(latency_ms, 10.0), seconds, tag)
    return Row(
        latency_ms,
        load,
        wait,
        result["requests"] / result["seconds"],
        result["p50_ms"],
        result["p99_ms"],
        result["max_ms"],
        int(result["delivered"]),
        int(result["delivered"] + result["queued"]),
        int(result["other"] + result["errors"]),
    )


def start_web(stack: Stack) -> str:
    """Start `dmrelay web` (gunicorn, 2 workers x 8 threads); return its base URL."""
    port = free_port()
    env = stack.env(PORT=str(port), WEB_CONCURRENCY="2", DMRELAY_WEB_THREADS="8")
    process = stack.children.spawn("web", [sys.executable, "-m", "relay", "web"], env)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", process)
    return base


def run_wrk(url: str, seconds: int, tag: str) -> dict[str, float]:
    """Drive the URL with wrk for some seconds; return the script's RESULT line."""
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "answer_wait.lua"
        script.write_text(f'token_header = "{ORG_A.token}"\n' + WRK_SCRIPT)
        args = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s"]
        args += ["--timeout", "10s", "-s", str(script), url, "--", tag]
        output = subprocess.run(
            args, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def run_open_loop(url: str, rate: float, seconds: int, tag: str) -> dict[str, float]:
    """Send default-replies at a fixed rate for some seconds; return the same figures as wrk."""
    local = threading.local()
    samples: list[float] = []
    carried = {"delivered": 0, "queued": 0, "other": 0}
    lock = threading.Lock()

    def send(index: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        name = f"{tag}_{index}"
        body = {"manychat_id": name, "username": name, "message_content": f"Coaching? {index}"}
        started = time.perf_counter()
        try:
            response = session.post(url, json=body, headers={"x-org-auth-token": ORG_A.token})
            kind = _carried(response)
        except requests.RequestException:
            kind = "other"
        with lock:
            samples.append(time.perf_counter() - started)
            carried[kind] += 1

    count = int(rate * seconds)
    began = time.perf_counter()
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        for index in range(count):
            time.sleep(max(0.0, began + index / rate - time.perf_counter()))
            pool.submit(send, index)
    elapsed = time.perf_counter() - began
    return {
        "requests": len(samples),
        "seconds": elapsed,
        "p50_ms": percentile_ms(samples, 50),
        "p99_ms": percentile_ms(samples, 99),
        "max_ms": max(samples) * 1000,
        "errors": 0,
        **carried,
    }


def _carried(response: requests.Response) -> str:
    """Sort an answer: DmTracker's own body, the queued body, or anything else."""
    if response.status_code != 200:
        return "other"
    return "delivered" if response.json().get("status") == "success" else "queued"


def _line(row: Row) -> str:
    share = row.delivered / row.answered if row.answered else 0.0
    return (
        f"| {row.latency_ms} ms | {row.load} "
        f"| {'on (default 5 s)' if row.wait else 'off (baseline)'} "
        f"| {row.requests_per_second:.1f} | {row.p50_ms:.0f} | {row.p99_ms:.0f} "
        f"| {row.max_ms:.0f} | {share:.0%} ({row.delivered}/{row.answered}) | {row.failures} |"
    )


def print_table(rows: list[Row], seconds: int) -> None:
    """Print the rows, then each latency's cost of waiting against its baseline."""
    print(
        f"\nanswer wait, default-reply, {seconds} s per row, {CONNECTIONS} connections;"
        f" gunicorn 2 x 8 threads, one worker (32 in flight); {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print(
        "| DmTracker latency | load | wait | req/s | p50 ms | p99 ms | max ms"
        " | answers with DmTracker's body | non-200 or errors |"
    )
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(_line(row))
    print()
    for baseline, waited in zip(rows[::2], rows[1::2], strict=True):
        cost = 1 - waited.requests_per_second / baseline.requests_per_second
        print(
            f"- {waited.latency_ms} ms, {waited.load}: the wait costs {cost:.0%} of requests/s"
            f" ({baseline.requests_per_second:.1f} -> {waited.requests_per_second:.1f}),"
            f" p99 {baseline.p99_ms:.0f} -> {waited.p99_ms:.0f} ms;"
            f" slowest answer {waited.max_ms / 1000:.2f} s{_verdict(waited)}"
        )


def _verdict(row: Row) -> str:
    if row.latency_ms != 200 or row.load != "closed":
        return f" (target <= {TARGET_MAX_SECONDS:g} s: {row.max_ms / 1000 <= TARGET_MAX_SECONDS})"
    fast_enough = row.requests_per_second >= TARGET_REQUESTS_PER_SECOND
    in_time = row.max_ms / 1000 <= TARGET_MAX_SECONDS
    return (
        f" (targets >= {TARGET_REQUESTS_PER_SECOND} req/s: {fast_enough};"
        f" <= {TARGET_MAX_SECONDS:g} s: {in_time})"
    )


if __name__ == "__main__":
    main()
