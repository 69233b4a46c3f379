"""Bodies over 64 KiB get 413 from the real servers, chunked (no Content-Length) included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from relay.config import Settings
from relay.core import defaults
from relay.devtools.localredis import LocalRedis, free_port
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, SECRET, queued_ids, served, wait_until

PATH = "/api/v1/contact/default-reply"
LIMIT = defaults.MAX_BODY_BYTES
TOO_LARGE = {
    "error": "Request Entity Too Large",
    "message": "The request body is larger than the relay accepts.",
}


@pytest.fixture(scope="module")
def gunicorn_url(redis_server: LocalRedis) -> Iterator[str]:
    """Serve the relay as production does (`dmrelay web`: gunicorn, gthread) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "REDIS_URL": redis_server.url,
        "DMRELAY_ORGS": json.dumps([{"id": ORG_A.id, "token": ORG_A.token}]),
        "DMRELAY_SECRET_KEY": SECRET,
        "DMTRACKER_BASE_URL": "http://127.0.0.1:9/api/v1",
        "WEB_CONCURRENCY": "1",
        "DMRELAY_WEB_THREADS": "2",
        # gunicorn's control socket is one per user by default; parallel runs would share it.
        "GUNICORN_CMD_ARGS": "--no-control-socket",
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "relay", "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url) or web.poll() is not None, timeout=30, interval=0.1)
        assert web.poll() is None, "gunicorn exited at start-up"
        yield url
    finally:
        web.terminate()
        web.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def werkzeug_url(redis_server: LocalRedis) -> Iterator[str]:
    """Serve the relay with Werkzeug's threaded server, as `relay_url` does, once per module."""
    settings = Settings(redis_url=redis_server.url, secret_key=SECRET, orgs=(ORG_A,))
    app = create_app(settings, redis.Redis.from_url(redis_server.url))
    with served(app) as url:
        yield url


@pytest.fixture(params=["gunicorn", "werkzeug"])
def server_url(request: pytest.FixtureRequest, redis_conn: redis.Redis) -> str:
    """Return the base URL of the relay under gunicorn, then under Werkzeug's server."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def json_body(size: int) -> bytes:
    """Return a valid default-reply body of exactly `size` bytes."""
    empty = json.dumps({**DEFAULT_REPLY, "padding": ""}).encode()
    body = json.dumps({**DEFAULT_REPLY, "padding": "x" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


def send_chunked(url: str, body: bytes, *, finish: bool = True) -> tuple[int, dict]:
    """POST body with Transfer-Encoding: chunked over a raw socket; return status and JSON."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"x-org-auth-token: {ORG_A.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 8192):
            piece = body[start : start + 8192]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        if finish:
            sock.sendall(b"0\r\n\r\n")
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Read one HTTP/1.1 response with a Content-Length; return its status and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    while len(rest) < length:
        rest += _recv(sock)
    return int(lines[0].split()[1]), json.loads(rest[:length])


def _recv(sock: socket.socket) -> bytes:
    got = sock.recv(65536)
    assert got, "the server closed the connection without an answer"
    return got


def test_a_chunked_body_at_the_limit_is_accepted(server_url: str, redis_conn: redis.Redis) -> None:
    status, body = send_chunked(server_url, json_body(LIMIT))
    assert (status, body["status"]) == (200, "queued")
    assert len(queued_ids(redis_conn)) == 1


@pytest.mark.parametrize("size", [LIMIT + 1, 70_000, 200_000, 2_000_000])
def test_a_chunked_body_over_the_limit_is_413(
    server_url: str, redis_conn: redis.Redis, size: int
) -> None:
    assert send_chunked(server_url, json_body(size)) == (413, TOO_LARGE)
    assert queued_ids(redis_conn) == []


def test_a_chunked_body_whose_first_64_kib_are_valid_json_is_not_cut(
    server_url: str, redis_conn: redis.Redis
) -> None:
    # Cut at the limit this body is a valid reply, so it used to be queued without its tail.
    body = json_body(1000) + b" " * LIMIT
    assert send_chunked(server_url, body) == (413, TOO_LARGE)
    assert queued_ids(redis_conn) == []


def test_413_comes_as_soon_as_the_stream_passes_the_limit(server_url: str) -> None:
    # The body never ends: the answer must not wait for the rest of it.
    started = time.monotonic()
    assert send_chunked(server_url, json_body(LIMIT + 8192), finish=False) == (413, TOO_LARGE)
    assert time.monotonic() - started < 5


def test_a_content_length_over_the_limit_is_413_too(server_url: str) -> None:
    response = requests.post(
        f"{server_url}{PATH}",
        data=json_body(LIMIT + 1),
        headers={"x-org-auth-token": ORG_A.token, "Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()) == (413, TOO_LARGE)


def test_a_small_chunked_body_is_read_whole(server_url: str, redis_conn: redis.Redis) -> None:
    status, body = send_chunked(server_url, json.dumps(DEFAULT_REPLY).encode())
    assert (status, body["status"]) == (200, "queued")
    assert len(queued_ids(redis_conn)) == 1
