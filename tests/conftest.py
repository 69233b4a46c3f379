"""Shared fixtures: a private redis-server, a real DmTracker sandbox, the app and a worker.

Plain helpers and constants live in tests/helpers.py; test modules import from there.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

import relay.web.app
from relay.config import Settings
from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.devtools.sandbox import SandboxOrg, SandboxServer, create_sandbox_app
from relay.storage import tally
from relay.storage.answers import AnswerListener
from relay.storage.store import Store
from relay.web.app import create_app
from tests.helpers import ORG_A, ORG_B, RunningWorker, Sandbox, make_settings, served


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """Start one private redis-server on a free port for the whole run."""
    server = start_local_redis(Path(tmp_path_factory.mktemp("redis")))
    yield server
    close_answer_listeners()
    server.stop()


def close_answer_listeners() -> None:
    """Close the answer listeners of every app the tests built, before their Redis stops."""
    # Apps are built in many tests and never torn down; their listener threads would
    # otherwise report the lost Redis after the run.
    for found in gc.get_objects():
        if isinstance(found, AnswerListener):
            found.close()


@pytest.fixture
def redis_conn(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """Return a client on an empty database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def server_config(redis_conn: redis.Redis) -> Iterator[Callable[[str, str], None]]:
    """Return a function that changes the test server's CONFIG; every change is undone after."""
    saved: dict[str, str] = {}

    def set_config(name: str, value: str) -> None:
        saved.setdefault(name, str(redis_conn.config_get(name)[name]))
        redis_conn.config_set(name, value)

    yield set_config
    for name, value in saved.items():
        redis_conn.config_set(name, value)


@pytest.fixture(autouse=True)
def stop_front_doors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop the spool drainer and Redis pulse of every app a test built, when it ends.

    Left running, an app's pulse would go on writing to the session's Redis in later tests.
    """
    built: list[Any] = []
    build = relay.web.app.front_door

    def recorded(*args: Any) -> Any:
        door = build(*args)
        built.append(door)
        return door

    monkeypatch.setattr(relay.web.app, "front_door", recorded)
    yield
    for door in built:
        door.close(drain_seconds=0)


@pytest.fixture(autouse=True)
def forget_unwritten_metrics() -> Iterator[None]:
    """Keep counts a test left unwritten out of the next test's database (and its Redis)."""
    yield
    tally.discard_unwritten()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """Run the DmTracker sandbox over real HTTP for the whole run."""
    orgs = [SandboxOrg(org.id, org.token) for org in (ORG_A, ORG_B)]
    server = SandboxServer(create_sandbox_app(orgs)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[Sandbox]:
    """Return the sandbox with fresh state."""
    handle = Sandbox(sandbox_server)
    requests.delete(f"{handle.control}/state", timeout=5).raise_for_status()
    yield handle
    requests.delete(f"{handle.control}/state", timeout=5).raise_for_status()


@pytest.fixture
def settings(redis_server: LocalRedis, sandbox_server: SandboxServer, tmp_path: Path) -> Settings:
    """Return settings for two organizations, Redis and the sandbox, quick retries, no wait."""
    return make_settings(redis_server.url, sandbox_server.url, tmp_path / "spool")


@pytest.fixture
def app(settings: Settings, redis_conn: redis.Redis):  # type: ignore[no-untyped-def]
    """Return the web app wired to the test Redis; its spool's drainer stops with the test."""
    app = create_app(settings, redis_conn)
    yield app
    app.extensions["dmrelay.front_door"].close(drain_seconds=0)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """Return a Flask test client."""
    return app.test_client()


@pytest.fixture
def store(redis_conn: redis.Redis) -> Store:
    """Return the Redis adapter on the test database."""
    return Store(redis_conn)


@pytest.fixture
def start_worker(settings: Settings, redis_conn: redis.Redis) -> Iterator[Any]:
    """Return a function that starts workers; all are stopped at teardown."""
    started: list[RunningWorker] = []

    def start(custom: Settings | None = None) -> RunningWorker:
        worker = RunningWorker(custom or settings, redis_conn).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def relay_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve the web app over real HTTP on a free port."""
    with served(app) as url:
        yield url
