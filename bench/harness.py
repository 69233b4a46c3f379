"""Plumbing shared by the benchmarks: a private Redis, the DmTracker sandbox, worker processes
in sessions of their own, ingest through the real web app, and probes of memory, CPU, Redis
and the sandbox journal.

Everything listens on 127.0.0.1 only, and everything a scenario starts is stopped when it
ends (process groups are killed, so an RQ work horse cannot outlive its parent).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
import requests
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from relay.config import Org, Settings
from relay.core.delivery import Delivery
from relay.core.endpoints import ENDPOINTS
from relay.devtools.localredis import LocalRedis, free_port, start_local_redis
from relay.storage.keys import queue_name
from relay.storage.store import Store
from relay.web.app import create_app

ORG_A = Org("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "bench-token-a-0123456789", "Bench A")
ORG_B = Org("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", "bench-token-b-0123456789", "Bench B")
SECRET = "bench-secret-key-0123456789abcdef-0123456789"
# Variables of the caller's shell that would point the children at something else.
FOREIGN_ENV = ("REDIS_URL", "DMTRACKER_BASE_URL", "SENTRY_DSN", "PORT")
DEFAULT_REPLY_PATH = "contact/default-reply"
STOCK_TASK = "bench.stock_task.deliver"  # what the stock baseline's jobs name
CREATE_CONTACT_PATH = "organization/create-contact"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- waiting ----------------------------------------------------------------------------------
def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `check` until it is true or `timeout` passes (bounded in time and in count)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return check()


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until `url` answers 2xx; fail if the process serving it exits first."""

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process serving it exited ({process.returncode})")
        try:
            return requests.get(url, timeout=1).ok
        except requests.RequestException:
            return False

    if not wait_until(answers, timeout, interval=0.1):
        raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# -- processes --------------------------------------------------------------------------------
def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the process group led by `process` (each child is started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class Children:
    """The processes one scenario started, stopped newest first, group by group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self._logs: list[IO[bytes]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start a process in a new session, its output in a log file of the scenario."""
        log = (self.log_dir / f"{name}-{len(self.processes)}.log").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL a process group at once, as a crash or a lost machine would."""
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def stop(self, process: subprocess.Popen, grace_seconds: float = 15.0) -> None:
        """SIGTERM the group, give it the grace period, then SIGKILL whatever is left."""
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_seconds)
        self.kill(process)  # also reaps leftovers of the group, e.g. an RQ work horse

    def stop_all(self) -> None:
        """Stop every process started, newest first, and close their logs."""
        for process in reversed(self.processes):
            self.stop(process)
        for log in self._logs:
            log.close()


def relay_env(redis_url: str, api_url: str, orgs: tuple[Org, ...]) -> dict[str, str]:
    """Return the environment of a relay process, without the caller's relay settings."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DMRELAY_") and name not in FOREIGN_ENV
    }
    orgs_json = [{"id": org.id, "token": org.token, "page_name": org.page_name} for org in orgs]
    return inherited | {
        "REDIS_URL": redis_url,
        "DMTRACKER_BASE_URL": api_url,
        "DMRELAY_ORGS": json.dumps(orgs_json),
        "DMRELAY_SECRET_KEY": SECRET,
    }


