"""Throughput, fairness and crash safety of the delivery side, each against a baseline measured
in the same run, on a private redis-server and the DmTracker sandbox in a subprocess.

(a) throughput: N default-replies queued through the web app before any worker starts, then
    drained by one `dmrelay worker` (32 and 64 in flight) and, as the baseline, by a stock
    `rq worker` running the same task (capped: it does about one delivery per latency).
(b) fairness: a burst of 600 create-contacts for org A against its per-minute limit, while
    org B sends default-replies; baseline: the ideal rate, and org B alone for its lag.
(c) chaos: default-replies posted at a steady pace (so kills land while work is in flight)
    against 30 % injected 503s, three workers, one SIGKILLed every 10 s and restarted;
    baseline: the same run without faults or kills.

Run: python -m bench.throughput [--quick] [--only abc] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from bench.harness import (
    CREATE_CONTACT_PATH,
    DEFAULT_REPLY_PATH,
    ORG_A,
    ORG_B,
    RssSampler,
    Stack,
    answered,
    count_status,
    cpu_seconds,
    create_contact,
    default_reply,
    enqueue,
    max_in_window,
    peak_rss_mib,
    percentile_ms,
    post,
    running_stack,
    steady_rate,
    username_of,
    wait_until,
)
from relay.config import Org
from relay.core.delivery import DeliveryState as State

THROUGHPUT_LATENCY_MS = 200
FAIRNESS_LATENCY_MS = 50
CHAOS_LATENCY_MS = 50
CHAOS_FAULT_RATE = 0.3
CHAOS_WORKERS = 3
LATENCY_S = CHAOS_LATENCY_MS / 1000
KILL_EVERY_SECONDS = 10.0
DRAIN_LIMIT_SECONDS = 600.0
RELAY_DRAIN_LIMIT_SECONDS = 300.0
WINDOW_SECONDS = 60.0
CHAOS_ENV = {
    "DMRELAY_WORKER_HEARTBEAT_TTL_SECONDS": "6",
    "DMRELAY_BACKOFF_BASE_SECONDS": "0.2",
    "DMRELAY_BACKOFF_CAP_SECONDS": "2",
    "DMRELAY_WORKER_SHUTDOWN_GRACE_SECONDS": "2",
}


@dataclass(frozen=True)
class Mode:
    """The sizes of one run: full, or quick for debugging the benchmark itself."""

    name: str
    throughput_count: int
    stock_cap_seconds: float
    stock_cap_count: int
    create_contact_limit: int
    burst_count: int
    chaos_count: int
    chaos_feed_seconds: float
    b_count: int = 100
    b_alone_interval_seconds: float = 0.5

    @property
    def burst_seconds(self) -> float:
        """Return how long the burst takes at the limit: a window's worth at once, then spaced."""
        spaced = max(0, self.burst_count - self.create_contact_limit)
        return WINDOW_SECONDS + spaced * WINDOW_SECONDS / self.create_contact_limit

    @property
    def b_interval_seconds(self) -> float:
        """Return org B's pace during the burst: its requests spread over the whole burst."""
        return self.burst_seconds / self.b_count


# The limiter is a sliding 60 s log: up to `limit` calls go at once, only later ones are
# spaced. Quick mode therefore sends 1.5x its limit, so the spacing is exercised in ~90 s.
FULL = Mode("full", 1000, 60.0, 300, 60, 600, 2000, 100.0)
QUICK = Mode("quick", 200, 20.0, 100, 600, 900, 500, 40.0)


# -- (a) throughput ---------------------------------------------------------------------------
@dataclass
class ThroughputRun:
    """One worker draining a queue of default-replies."""

    name: str
    in_flight: int
    accepted: int
    delivered: int
    seconds: float
    steady_per_second: float
    peak_rss_mib: float
    cpu_seconds: float
    capped: bool
    rq_failed: int

    @property
    def per_second(self) -> float:
        """Return deliveries per second from worker start to the end of the run."""
        return self.delivered / self.seconds


def part_throughput(mode: Mode, logs: Path | None) -> list[ThroughputRun]:
    """Run the stock RQ baseline, then dmrelay's worker at 32 and 64 in flight."""
    return [_throughput_run(mode, logs, None), *(_throughput_run(mode, logs, c) for c in (32, 64))]


