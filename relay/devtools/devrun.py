"""`dmrelay run`: the whole relay on one machine, with no accounts needed."""

from __future__ import annotations

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

from relay.devtools.localredis import LocalRedis, free_port, start_local_redis
from relay.web.admin import tokens

STATE_DIR = Path(".dmrelay")


def run_local(port: int) -> int:
    """Start Redis, the sandbox, web and worker; stop them all on Ctrl-C."""
    env = dict(os.environ)
    local_redis = _redis(env)
    children: list[subprocess.Popen] = []
    demo = not env.get("DMTRACKER_BASE_URL") and not env.get("DMRELAY_ORGS")
    try:
        if not env.get("DMTRACKER_BASE_URL"):
            children.append(_start_sandbox(env))
        env["PORT"] = str(port)
        children.append(_spawn(["-m", "relay", "web"], env))
        children.append(_spawn(["-m", "relay", "worker"], env))
        _wait_http(f"http://127.0.0.1:{port}/readyz", children)
        _print_banner(env, port, demo)
        _wait_for_exit(children)
    finally:
        _stop(children)
        if local_redis:
            local_redis.stop()
    return 0


def _redis(env: dict[str, str]) -> LocalRedis | None:
    if env.get("REDIS_URL"):
        return None
    server = start_local_redis(STATE_DIR / "redis", persist=True)
    env["REDIS_URL"] = server.url
    return server


def _start_sandbox(env: dict[str, str]) -> subprocess.Popen:
    env.setdefault("DMRELAY_ORGS", json.dumps([_demo_org()]))
    env.setdefault("DMRELAY_SECRET_KEY", _local_secret())
    sandbox_port = free_port()
    env["DMTRACKER_BASE_URL"] = f"http://127.0.0.1:{sandbox_port}/api/v1"
    child = _spawn(["-m", "relay", "sandbox", "--port", str(sandbox_port)], env)
    _wait_http(f"http://127.0.0.1:{sandbox_port}/_sandbox/requests", [child])
    return child


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
    # order (worker and web before the sandbox, Redis last) and signals each once.
    return subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)


def _wait_http(url: str, children: list[subprocess.Popen], timeout_seconds: float = 30) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
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


def _wait_for_exit(children: list[subprocess.Popen]) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("dmrelay run: a process exited; stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndmrelay run: stopping", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(children: list[subprocess.Popen]) -> None:
    """Stop the children newest first, each with SIGTERM and 30 s to finish."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
