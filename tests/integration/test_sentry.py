"""Sentry: errors reach the DSN (a local capture server) without tokens or bodies."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import DEFAULT_REPLY, ORG_A, SECRET

SCRIPT = """
import sys
from relay.web.app import create_app
from relay.config import load_settings

app = create_app(load_settings())
def broken(*args, **kwargs):
    raise RuntimeError("store exploded")
app.extensions["dmrelay.front_door"].intake.accept = broken
response = app.test_client().post(
    "/api/v1/contact/default-reply", data=sys.argv[1],
    headers={"x-org-auth-token": sys.argv[2], "Content-Type": "application/json"},
)
print(response.status_code)
import sentry_sdk
sentry_sdk.flush(timeout=5)
"""


@pytest.fixture
def capture() -> Iterator[tuple[str, list[bytes]]]:
    """Run an HTTP server that records what the Sentry SDK sends."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_port}/1", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def run_app(dsn: str | None, redis_url: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "DMRELAY_SECRET_KEY": SECRET,
        "DMRELAY_ORGS": json.dumps([{"id": ORG_A.id, "token": ORG_A.token}]),
    }
    if dsn:
        env["SENTRY_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(DEFAULT_REPLY), ORG_A.token],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_error_is_reported_without_secrets(capture, redis_server) -> None:  # type: ignore[no-untyped-def]
    dsn, received = capture
    result = run_app(dsn, redis_server.url)

    assert result.stdout.strip() == "500", result.stderr
    sent = b"".join(received).decode()
    assert "store exploded" in sent
    assert ORG_A.token not in sent
    assert DEFAULT_REPLY["message_content"] not in sent


def test_nothing_is_sent_without_a_dsn(capture, redis_server) -> None:  # type: ignore[no-untyped-def]
    _, received = capture
    result = run_app(None, redis_server.url)
    assert result.stdout.strip() == "500", result.stderr
    assert received == []