def _throughput_run(mode: Mode, logs: Path | None, concurrency: int | None) -> ThroughputRun:
    """Queue the deliveries first, then time one worker (stock RQ when concurrency is None)."""
    sandbox = ["--latency-ms", str(THROUGHPUT_LATENCY_MS), "--create-contact-limit", "1000000"]
    with running_stack((ORG_A,), sandbox, log_dir=logs) as stack:
        ids = enqueue(
            stack.client(), ORG_A, DEFAULT_REPLY_PATH, default_reply, "t", mode.throughput_count
        )
        started = time.monotonic()
        if concurrency is None:
            stack.give_stock_jobs(ORG_A, ids)
            worker = stack.start_stock_worker(ORG_A)
            cap, limit = min(mode.stock_cap_count, len(ids)), mode.stock_cap_seconds
        else:
            worker = stack.start_worker(DMRELAY_WORKER_CONCURRENCY=str(concurrency))
            cap, limit = len(ids), RELAY_DRAIN_LIMIT_SECONDS
        sampler = RssSampler(worker.pid).start()
        wait_until(
            lambda: len(ids) - stack.pending() >= cap or worker.poll() is not None, limit, 0.02
        )
        seconds = time.monotonic() - started
        delivered = len(ids) - stack.pending()
        _fail_if_exited(worker, "worker", concurrency is not None)
        rss, cpu = max(sampler.stop(), peak_rss_mib(worker.pid)), cpu_seconds(worker.pid)
        times = [e["at"] for e in answered(stack.journal(), DEFAULT_REPLY_PATH)]
        rq_failed = stack.rq_failed(ORG_A)
    name = "stock `rq worker` (baseline)" if concurrency is None else "`dmrelay worker`"
    return ThroughputRun(
        name, concurrency or 1, len(ids), delivered, seconds, steady_rate(times), rss, cpu,
        capped=delivered < len(ids), rq_failed=rq_failed,
    )  # fmt: skip


def _fail_if_exited(process: subprocess.Popen, what: str, must_run: bool) -> None:
    """Raise when a process that should still run has exited."""
    if must_run and process.poll() is not None:
        raise RuntimeError(f"the {what} exited early with {process.returncode} (see its log)")


def print_throughput(runs: list[ThroughputRun], mode: Mode) -> None:
    """Print table (a)."""
    stock = runs[0]
    print(
        f"\n### (a) Throughput: {mode.throughput_count} default-replies queued before the worker"
        f" starts, 1 organization, sandbox latency {THROUGHPUT_LATENCY_MS} ms\n"
    )
    header = ["worker", "in flight", "delivered", "seconds", "deliveries/s", "steady/s"]
    header += ["vs stock", "peak RSS MiB", "CPU s", "CPU ms/delivery"]
    rows = []
    for run in runs:
        delivered = f"{run.delivered}/{run.accepted}" + (" (capped)" if run.capped else "")
        rows.append(
            [
                run.name, str(run.in_flight), delivered, f"{run.seconds:.1f}",
                f"{run.per_second:.1f}", f"{run.steady_per_second:.1f}",
                f"{run.per_second / stock.per_second:.1f}x", f"{run.peak_rss_mib:.0f}",
                f"{run.cpu_seconds:.1f}", f"{1000 * run.cpu_seconds / max(run.delivered, 1):.1f}",
            ]
        )  # fmt: skip
    print_table(header, rows)
    print(
        "\ndeliveries/s: delivered / (worker spawn -> last delivered), start-up included; "
        "steady/s: the sandbox's first to last 2xx arrival. Stock RQ is capped at "
        f"{mode.stock_cap_count} deliveries or {mode.stock_cap_seconds:.0f} s. "
        "RSS: peak of the worker's process group (RQ: parent + work horse). "
        "CPU: the worker process (RQ: including reaped work horses). Jobs in RQ's failed "
        f"registry after the stock run: {stock.rq_failed} (of {stock.delivered} delivered)."
    )


