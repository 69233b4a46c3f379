"""The front door under Redis trouble: 50 requests/s while Redis is stopped, then hung.

Each scenario runs the Procfile's processes (`dmrelay web` under gunicorn, `dmrelay worker`),
the DmTracker sandbox and a redis-server of its own that keeps its data (AOF) across a
restart. Load is open-loop: one request every 20 ms whatever the answers take, each for a
contact of its own. After the outage the run waits until every request answered 200 has
reached the sandbox, and counts from both ends: sent, answered, delivered, lost.

Run: python -m bench.front_door [--rate 50] [--stop-seconds 30] [--hang-seconds 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.harness import ORG_A, Children, Stack, relay_env, start_sandbox, wait_until
from relay.devtools.localredis import LocalRedis, free_port, start_local_redis

ROUTE = "/api/v1/contact/default-reply"
BEFORE_SECONDS, AFTER_SECONDS = 10, 10
DRAIN_LIMIT_SECONDS = 180
ANSWER_TIMEOUT_SECONDS = 30  # longer than ManyChat's 10 s, so a slow answer is measured


@dataclass
class Answer:
    """What one request got back, and how long it waited."""

    username: str
    status: int | None
    outcome: str
    seconds: float


@dataclass
class Load:
    """Open-loop load: requests sent at a fixed rate, whatever the answers take."""

    base_url: str
    rate: float
    tag: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _local: threading.local = field(default_factory=threading.local)

    def run(self) -> None:
        """Send until stopped."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=128) as pool:
            for index in range(10**9):
                due = started + index / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                pool.submit(self._send, index)

    def stop(self) -> None:
        """Stop sending (answers still on their way are waited for)."""
        self._stop.set()

    def _send(self, index: int) -> None:
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        username = f"{self.tag}_{index}"
        body = {
            "username": username,
            "manychat_id": f"{abs(hash(self.tag)) % 10**6}{index}",
            "message_content": f"Reply {index} of {self.tag}: how much is the coaching?",
        }
        started = time.monotonic()
        try:
            response = session.post(
                self.base_url + ROUTE,
                json=body,
                headers={"x-org-auth-token": ORG_A.token},
                timeout=ANSWER_TIMEOUT_SECONDS,
            )
            status, outcome = response.status_code, outcome_of(response.json())
        except (requests.RequestException, ValueError) as error:
            status, outcome = None, type(error).__name__
        self.answers.append(Answer(username, status, outcome, time.monotonic() - started))


def outcome_of(answer: dict[str, object]) -> str:
    """Name an answer: queued or spooled by the relay, or DmTracker's own (the answer wait)."""
    status = answer.get("status")
    return str(status) if status in ("queued", "spooled") else "answered by DmTracker"


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    sent: int
    queued: int
    spooled: int
    dmtracker: int
    other: int
    delivered: int
    twice: int
    lost: int
    slowest_seconds: float
    p99_seconds: float
    drain_seconds: float


def main() -> None:
    """Run both scenarios and print the table."""
    args = arguments()
    outcomes = [
        scenario(f"Redis stopped for {args.stop_seconds} s", args, stop_and_restart),
        scenario(f"Redis hung (SIGSTOP) for {args.hang_seconds} s", args, freeze_and_thaw),
    ]
    print_table(outcomes, args)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--stop-seconds", type=float, default=30.0)
    parser.add_argument("--hang-seconds", type=float, default=15.0)
    parser.add_argument(
        "--answer-wait",
        help="DMRELAY_ANSWER_WAIT_SECONDS for the web process (default: the relay's own)",
    )
    return parser.parse_args()


Trouble = Callable[["Scenario", argparse.Namespace], None]


@dataclass
class Scenario:
    """The processes of one run and the redis-server they share."""

    root: Path
    children: Children
    server: LocalRedis

    def stop_redis(self) -> None:
        self.server.stop()

    def start_redis(self) -> None:
        self.server = start_local_redis(self.root / "redis", port=self.server.port, persist=True)


def stop_and_restart(run: Scenario, args: argparse.Namespace) -> None:
    """Stop Redis (it saves its data), keep it down, start it again."""
    run.stop_redis()
    time.sleep(args.stop_seconds)
    run.start_redis()


def freeze_and_thaw(run: Scenario, args: argparse.Namespace) -> None:
    """Freeze Redis with SIGSTOP: connections open, nothing answered; then SIGCONT."""
    os.kill(run.server.process.pid, signal.SIGSTOP)
    try:
        time.sleep(args.hang_seconds)
    finally:
        os.kill(run.server.process.pid, signal.SIGCONT)


