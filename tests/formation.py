"""Processes as production runs them, for the tests of Redis outages: `dmrelay web` instances
(gunicorn, each a "dyno" with a spool of its own), `dmrelay worker`s, a redis-server that keeps
its data, and the sandbox's journal to count what DmTracker received and in which order.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from relay.core.delivery import Delivery
from relay.devtools.localredis import LocalRedis, free_port, start_local_redis
from relay.storage.intake import fingerprint
from relay.web.spool import SpoolEntry
from tests.helpers import DEFAULT_REPLY, ORG_A, ORG_B, SECRET, headers, wait_until

URL = "/api/v1/contact/default-reply"
SETTLE_SECONDS = 3.0


def relay_env(redis_url: str, dmtracker_url: str, **overrides: str) -> dict[str, str]:
    """Return a relay process's environment: two organizations, quick timings."""
    orgs = [{"id": o.id, "token": o.token} for o in (ORG_A, ORG_B)]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DMRELAY_")}
    return inherited | {
        "REDIS_URL": redis_url,
        "DMRELAY_ORGS": json.dumps(orgs),
        "DMRELAY_SECRET_KEY": SECRET,
        "DMTRACKER_BASE_URL": dmtracker_url,
        "DMRELAY_ANSWER_WAIT_SECONDS": "0",
        "DMRELAY_INGEST_REDIS_DEADLINE_SECONDS": "0.5",
        "DMRELAY_INGEST_RATE_PER_ORG": "0",
        "DMRELAY_SETTLE_SECONDS": str(SETTLE_SECONDS),
        "DMRELAY_WORKER_HEARTBEAT_TTL_SECONDS": "3",
        "DMRELAY_BACKOFF_BASE_SECONDS": "0.05",
        "DMRELAY_BACKOFF_CAP_SECONDS": "0.5",
        # gunicorn's control socket is one per user by default; parallel runs would share it.
        "GUNICORN_CMD_ARGS": "--no-control-socket",
        **overrides,
    }