# -- (b) fairness -----------------------------------------------------------------------------
class Poster:
    """Post default-replies for one organization at a steady pace, from a thread."""

    def __init__(
        self, client: FlaskClient, org: Org, count: int, interval: float, tag: str
    ) -> None:
        self.client, self.org, self.count, self.interval = client, org, count, interval
        self.tag = tag
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Poster:
        """Start posting."""
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for index in range(self.count):
                time.sleep(max(0.0, started + index * self.interval - time.monotonic()))
                body = default_reply(self.tag, index)
                self.ids.append(post(self.client, self.org, DEFAULT_REPLY_PATH, body))
            self.finished_at = time.monotonic()
        except BaseException as error:  # reported by join() in the main thread
            self.error = error

    @property
    def done(self) -> bool:
        """Return True once every request has been posted."""
        return not self._thread.is_alive()

    def join(self) -> list[str]:
        """Wait for the thread; return the delivery ids, or raise what it raised."""
        self._thread.join(timeout=self.count * self.interval + 60)
        if self.error:
            raise RuntimeError("posting org B's requests failed") from self.error
        return self.ids


@dataclass
class FairnessRun:
    """Org A's create-contact burst (or none) and org B's default-reply lags."""

    name: str
    limit: int
    b_interval: float
    create_contacts: int
    status_429: int
    rate_vs_limit: float
    window_vs_limit: float
    b_lags: list[float]
    b_missing: int
    seconds: float


def part_fairness(mode: Mode, logs: Path | None) -> list[FairnessRun]:
    """Run org B alone (baseline), then B during A's create-contact burst."""
    return [_fairness_run(mode, logs, burst=False), _fairness_run(mode, logs, burst=True)]


def _fairness_run(mode: Mode, logs: Path | None, burst: bool) -> FairnessRun:
    limit = mode.create_contact_limit
    sandbox = ["--latency-ms", str(FAIRNESS_LATENCY_MS), "--create-contact-limit", str(limit)]
    env = {"DMRELAY_RATE_LIMITS": json.dumps({"create-contact": limit})}
    interval = mode.b_interval_seconds if burst else mode.b_alone_interval_seconds
    count = mode.burst_count if burst else 0
    with running_stack((ORG_A, ORG_B), sandbox, env, logs) as stack:
        enqueue(stack.client(), ORG_A, CREATE_CONTACT_PATH, create_contact, "burst", count)
        started = time.monotonic()
        worker = stack.start_worker()
        wait_until(lambda: stack.workers_registered() > 0 or worker.poll() is not None, 30)
        poster = Poster(stack.client(), ORG_B, mode.b_count, interval, "orgb").start()
        expected = max(mode.b_count * interval, mode.burst_seconds if burst else 0)
        wait_until(
            lambda: (poster.done and stack.pending() == 0) or worker.poll() is not None,
            expected * 1.5 + 60,
            0.2,
        )
        seconds = time.monotonic() - started
        _fail_if_exited(worker, "worker", True)
        b_ids = poster.join()
        journal, b_deliveries = stack.journal(), stack.deliveries(b_ids)
    name = f"org B during {count} create-contacts of org A" if burst else "org B alone (baseline)"
    return _fairness_outcome(name, limit, interval, journal, b_deliveries, len(b_ids), seconds)


def _fairness_outcome(
    name: str,
    limit: int,
    interval: float,
    journal: list[dict[str, Any]],
    b_deliveries: dict[str, Any],
    b_count: int,
    seconds: float,
) -> FairnessRun:
    """Read the create-contact rate, the 429s and org B's lags out of the sandbox journal."""
    creates = [e["at"] for e in answered(journal, CREATE_CONTACT_PATH)]
    arrivals: dict[str, float] = {}
    for entry in answered(journal, DEFAULT_REPLY_PATH):
        arrivals.setdefault(username_of(entry) or "", entry["at"])
    lags = [
        arrivals[d.payload["username"]] - d.received_at
        for d in b_deliveries.values()
        if d.payload["username"] in arrivals
    ]
    per_limit = WINDOW_SECONDS / limit
    return FairnessRun(
        name, limit, interval, len(creates), count_status(journal, 429),
        steady_rate(creates) * per_limit, max_in_window(creates, WINDOW_SECONDS) / limit,
        lags, b_count - len(lags), seconds,
    )  # fmt: skip