def scenario(name: str, args: argparse.Namespace, trouble: Trouble) -> Outcome:
    """Run load across one kind of trouble and count what arrived."""
    print(f"{name}: starting", flush=True)
    with tempfile.TemporaryDirectory(prefix="dmrelay-front-door-") as scratch:
        root = Path(scratch)
        children = Children(root)
        run = Scenario(root, children, start_local_redis(root / "redis", persist=True))
        try:
            return load_through(name, run, args, trouble)
        finally:
            children.stop_all()
            run.server.stop()


def load_through(name: str, run: Scenario, args: argparse.Namespace, trouble: Trouble) -> Outcome:
    sandbox_env = relay_env(run.server.url, "http://127.0.0.1:9/api/v1", (ORG_A,))
    sandbox = start_sandbox(run.children, sandbox_env, [])
    stack = Stack(run.server, sandbox, (ORG_A,), run.children, {})
    port = free_port()
    env = stack.env(PORT=str(port), DMRELAY_SPOOL_DIR=str(run.root / "spool"))
    if args.answer_wait is not None:
        env["DMRELAY_ANSWER_WAIT_SECONDS"] = args.answer_wait
    web = run.children.spawn("web", [sys.executable, "-m", "relay", "web"], env)
    wait_until(lambda: web.poll() is None and _ready(port), timeout=30)
    stack.start_worker()
    load = Load(f"http://127.0.0.1:{port}", args.rate, name.split()[1].strip(":"))
    sender = threading.Thread(target=load.run, daemon=True)
    sender.start()
    time.sleep(BEFORE_SECONDS)
    print(f"{name}: trouble begins", flush=True)
    trouble(run, args)
    print(f"{name}: trouble ends", flush=True)
    time.sleep(AFTER_SECONDS)
    load.stop()
    sender.join(timeout=ANSWER_TIMEOUT_SECONDS + 5)
    time.sleep(1)
    ended = time.monotonic()
    accepted = {a.username for a in load.answers if a.status == 200}
    delivered = wait_for_deliveries(stack, accepted)
    drain_seconds = time.monotonic() - ended
    return summarize(name, load.answers, accepted, delivered, drain_seconds)


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
    except requests.RequestException:
        return False


def wait_for_deliveries(stack: Stack, accepted: set[str]) -> Counter[str]:
    """Wait until every accepted request reached the sandbox (or the limit); count by username."""
    delivered: Counter[str] = Counter()

    def all_arrived() -> bool:
        nonlocal delivered
        delivered = Counter(
            str(entry["body"].get("username"))
            for entry in stack.journal()
            if isinstance(entry.get("body"), dict) and 200 <= int(entry["status"]) < 300
        )
        return accepted <= set(delivered)

    wait_until(all_arrived, timeout=DRAIN_LIMIT_SECONDS, interval=1.0)
    return delivered


def summarize(
    name: str,
    answers: list[Answer],
    accepted: set[str],
    delivered: Counter[str],
    drain_seconds: float,
) -> Outcome:
    seconds = sorted(a.seconds for a in answers)
    return Outcome(
        name=name,
        sent=len(answers),
        queued=sum(1 for a in answers if a.status == 200 and a.outcome == "queued"),
        spooled=sum(1 for a in answers if a.status == 200 and a.outcome == "spooled"),
        dmtracker=sum(1 for a in answers if a.status == 200 and a.outcome.startswith("answered")),
        other=sum(1 for a in answers if a.status != 200),
        delivered=len(accepted & set(delivered)),
        twice=sum(1 for count in delivered.values() if count > 1),
        lost=len(accepted - set(delivered)),
        slowest_seconds=seconds[-1] if seconds else 0.0,
        p99_seconds=statistics.quantiles(seconds, n=100)[98] if len(seconds) > 1 else 0.0,
        drain_seconds=drain_seconds,
    )


def print_table(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print()
    print(
        f"Load: {args.rate:g} requests/s, open loop, {BEFORE_SECONDS} s before and"
        f" {AFTER_SECONDS} s after the trouble; gunicorn 2 x 8 (Procfile web), one worker,"
        " sandbox as DmTracker, private redis-server with AOF; answer wait:"
        f" {args.answer_wait if args.answer_wait is not None else 'the relay default'}."
    )
    print()
    print(
        "| scenario | sent | answered 200 (queued + spooled + DmTracker's own) | other answers"
        " | delivered | delivered twice | lost | slowest answer | p99 answer |"
        " all delivered after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        print(
            f"| {o.name} | {o.sent} | {o.queued + o.spooled + o.dmtracker}"
            f" ({o.queued} + {o.spooled} + {o.dmtracker}) |"
            f" {o.other} | {o.delivered} | {o.twice} | {o.lost} | {o.slowest_seconds:.2f} s |"
            f" {o.p99_seconds * 1000:.0f} ms | {o.drain_seconds:.1f} s |"
        )


if __name__ == "__main__":
    main()