@dataclass
class Web:
    """One `dmrelay web` instance: a gunicorn master and its workers, one process group."""

    port: int
    spool_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the instance's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Web:
        """Start gunicorn and wait until it answers."""
        env = self.env | {"PORT": str(self.port), "DMRELAY_SPOOL_DIR": str(self.spool_dir)}
        with (self.spool_dir.parent / f"web-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relay", "web"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        wait_until(lambda: self.answers("/healthz") or not self.running(), timeout=30)
        assert self.running(), "gunicorn exited at start-up"
        return self

    def running(self) -> bool:
        """Say whether the master is still running."""
        return self.process is not None and self.process.poll() is None

    def answers(self, path: str) -> bool:
        """Say whether a GET of path answers 200."""
        try:
            return requests.get(self.url + path, timeout=2).ok
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, as a lost machine would."""
        signal_group(self.process, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the instance (as a deploy does) and wait for it to end."""
        signal_group(self.process, signal.SIGTERM, wait_seconds=40)


@dataclass
class Worker:
    """One `dmrelay worker` process."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        """Start the worker."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relay", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the worker."""
        signal_group(self.process, signal.SIGKILL)


def signal_group(
    process: subprocess.Popen[bytes] | None, sig: signal.Signals, wait_seconds: float = 10
) -> None:
    """Send a signal to a process's group, and wait for the process to end."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=wait_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Formation:
    """A test's Redis, web instances and workers; everything is stopped at the end."""

    root: Path
    dmtracker_url: str
    aof: bool = True  # False: Redis keeps its data only in the dump that SHUTDOWN SAVE writes
    redis: LocalRedis = field(init=False)
    webs: list[Web] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.redis = start_local_redis(self.root / "redis", persist=self.aof)

    def env(self, **overrides: str) -> dict[str, str]:
        """Return the relay environment of this formation."""
        return relay_env(self.redis.url, self.dmtracker_url, **overrides)

    def add_web(self, processes: int = 2, **overrides: str) -> Web:
        """Start a web instance ("a dyno") with a spool directory of its own."""
        spool_dir = self.root / f"spool-{len(self.webs)}"
        env = self.env(WEB_CONCURRENCY=str(processes), DMRELAY_WEB_THREADS="4", **overrides)
        web = Web(free_port(), spool_dir, env).start()
        self.webs.append(web)
        return web

    def add_worker(self) -> Worker:
        """Start a worker."""
        worker = Worker(self.env()).start()
        self.workers.append(worker)
        return worker

    def pause_redis(self) -> None:
        """SIGSTOP Redis: connections stay open, nothing is answered."""
        os.kill(self.redis.process.pid, signal.SIGSTOP)

    def resume_redis(self) -> None:
        """SIGCONT Redis."""
        os.kill(self.redis.process.pid, signal.SIGCONT)

    def restart_redis(self) -> None:
        """Stop Redis (it keeps its data in its AOF) and start it again on the same port."""
        self.redis.stop()
        self.redis = start_local_redis(self.root / "redis", port=self.redis.port, persist=True)

    def shutdown_redis(self) -> None:
        """SHUTDOWN SAVE: Redis writes its dump and exits."""
        # The shutdown closes the connection.
        with (
            contextlib.suppress(redis.ConnectionError),
            redis.Redis.from_url(self.redis.url) as admin,
        ):
            admin.shutdown(save=True)
        self.redis.process.wait(timeout=30)

    def start_redis(self) -> None:
        """Start Redis again on its port, from its data directory."""
        self.redis = start_local_redis(self.root / "redis", port=self.redis.port, persist=self.aof)

    def stop(self) -> None:
        """Stop every process of the formation."""
        for process in [*(w.process for w in self.webs), *(w.process for w in self.workers)]:
            signal_group(process, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.resume_redis()
        self.redis.stop()


def new_root() -> Path:
    """Return a fresh 0700 directory for a formation's files."""
    return Path(tempfile.mkdtemp(prefix="dmrelay-formation-"))


def send(base_url: str, contact: int, number: int, timeout: float = 10) -> str | None:
    """Send contact's message `number`; return the answer's status, or None if not a 200."""
    body = {
        **DEFAULT_REPLY,
        "username": f"lead_{contact}",
        "manychat_id": str(50_000 + contact),
        "message_content": f"message {number}",
    }
    try:
        response = requests.post(
            base_url + URL, json=body, headers=headers(ORG_A.token), timeout=timeout
        )
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    return str(response.json().get("status", "delivered"))


def spool_entry(index: int, username: str = "") -> SpoolEntry:
    """Return a spool entry for a reply (by default of a contact of its own)."""
    body = {
        **DEFAULT_REPLY,
        "organization_id": ORG_A.id,
        "username": username or f"lead_{index}",
        "manychat_id": "4242" if username else str(1000 + index),
        "message_content": f"reply {index}",
    }
    delivery = Delivery.new(ORG_A.id, "default-reply", body)
    return SpoolEntry(delivery, fingerprint(ORG_A.id, "default-reply", json.dumps(body)))


def received(journal: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return (username, message) of each default reply DmTracker answered 2xx, in order."""
    found = []
    for entry in journal:
        body = entry.get("body")
        answered = entry["path"].endswith("/default-reply") and 200 <= int(entry["status"]) < 300
        if answered and isinstance(body, dict):
            found.append((str(body.get("username")), str(body.get("message_content"))))
    return found


def ordering_violations(arrivals: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Return (contact, earlier, later) wherever a message arrived first after a newer one.

    Messages are "<n>" numbers in sending order; a repeat of a message already received is
    allowed (delivery is at least once), a first arrival below the highest seen is not.
    """
    highest: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    violations = []
    for contact, message in arrivals:
        if (contact, message) in seen:
            continue
        seen.add((contact, message))
        number = int(message.rsplit(" ", 1)[-1])
        if number < highest.get(contact, -1):
            violations.append((contact, str(highest[contact]), message))
        highest[contact] = max(number, highest.get(contact, -1))
    return violations


def concurrent_calls(journal: Iterable[dict[str, Any]]) -> list[str]:
    """Describe every call DmTracker received while an earlier call of its delivery still ran.

    Calls belong to one delivery when they carry the same X-Request-Id (the worker sends the
    delivery's own); a call without one is reported too, since it could not be checked.
    """
    spans = defaultdict(list)
    for entry in journal:
        spans[entry["headers"].get("x-request-id")].append(entry)
    found = [f"{len(spans[None])} call(s) without an X-Request-Id"] if None in spans else []
    for request_id, calls in spans.items():
        calls.sort(key=lambda call: call["at"])
        for earlier, later in itertools.pairwise(calls):
            if later["at"] < earlier["answered_at"]:
                found.append(
                    f"{request_id} ({message_of(later)}): a call started at {later['at']:.3f}"
                    f" while the one started at {earlier['at']:.3f} ran until"
                    f" {earlier['answered_at']:.3f}"
                )
    return found


def message_of(entry: dict[str, Any]) -> str:
    """Return "<path> <username>: <message>" of a journaled call, for a failure message."""
    body = entry.get("body")
    fields = body if isinstance(body, dict) else {}
    return f"{entry['path']} {fields.get('username')}: {fields.get('message_content')}"
