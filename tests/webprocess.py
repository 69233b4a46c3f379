"""`dmrelay web` as production runs it (gunicorn, the buffering worker), for tests that need it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import requests

from relay.config import Org
from relay.devtools.localredis import free_port
from tests.helpers import SECRET, wait_until


@contextmanager
def dmrelay_web(
    redis_url: str, orgs: Sequence[Org], dmtracker_url: str, **env: str
) -> Iterator[str]:
    """Run `dmrelay web` on a free port with these settings; yield its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "DMRELAY_ORGS": json.dumps([{"id": org.id, "token": org.token} for org in orgs]),
        "DMRELAY_SECRET_KEY": SECRET,
        "DMTRACKER_BASE_URL": dmtracker_url,
        # gunicorn's control socket is one per user by default; parallel runs would share it.
        "GUNICORN_CMD_ARGS": "--no-control-socket",
        # A spool of its own, never the one other runs on this host share.
        "DMRELAY_SPOOL_DIR": tempfile.mkdtemp(prefix="dmrelay-test-spool-"),
        **env,
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "relay", "web"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url) or web.poll() is not None, timeout=30, interval=0.1)
        assert web.poll() is None, "gunicorn exited at start-up"
        yield url
    finally:
        web.terminate()
        web.wait(timeout=30)


def answers(url: str) -> bool:
    """Return True once the web process answers /healthz."""
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False