# -- the stack of one scenario ----------------------------------------------------------------
@dataclass
class Stack:
    """A scenario's private Redis and sandbox, and the means to feed and drain them."""

    redis_server: LocalRedis
    sandbox_base: str
    orgs: tuple[Org, ...]
    children: Children
    extra_env: dict[str, str]
    connection: redis.Redis = field(init=False)
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.connection = redis.Redis.from_url(self.redis_server.url)
        self.store = Store(self.connection)

    @property
    def api_url(self) -> str:
        """Return the sandbox's DmTracker API base URL."""
        return f"{self.sandbox_base}/api/v1"

    def env(self, **overrides: str) -> dict[str, str]:
        """Return the environment for relay processes of this scenario."""
        return (
            relay_env(self.redis_server.url, self.api_url, self.orgs) | self.extra_env | overrides
        )

    def client(self) -> FlaskClient:
        """Return a test client of the real web app, wired to this scenario's Redis."""
        settings = Settings(
            redis_url=self.redis_server.url,
            secret_key=SECRET,
            orgs=self.orgs,
            dmtracker_base_url=self.api_url,
            answer_wait_seconds=dict.fromkeys(ENDPOINTS, 0.0),  # enqueue only, answer at once
            ingest_rate_per_org=0,  # the benchmarks send bursts far above the inbound limit
            spool_dir=str(self.children.log_dir / "spool"),
        )
        return create_app(settings, self.connection).test_client()

    def start_worker(self, **overrides: str) -> subprocess.Popen:
        """Start one `python -m relay worker` process."""
        args = [sys.executable, "-m", "relay", "worker"]
        return self.children.spawn("worker", args, self.env(**overrides))

    def give_stock_jobs(self, org: Org, ids: list[str]) -> None:
        """Store a stock RQ job for each queued delivery, so a stock `rq worker` can run it."""
        queue = queue_name(org.id)
        with self.connection.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                Job.create(
                    STOCK_TASK,
                    id=delivery_id,
                    origin=queue,
                    result_ttl=0,
                    connection=self.connection,
                    serializer=JSONSerializer,
                ).save(pipeline=pipe)
            pipe.execute()

    def start_stock_worker(self, org: Org) -> subprocess.Popen:
        """Start a stock `rq worker --burst` on the organization's queue, JSON serializer."""
        rq = Path(sys.executable).with_name("rq")
        args = [str(rq) if rq.exists() else shutil.which("rq") or "rq", "worker", "--burst"]
        args += ["--url", self.redis_server.url, "--serializer", "rq.serializers.JSONSerializer"]
        return self.children.spawn("stock-rq", [*args, queue_name(org.id)], self.env())

    def pending(self) -> int:
        """Return the relay's count of accepted deliveries neither delivered nor dead."""
        return self.store.stats.pending_count()

    def workers_registered(self) -> int:
        """Return how many relay workers have sent a heartbeat."""
        return int(self.connection.scard(self.store.keys.key("workers")))

    def rq_failed(self, org: Org) -> int:
        """Return how many jobs of the organization's queue RQ holds as failed."""
        registry = FailedJobRegistry(queue_name(org.id), connection=self.connection)
        return int(self.connection.zcard(registry.key))

    def journal(self) -> list[dict[str, Any]]:
        """Return every API request the sandbox received, with its status and arrival time."""
        response = requests.get(f"{self.sandbox_base}/_sandbox/requests", timeout=60)
        response.raise_for_status()
        return list(response.json()["data"])

    def deliveries(self, ids: list[str]) -> dict[str, Delivery]:
        """Load the deliveries still stored, by id."""
        return {d.id: d for d in self.store.history.iter_deliveries(ids)}


@contextmanager
def running_stack(
    orgs: tuple[Org, ...],
    sandbox_args: list[str],
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Stack]:
    """Start a private Redis and the sandbox; stop them and every worker afterwards."""
    with tempfile.TemporaryDirectory(prefix="dmrelay-bench-") as scratch:
        root = Path(scratch)
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        children = Children(log_dir or root)
        server = start_local_redis(root / "redis")
        stack = None
        try:
            sandbox_env = relay_env(server.url, "http://127.0.0.1:9/api/v1", orgs)
            base = start_sandbox(children, sandbox_env, sandbox_args)
            stack = Stack(server, base, orgs, children, dict(extra_env or {}))
            yield stack
        finally:
            children.stop_all()
            if stack:
                stack.connection.close()
            server.stop()


