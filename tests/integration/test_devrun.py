"""`dmrelay run` stops everything it started, whatever signals arrive and whenever."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from relay.devtools import devrun
from relay.devtools.localredis import free_port

BANNER = "dmrelay is running"


def descendants(root: int) -> set[int]:
    """Return the pids of every living process below root, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Tell whether pid is a running process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_is_free(port: int) -> bool:
    """Tell whether nothing listens on the loopback port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start `dmrelay run` in a process group of its own, in an empty directory."""
    runs: list[subprocess.Popen] = []

    def start(port: int | None = None) -> tuple[subprocess.Popen, int]:
        port = port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DMRELAY_", "REDIS_"))}
        env.pop("DMTRACKER_BASE_URL", None)
        run = subprocess.Popen(
            [sys.executable, "-m", "relay", "run", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
        runs.append(run)
        return run, port

    yield start
    for run in runs:
        for pid in descendants(run.pid) | {run.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait()
        if run.stdout is not None:
            run.stdout.close()


def read_until(run: subprocess.Popen, marker: str, timeout_seconds: float = 60) -> str:
    """Return what `dmrelay run` printed up to the line holding marker."""
    assert run.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        line = run.stdout.readline()
        lines.append(line)
        if marker in line:
            return "".join(lines)
        assert line, f"dmrelay run ended before {marker!r}: {''.join(lines)}"
    raise AssertionError(f"no {marker!r} in {timeout_seconds} s: {''.join(lines)}")


def stop_with(run: subprocess.Popen, signals: list[signal.Signals], gap_seconds: float) -> None:
    """Send each signal to the run's whole process group, gap_seconds apart."""
    for number in signals:
        os.killpg(run.pid, number)
        time.sleep(gap_seconds)


def assert_all_stopped(run: subprocess.Popen, started: set[int], port: int) -> None:
    """Every process the run started is gone and the web port is free, within the grace."""
    grace = devrun.STOP_GRACE_SECONDS + 5
    assert run.wait(timeout=grace) == 0
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in started):
        time.sleep(0.1)
    assert [pid for pid in started if alive(pid)] == []
    assert port_is_free(port)


def test_two_ctrl_c_in_a_row_stop_every_process_and_free_the_port(launch) -> None:  # type: ignore[no-untyped-def]
    run, port = launch()
    read_until(run, BANNER)
    started = descendants(run.pid)
    # redis-server, the sandbox, the gunicorn master and its workers, and the delivery worker.
    assert len(started) >= 5
    stop_with(run, [signal.SIGINT, signal.SIGINT], gap_seconds=0.2)
    assert_all_stopped(run, started, port)
    # The next `make run` starts at once on the same port.
    again, _ = launch(port)
    read_until(again, BANNER)
    stop_with(again, [signal.SIGINT], gap_seconds=0)
    assert_all_stopped(again, descendants(again.pid), port)


def test_a_relayed_request_gets_dmtrackers_answer_then_sigterm_and_sigint_stop_all(launch) -> None:  # type: ignore[no-untyped-def]
    run, port = launch()
    banner = read_until(run, "curl")
    token = banner.split("demo token: ", 1)[1].split()[0]
    answer = requests.post(
        f"http://127.0.0.1:{port}/api/v1/contact/default-reply?wait=5",
        json={"manychat_id": "1", "username": "john_doe", "message_content": "Hi"},
        headers={"x-org-auth-token": token},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json()["data"]["contact_type"] in {"outreach", "inbound"}
    assert answer.json()["relay"]["delivery_id"]
    started = descendants(run.pid)
    stop_with(run, [signal.SIGTERM, signal.SIGINT, signal.SIGTERM], gap_seconds=0.2)
    assert_all_stopped(run, started, port)


def test_signals_during_start_up_stop_what_was_started(launch) -> None:  # type: ignore[no-untyped-def]
    run, port = launch()
    started: set[int] = set()
    deadline = time.monotonic() + 30
    # Wait until start-up is under way (Redis and at least one more child), not yet ready.
    while time.monotonic() < deadline and len(started) < 2:
        started |= descendants(run.pid)
        time.sleep(0.02)
    stop_with(run, [signal.SIGINT, signal.SIGTERM], gap_seconds=0.2)
    started |= descendants(run.pid)
    assert_all_stopped(run, started, port)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(devrun, "STOP_GRACE_SECONDS", 1)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    began = time.monotonic()
    devrun._stop_group([stubborn])
    assert stubborn.returncode == -signal.SIGKILL
    assert 0.9 <= time.monotonic() - began < 5
    stubborn.stdout.close()