def print_fairness(runs: list[FairnessRun], mode: Mode) -> None:
    """Print table (b)."""
    alone, burst = runs
    print(
        f"\n### (b) Fairness: create-contact limit {mode.create_contact_limit}/min in the relay"
        f" and the sandbox ({mode.name} mode), {mode.burst_count} create-contacts,"
        f" {mode.b_count} org B default-replies,"
        f" sandbox latency {FAIRNESS_LATENCY_MS} ms, one worker\n"
    )
    header = ["run", "B every s", "create-contact 2xx", "429s", "rate / limit"]
    header += ["max in 60 s / limit", "B lag p50 ms", "B lag p99 ms", "p99 vs alone", "seconds"]
    rows = [["ideal (baseline)", "", str(mode.burst_count), "0", "1.00", "1.00", "", "", "", ""]]
    rows += [_fairness_row(run, alone) for run in runs]
    print_table(header, rows)
    missing = burst.b_missing + alone.b_missing
    print(
        "\nrate / limit: (n-1)/(last-first) of the sandbox's 2xx create-contact arrivals, per "
        "minute, over the limit; max in 60 s: the most 2xx arrivals in any 60 s window (the "
        "sandbox's own rule), over the limit. B lag: accepted (received_at) -> arrival at the "
        f"sandbox. Org B requests never delivered: {missing}."
    )


def _fairness_row(run: FairnessRun, alone: FairnessRun) -> list[str]:
    """Return one row of table (b); create-contact columns are '-' when none were sent."""
    p50, p99 = percentile_ms(run.b_lags, 50), percentile_ms(run.b_lags, 99)
    sent = run.create_contacts > 0
    return [
        run.name, f"{run.b_interval:g}", str(run.create_contacts) if sent else "-",
        str(run.status_429), f"{run.rate_vs_limit:.2f}" if sent else "-",
        f"{run.window_vs_limit:.2f}" if sent else "-", f"{p50:.0f}", f"{p99:.0f}",
        f"{p99 / percentile_ms(alone.b_lags, 99):.2f}x", f"{run.seconds:.0f}",
    ]  # fmt: skip


# -- (c) chaos --------------------------------------------------------------------------------
@dataclass
class ChaosRun:
    """What became of every accepted delivery after a run with (or without) faults and kills."""

    name: str
    accepted: int
    delivered: int
    dead: int
    pending: int
    lost: int
    unconfirmed: int
    delivered_twice: int
    twice_after_kill: int
    concurrent_sends: int
    status_503: int
    kills: int
    unexpected_exits: int
    seconds: float
    tail_seconds: float
    drained: bool
    by_state: dict[str, int] = field(default_factory=dict)


def part_chaos(mode: Mode, logs: Path | None) -> list[ChaosRun]:
    """Run the calm baseline, then the run with faults and kills."""
    return [_chaos_run(mode, logs, chaos=False), _chaos_run(mode, logs, chaos=True)]


def _chaos_run(mode: Mode, logs: Path | None, chaos: bool) -> ChaosRun:
    """Feed default-replies at a steady pace to three workers, with faults and kills or not."""
    sandbox = ["--latency-ms", str(CHAOS_LATENCY_MS)]
    sandbox += ["--fault-rate", str(CHAOS_FAULT_RATE)] if chaos else []
    with running_stack((ORG_A,), sandbox, CHAOS_ENV, logs) as stack:
        workers = [stack.start_worker() for _ in range(CHAOS_WORKERS)]
        wait_until(lambda: stack.workers_registered() >= CHAOS_WORKERS, 30)
        started = time.monotonic()
        interval = mode.chaos_feed_seconds / mode.chaos_count
        poster = Poster(stack.client(), ORG_A, mode.chaos_count, interval, "c").start()
        kills, exits = _drain(stack, workers, poster, KILL_EVERY_SECONDS if chaos else None)
        drained_at = time.monotonic()
        drained = poster.done and stack.pending() == 0
        ids = poster.join()
        for worker in workers:
            stack.children.stop(worker)  # SIGTERM: in-flight work is handed back to the queue
        outcome = _accounting(stack, ids)
        journal = stack.journal()
    name = "503s 30 % + SIGKILL every 10 s" if chaos else "no faults, no kills (baseline)"
    times = (drained_at - started, drained_at - (poster.finished_at or drained_at))
    return _chaos_outcome(name, ids, outcome, journal, kills, exits, times, drained)


