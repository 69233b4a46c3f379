"""rediss:// against a real TLS redis-server with a self-signed certificate, as Heroku's."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relay.config import Settings
from relay.devtools.localredis import free_port, redis_server_binary
from relay.storage.connection import connect
from relay.web.app import create_app
from tests.helpers import DEFAULT_REPLY, ORG_A, RunningWorker, headers, wait_until, with_settings


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a throwaway self-signed certificate and key; return their paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a redis-server that speaks only TLS; yield its rediss:// URL."""
    directory = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed_certificate(directory)
    port, log = free_port(), directory / "redis.log"
    options = {"port": 0, "tls-port": port, "bind": "127.0.0.1", "tls-cert-file": cert}
    options |= {"tls-key-file": key, "tls-auth-clients": "no", "save": "", "logfile": log}
    process = subprocess.Popen(
        [
            redis_server_binary(),
            *itertools.chain(*((f"--{k}", str(v)) for k, v in options.items())),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"rediss://127.0.0.1:{port}/0"
    try:
        wait_for_tls_redis(process, url, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_tls_redis(process: subprocess.Popen, url: str, log: Path) -> None:
    """Wait until the server answers over TLS; skip if this build has no TLS."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.skip(f"this redis-server cannot serve TLS: {log.read_text()[-200:]}")
        try:
            connect(url, 1).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("TLS redis-server did not start in time")


def test_a_default_client_refuses_the_self_signed_certificate(tls_url: str) -> None:
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(tls_url, socket_connect_timeout=2).ping()


def test_a_message_goes_through_a_tls_redis_to_dmtracker(  # type: ignore[no-untyped-def]
    tls_url: str, settings: Settings, sandbox
) -> None:
    tls_settings = with_settings(settings, redis_url=tls_url)
    app = create_app(tls_settings)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    response = client.post(
        "/api/v1/contact/default-reply", json=DEFAULT_REPLY, headers=headers(ORG_A.token)
    )
    assert response.status_code == 200, response.get_json()
    worker = RunningWorker(tls_settings, connect(tls_url, 6)).start()
    try:
        wait_until(lambda: sandbox.requests())
    finally:
        worker.stop()
    assert sandbox.requests()[0]["body"]["message_content"] == DEFAULT_REPLY["message_content"]
