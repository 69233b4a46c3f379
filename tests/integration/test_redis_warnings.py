"""Web and worker each log one warning line per Redis setting that can lose deliveries."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from relay.config import Settings
from relay.web.app import create_app
from tests.helpers import ORG_A, SECRET, free_port_url, with_settings

ConfigSetter = Callable[[str, str], None]
RISKY = ("Redis maxmemory-policy is", "Redis persistence is off", "Redis memory is")


def make_risky(server_config: ConfigSetter, redis_conn: redis.Redis) -> None:
    """Evict, keep nothing on disk (as the suite's server already does) and be nearly full."""
    server_config("maxmemory-policy", "allkeys-lru")
    used = int(redis_conn.info("memory")["used_memory"])
    server_config("maxmemory", str(int(used * 1.1)))


def assert_one_line_per_risk(lines: list[str]) -> None:
    """Check there is exactly one warning line per risky setting, in order."""
    assert len(lines) == len(RISKY), lines
    assert all(line.startswith(risk) for line, risk in zip(lines, RISKY, strict=True)), lines


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """Return the warning lines one logger wrote."""
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelname == "WARNING"]


def test_web_start_up_logs_one_line_per_risky_setting(  # type: ignore[no-untyped-def]
    settings, redis_conn, server_config, caplog
) -> None:
    make_risky(server_config, redis_conn)
    with caplog.at_level(logging.WARNING, logger="dmrelay.web"):
        create_app(settings, redis_conn)
    assert_one_line_per_risk(warnings_of(caplog, "dmrelay.web"))


def test_web_start_up_is_quiet_on_a_sound_server(  # type: ignore[no-untyped-def]
    settings, redis_conn, server_config, caplog
) -> None:
    server_config("save", "3600 1")
    with caplog.at_level(logging.WARNING, logger="dmrelay.web"):
        create_app(settings, redis_conn)
    assert warnings_of(caplog, "dmrelay.web") == []


def test_web_starts_while_redis_is_down(settings: Settings, caplog) -> None:  # type: ignore[no-untyped-def]
    port = free_port_url().split(":")[2].split("/")[0]
    down = with_settings(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="dmrelay.web"):
        client = create_app(down).test_client()
    assert warnings_of(caplog, "dmrelay.web") == [
        "could not inspect Redis at start-up (ConnectionError); going on"
    ]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503


def test_worker_start_up_logs_one_line_per_risky_setting(  # type: ignore[no-untyped-def]
    settings, redis_conn, server_config
) -> None:
    make_risky(server_config, redis_conn)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": settings.redis_url,
        "DMRELAY_SECRET_KEY": SECRET,
        "DMRELAY_ORGS": json.dumps([{"id": ORG_A.id, "token": ORG_A.token}]),
        "DMTRACKER_BASE_URL": settings.dmtracker_base_url,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "relay", "worker"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = read_log_until_started(worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    warned = [line["message"] for line in lines if line["level"] == "warning"]
    assert_one_line_per_risk(warned)
    assert all(line["logger"] == "dmrelay.worker" for line in lines if line["level"] == "warning")


def read_log_until_started(worker: subprocess.Popen) -> list[dict]:
    """Read the worker's JSON log lines up to the one that says it started."""
    assert worker.stdout is not None
    lines = []
    for raw in worker.stdout:
        line = json.loads(raw)
        lines.append(line)
        if " started, " in line["message"]:
            return lines
    raise AssertionError(f"the worker stopped before starting: {lines}")