def _drain(
    stack: Stack, workers: list[subprocess.Popen], poster: Poster, kill_every: float | None
) -> tuple[list[float], int]:
    """Wait until everything is posted and settled, SIGKILLing one worker every `kill_every` s.

    Each killed worker is restarted at once. Returns (when each kill happened, epoch s;
    workers that exited on their own, which are restarted too). Bounded by
    DRAIN_LIMIT_SECONDS.
    """
    started = time.monotonic()
    next_kill = started + (kill_every or math.inf)
    kills: list[float] = []
    exits = 0
    for _ in range(int(DRAIN_LIMIT_SECONDS / 0.1) + 1):
        now = time.monotonic()
        if (poster.done and stack.pending() == 0) or now - started > DRAIN_LIMIT_SECONDS:
            break
        for index, worker in enumerate(workers):
            if worker.poll() is not None:
                exits += 1
                workers[index] = stack.start_worker()
        if now >= next_kill:
            victim = len(kills) % len(workers)
            kills.append(time.time())
            stack.children.kill(workers[victim])
            workers[victim] = stack.start_worker()
            next_kill += kill_every or math.inf
        time.sleep(0.1)
    return kills, exits


def _accounting(stack: Stack, ids: list[str]) -> dict[str, tuple[str, str]]:
    """Return every accepted id's fate (delivered, dead, pending or lost) and username.

    Pending means still held somewhere it will be picked up from; lost means held nowhere.
    """
    deliveries = stack.deliveries(ids)
    somewhere = _ids_still_held(stack)
    outcome = {}
    for delivery_id in ids:
        delivery = deliveries.get(delivery_id)
        if delivery is None:
            outcome[delivery_id] = ("lost", "")
            continue
        state = delivery.state if delivery.state in (State.DELIVERED, State.DEAD) else "pending"
        if state == "pending" and delivery_id not in somewhere:
            state = "lost"
        outcome[delivery_id] = (state, delivery.payload["username"])
    return outcome


def _ids_still_held(stack: Stack) -> set[str]:
    """Return ids in a queue, the retry schedule, a processing list or the parked set."""
    redis_ = stack.connection
    held: set[Any] = set()
    for org in stack.orgs:
        held.update(redis_.lrange(stack.store.keys.queue(org.id), 0, -1))
        held.update(redis_.zrange(stack.store.keys.scheduled(org.id), 0, -1))
    for key in redis_.scan_iter(match=stack.store.keys.key("processing", "*"), count=1000):
        held.update(redis_.lrange(key, 0, -1))
    held.update(redis_.smembers(stack.store.keys.key("parked")))
    return {raw.decode() if isinstance(raw, bytes) else str(raw) for raw in held}


def _chaos_outcome(
    name: str,
    ids: list[str],
    outcome: dict[str, tuple[str, str]],
    journal: list[dict[str, Any]],
    kills: list[float],
    exits: int,
    times: tuple[float, float],
    drained: bool,
) -> ChaosRun:
    """Cross-check the relay's account against the sandbox journal."""
    twice_after_kill, concurrent = _duplicates(journal, kills)
    confirmed = Counter(username_of(e) for e in answered(journal, DEFAULT_REPLY_PATH))
    by_state = Counter(state for state, _ in outcome.values())
    unconfirmed = sum(
        1 for state, user in outcome.values() if state == State.DELIVERED and not confirmed[user]
    )
    return ChaosRun(
        name, len(ids), by_state[State.DELIVERED], by_state[State.DEAD], by_state["pending"],
        by_state["lost"], unconfirmed, sum(1 for n in confirmed.values() if n > 1),
        twice_after_kill, concurrent, count_status(journal, 503), len(kills), exits, *times,
        drained, dict(by_state),
    )  # fmt: skip