def start_sandbox(children: Children, env: dict[str, str], sandbox_args: list[str]) -> str:
    """Start `python -m relay sandbox` on a free port; return its base URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "relay", "sandbox", "--port", str(port), *sandbox_args]
    process = children.spawn("sandbox", args, env)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/_sandbox/requests", process)
    return base


# -- ingest -----------------------------------------------------------------------------------
def post(client: FlaskClient, org: Org, path: str, body: dict[str, Any]) -> str:
    """Send one request through the web app; return its delivery id (must be newly queued)."""
    response = client.post(f"/api/v1/{path}", json=body, headers={"x-org-auth-token": org.token})
    answer = response.get_json(silent=True) or {}
    data = answer.get("data") or {}
    if response.status_code != 200 or answer.get("status") != "queued" or data.get("duplicate"):
        raise RuntimeError(f"ingest of {path} answered {response.status_code}: {answer}")
    return str(data["delivery_id"])


def default_reply(tag: str, index: int) -> dict[str, Any]:
    """Return a default-reply body for a contact of its own."""
    return {
        "username": f"{tag}_{index}",
        "manychat_id": f"{tag}-{index}",
        "message_content": f"Reply {index} of {tag}: how much is coaching?",
    }


def create_contact(tag: str, index: int) -> dict[str, Any]:
    """Return an outreach create-contact body for a contact of its own."""
    return {
        "username": f"{tag}_{index}",
        "had_outreach": True,
        "outreach_reason": "bench burst",
        "outreach_text": f"Hello {tag} {index}, we met at the fair.",
    }


def enqueue(
    client: FlaskClient,
    org: Org,
    path: str,
    make_body: Callable[[str, int], dict[str, Any]],
    tag: str,
    count: int,
) -> list[str]:
    """Accept `count` requests for distinct contacts; return their delivery ids."""
    return [post(client, org, path, make_body(tag, i)) for i in range(count)]


# -- probes -----------------------------------------------------------------------------------
def _status_kib(pid: int, name: str) -> int:
    """Return one `kB` line of /proc/<pid>/status (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """Return the process's peak resident set (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) of the process and of the children it reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def _group_rss_kib(pgid: int) -> int:
    """Return the summed VmRSS of every process in a process group."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += _status_kib(int(entry.name), "VmRSS")
    return total


class RssSampler:
    """Sample a process group's total resident memory in the background; keep the peak."""

    def __init__(self, pgid: int, interval: float = 0.25, max_seconds: float = 1800) -> None:
        self.pgid, self.interval = pgid, interval
        self.max_samples = int(max_seconds / interval)
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def _run(self) -> None:
        for _ in range(self.max_samples):
            self.peak_kib = max(self.peak_kib, _group_rss_kib(self.pgid))
            if self._stop.wait(self.interval):
                return

    def stop(self) -> float:
        """Stop sampling; return the peak in MiB."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak_kib / 1024


# -- journal and outcome analysis --------------------------------------------------------------
def answered(journal: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """Return the journal entries of one API path that got a 2xx, in arrival order."""
    return [e for e in journal if e["path"].endswith(f"/{path}") and 200 <= int(e["status"]) < 300]


def count_status(journal: list[dict[str, Any]], status: int) -> int:
    """Return how many API requests were answered with `status`."""
    return sum(1 for entry in journal if int(entry["status"]) == status)


def username_of(entry: dict[str, Any]) -> str | None:
    """Return the username a journal entry's body carried."""
    body = entry.get("body")
    return body.get("username") if isinstance(body, dict) else None


def percentile_ms(seconds: list[float], q: int) -> float:
    """Return the q-th percentile of samples given in seconds, in milliseconds."""
    if not seconds:
        return float("nan")
    if len(seconds) == 1:
        return seconds[0] * 1000
    return statistics.quantiles(seconds, n=100, method="inclusive")[q - 1] * 1000


def steady_rate(times: list[float]) -> float:
    """Return arrivals per second between the first and the last arrival."""
    times = sorted(times)
    if len(times) < 2 or times[-1] == times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def max_in_window(times: list[float], window: float) -> int:
    """Return the largest number of arrivals inside any half-open window of `window` s."""
    times, best, first = sorted(times), 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best
