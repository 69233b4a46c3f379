"""`dmrelay run`: the whole relay on one machine, with no accounts needed."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from relay.devtools.localredis import free_port, start_local_redis
from relay.web.admin import tokens

STATE_DIR = Path(".dmrelay")
# Each stage of the stop gets this long after SIGTERM before its stragglers are killed.
STOP_GRACE_SECONDS = 30


def run_local(port: int) -> int:
    """Start Redis, the sandbox, web and worker; stop them all on Ctrl-C or SIGTERM."""
    env = dict(os.environ)
    stop = StopRequest.install()
    started: list[subprocess.Popen] = []
    demo = not env.get("DMTRACKER_BASE_URL") and not env.get("DMRELAY_ORGS")
    try:
        _start_all(env, port, started, stop)
        _print_banner(env, port, demo)
        _wait_for_exit(started, stop)
    except Stopped:
        pass
    finally:
        stop.announce()
        _stop_all(started)
    return 0


class Stopped(Exception):
    """A stop was asked for while `dmrelay run` was starting or running."""


class StopRequest:
    """Remember a SIGINT or SIGTERM; the handler only records it, so none can cut a stop short."""

    def __init__(self) -> None:
        self.requested = False
        self.announced = False

    @classmethod
    def install(cls) -> StopRequest:
        """Handle SIGINT and SIGTERM from now on, for the rest of the process."""
        request = cls()
        signal.signal(signal.SIGINT, request.handle)
        signal.signal(signal.SIGTERM, request.handle)
        return request

    def handle(self, signum: int, frame: object) -> None:
        """Record the signal; any number of them, in any order, mean the same: stop."""
        self.requested = True

    def check(self) -> None:
        """Raise Stopped if a stop was asked for."""
        if self.requested:
            raise Stopped

    def announce(self) -> None:
        """Say once that everything is stopping."""
        if not self.announced:
            self.announced = True
            print("\ndmrelay run: stopping", file=sys.stderr, flush=True)


def _start_all(
    env: dict[str, str], port: int, started: list[subprocess.Popen], stop: StopRequest
) -> None:
    """Start each process in turn, recording it before the next, and check for a stop between."""
    if not env.get("REDIS_URL"):
        server = start_local_redis(STATE_DIR / "redis", persist=True)
        started.append(server.process)
        env["REDIS_URL"] = server.url
    stop.check()
    if not env.get("DMTRACKER_BASE_URL"):
        _start_sandbox(env, started, stop)
    env["PORT"] = str(port)
    started.append(_spawn(["-m", "relay", "web"], env))
    started.append(_spawn(["-m", "relay", "worker"], env))
    _wait_http(f"http://127.0.0.1:{port}/readyz", started, stop)


def _start_sandbox(env: dict[str, str], started: list[subprocess.Popen], stop: StopRequest) -> None:
    env.setdefault("DMRELAY_ORGS", json.dumps([_demo_org()]))
    env.setdefault("DMRELAY_SECRET_KEY", _local_secret())
    sandbox_port = free_port()
    env["DMTRACKER_BASE_URL"] = f"http://127.0.0.1:{sandbox_port}/api/v1"
    started.append(_spawn(["-m", "relay", "sandbox", "--port", str(sandbox_port)], env))
    _wait_http(f"http://127.0.0.1:{sandbox_port}/_sandbox/requests", started, stop)


def _demo_org() -> dict[str, str]:
    """Return the demo organization, made once and kept in .dmrelay/."""
    path = STATE_DIR / "demo-org.json"
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        org = {
            "id": str(uuid.uuid4()),
            "token": f"demo-{secrets.token_urlsafe(18)}",
            "page_name": "Demo Page",
        }
        path.write_text(json.dumps(org))
        path.chmod(0o600)
    return dict(json.loads(path.read_text()))


def _local_secret() -> str:
    path = STATE_DIR / "secret-key"
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C reaches only this launcher, which stops the children in
    # order (worker and web before the sandbox, Redis last), each child's whole process group.
    return subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)


def _wait_http(
    url: str, children: list[subprocess.Popen], stop: StopRequest, timeout_seconds: float = 30
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        stop.check()
        if any(child.poll() is not None for child in children):
            raise SystemExit("dmrelay run: a process exited during start-up (see above)")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"dmrelay run: {url} did not answer in {timeout_seconds:.0f} s")


def _print_banner(env: dict[str, str], port: int, demo: bool) -> None:
    """Say where everything runs; show a token only if it is the demo one."""
    org = _demo_org() if demo else {"id": "<your org id>", "token": "<your org token>"}
    base = f"http://127.0.0.1:{port}"
    admin_token = (
        tokens.mint(env["DMRELAY_SECRET_KEY"], [tokens.READ, tokens.ADMIN], 8 * 3600, "local")
        if demo
        else "run `dmrelay token --scope relay:admin --ttl 8h`"
    )
    body = json.dumps(
        {
            "manychat_id": "123456",
            "username": "john_doe",
            "message_content": "Hi! How much is coaching?",
        }
    )
    print(
        f"""
dmrelay is running (Ctrl-C stops everything)
  relay:      {base}/api/v1   (dashboard: {base}/dashboard)
  DmTracker:  {env["DMTRACKER_BASE_URL"]}
  Redis:      {env["REDIS_URL"]}
  demo org:   {org["id"]}
  demo token: {org["token"]}
  dashboard sign-in token (8 h): {admin_token}

Try it:
  curl -s -X POST {base}/api/v1/contact/default-reply \\
    -H 'Content-Type: application/json' -H 'x-org-auth-token: {org["token"]}' \\
    -d '{body}'
""",
        flush=True,
    )


def _wait_for_exit(children: list[subprocess.Popen], stop: StopRequest) -> None:
    """Return when a stop is asked for or any child exits."""
    while all(child.poll() is None for child in children):
        stop.check()
        time.sleep(0.2)
    print("dmrelay run: a process exited; stopping the others", file=sys.stderr)


def _stop_all(started: list[subprocess.Popen]) -> None:
    """Stop the children in stages: worker and web, then the sandbox, then Redis."""
    # The worker finishes its call in flight against the sandbox and Redis, so they go after it.
    stages: dict[str, list[subprocess.Popen]] = {"app": [], "sandbox": [], "redis": []}
    for child in started:
        stages[_role(child)].append(child)
    for stage in stages.values():
        _stop_group(stage)


def _role(child: subprocess.Popen) -> str:
    """Name the stage a child stops in, from its command line."""
    args = [str(arg) for arg in child.args] if isinstance(child.args, list) else []
    if "sandbox" in args:
        return "sandbox"
    return "app" if "relay" in args else "redis"


def _stop_group(children: list[subprocess.Popen]) -> None:
    """Send SIGTERM to each child's process group, then SIGKILL whatever outlives the grace."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        # A gunicorn worker whose master died first would be left behind: end the group too.
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)