def _duplicates(journal: list[dict[str, Any]], kills: list[float]) -> tuple[int, int]:
    """Return (second 2xx sends with a SIGKILL since the previous 2xx, concurrent sends).

    Two sends of one message are concurrent when the second arrived while the first was still
    being answered (within the sandbox's latency): that is what leases rule out. A repeat
    after a kill is at-least-once doing its job: the killed worker had not recorded the answer.
    """
    sends: dict[str, list[tuple[float, bool]]] = {}
    for entry in journal:
        if entry["path"].endswith(f"/{DEFAULT_REPLY_PATH}"):
            ok = 200 <= int(entry["status"]) < 300
            sends.setdefault(username_of(entry) or "", []).append((float(entry["at"]), ok))
    after_kill = concurrent = 0
    for times in sends.values():
        times.sort()
        concurrent += sum(1 for (a, _), (b, _) in itertools.pairwise(times) if b - a < LATENCY_S)
        oks = [at for at, ok in times if ok]
        after_kill += sum(
            1 for a, b in itertools.pairwise(oks) if any(a <= kill <= b for kill in kills)
        )
    return after_kill, concurrent


def print_chaos(runs: list[ChaosRun], mode: Mode) -> None:
    """Print table (c)."""
    calm = runs[0]
    print(
        f"\n### (c) Chaos: {mode.chaos_count} default-replies posted over "
        f"{mode.chaos_feed_seconds:.0f} s, sandbox latency {CHAOS_LATENCY_MS} ms,"
        f" {CHAOS_WORKERS} workers,"
        " heartbeat TTL 6 s, backoff 0.2-2 s\n"
    )
    header = ["run", "accepted", "delivered", "dead", "pending", "lost", "not in journal"]
    header += ["delivered twice", "of which after a kill", "concurrent sends", "503s", "kills"]
    header += ["drain s", "vs baseline", "tail s"]
    rows = [
        [
            run.name, str(run.accepted), str(run.delivered), str(run.dead), str(run.pending),
            str(run.lost), str(run.unconfirmed), str(run.delivered_twice),
            str(run.twice_after_kill), str(run.concurrent_sends), str(run.status_503),
            str(run.kills), f"{run.seconds:.1f}" + ("" if run.drained else " (limit)"),
            f"{run.seconds / calm.seconds:.2f}x", f"{run.tail_seconds:.1f}",
        ]
        for run in runs
    ]  # fmt: skip
    print_table(header, rows)
    exits = sum(run.unexpected_exits for run in runs)
    print(
        "\nlost: accepted, not delivered nor dead, and in no queue, schedule, processing list "
        "or parked set. not in journal: delivered per the relay with no 2xx for its username "
        "at the sandbox. delivered twice: usernames with more than one 2xx at the sandbox "
        "(at-least-once); after a kill: a SIGKILL fell between the two 2xx arrivals. "
        "concurrent sends: a message's send arriving while an earlier send of it was still in "
        f"flight (within {CHAOS_LATENCY_MS} ms), whatever the answers. "
        "drain: first post -> all delivered or dead; tail: last post -> all "
        f"delivered or dead. Workers that exited on their own: {exits}."
    )


# -- output -----------------------------------------------------------------------------------
def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table, the first column left-aligned and the others right-aligned."""
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _verdict(met: bool) -> str:
    return "met" if met else "**MISSED**"


def summary_rows(
    a: list[ThroughputRun] | None, b: list[FairnessRun] | None, c: list[ChaosRun] | None
) -> list[list[str]]:
    """Return the final summary rows: part, metric, target, measured, baseline, ratio, verdict."""
    rows: list[list[str]] = []
    if a:
        rows += _throughput_summary(a)
    if b:
        rows += _fairness_summary(b)
    if c:
        rows += _chaos_summary(c)
    return rows


def _throughput_summary(runs: list[ThroughputRun]) -> list[list[str]]:
    stock, rows = runs[0], []
    for run in runs[1:]:
        ratio = run.per_second / stock.per_second
        rows += [
            ["a", f"deliveries/s, {run.in_flight} in flight", ">= 50/s, >= 10x stock",
             f"{run.per_second:.1f}", f"{stock.per_second:.1f} (stock rq)", f"{ratio:.1f}x",
             _verdict(run.per_second >= 50 and ratio >= 10)],
            ["a", f"peak RSS MiB, {run.in_flight} in flight", "<= 512",
             f"{run.peak_rss_mib:.0f}", f"{stock.peak_rss_mib:.0f} (stock rq)",
             f"{run.peak_rss_mib / stock.peak_rss_mib:.1f}x", _verdict(run.peak_rss_mib <= 512)],
        ]  # fmt: skip
    return rows


def _fairness_summary(runs: list[FairnessRun]) -> list[list[str]]:
    alone, burst = runs
    p99, p99_alone = percentile_ms(burst.b_lags, 99), percentile_ms(alone.b_lags, 99)
    rate_ok = burst.rate_vs_limit >= 0.95 and burst.window_vs_limit <= 1.0
    return [
        ["b", "create-contact rate / limit", "~1.0, never over in 60 s",
         f"{burst.rate_vs_limit:.2f} (max 60 s: {burst.window_vs_limit:.2f})", "1.00 (ideal)",
         f"{burst.rate_vs_limit:.2f}x", _verdict(rate_ok)],
        ["b", "429s from DmTracker", "0", str(burst.status_429), "0", "",
         _verdict(burst.status_429 == 0)],
        ["b", "org B lag p99 ms", "<= 1000", f"{p99:.0f}", f"{p99_alone:.0f} (B alone)",
         f"{p99 / p99_alone:.2f}x", _verdict(p99 <= 1000 and burst.b_missing == 0)],
    ]  # fmt: skip


def _chaos_summary(runs: list[ChaosRun]) -> list[list[str]]:
    calm, chaos = runs
    return [
        ["c", "lost deliveries", "0", str(chaos.lost), str(calm.lost), "",
         _verdict(chaos.lost == 0 and chaos.unconfirmed == 0)],
        ["c", "delivered twice (at-least-once)", "reported", str(chaos.delivered_twice),
         str(calm.delivered_twice), "", ""],
        ["c", "of which with a SIGKILL between", "reported", str(chaos.twice_after_kill),
         str(calm.twice_after_kill), "", ""],
        ["c", "concurrent sends of one message", "0", str(chaos.concurrent_sends),
         str(calm.concurrent_sends), "", _verdict(chaos.concurrent_sends == 0)],
        ["c", "dead letters", "0", str(chaos.dead), str(calm.dead), "", _verdict(chaos.dead == 0)],
        ["c", "time to drain s", "drains", f"{chaos.seconds:.1f}", f"{calm.seconds:.1f}",
         f"{chaos.seconds / calm.seconds:.2f}x", _verdict(chaos.drained)],
        ["c", "tail after the last post s", "", f"{chaos.tail_seconds:.1f}",
         f"{calm.tail_seconds:.1f}", "", ""],
    ]  # fmt: skip


def print_summary(rows: list[list[str]], mode: Mode) -> None:
    """Print the final summary table, ready for the README."""
    print(f"\n### Summary ({mode.name} mode, {time.strftime('%Y-%m-%d')})\n")
    header = ["part", "metric", "target", "dmrelay", "baseline", "ratio", "verdict"]
    print_table(header, rows)


def describe_machine(mode: Mode) -> None:
    """Say which mode runs, on what, at which commit."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = len(_git("status", "--porcelain").splitlines())
    print(
        f"bench.throughput: {mode.name} mode; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, commit {commit} with {dirty} uncommitted file(s)",
        flush=True,
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        return "?"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about 4 minutes")
    parser.add_argument("--only", default="abc", help="parts to run, e.g. 'a' or 'bc'")
    parser.add_argument("--keep-logs", type=Path, help="keep every process's output here")
    return parser.parse_args()


def _timed(label: str, run: Callable[[], Any]) -> Any:
    print(f"running {label} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = run()
    print(f"  {label} took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    """Run the chosen parts, printing each table as soon as its part is done."""
    args = _arguments()
    mode = QUICK if args.quick else FULL
    describe_machine(mode)
    a = b = c = None
    if "a" in args.only:
        a = _timed("(a) throughput", lambda: part_throughput(mode, args.keep_logs))
        print_throughput(a, mode)
    if "b" in args.only:
        b = _timed("(b) fairness", lambda: part_fairness(mode, args.keep_logs))
        print_fairness(b, mode)
    if "c" in args.only:
        c = _timed("(c) chaos", lambda: part_chaos(mode, args.keep_logs))
        print_chaos(c, mode)
    print_summary(summary_rows(a, b, c), mode)


if __name__ == "__main__":
    main()
