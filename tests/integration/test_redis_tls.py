"""rediss:// against a real TLS redis-server with a self-signed certificate, as Heroku's."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from relay import cli
from relay.config import Settings, load_settings
from relay.devtools.localredis import free_port, redis_server_binary
from relay.storage.connection import connect
from relay.web.app import create_app
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    SECRET,
    RunningWorker,
    headers,
    wait_until,
    with_settings,
)

ORGS = json.dumps([{"id": ORG_A.id, "token": ORG_A.token}])


def self_signed_certificate(directory: Path, name: str = "cert") -> tuple[Path, Path]:
    """Write a throwaway self-signed certificate for 127.0.0.1 and its key; return their paths."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


@dataclass(frozen=True)
class TlsRedis:
    """A TLS-only redis-server: its URL and the certificate it presents."""

    url: str
    cert: Path


@pytest.fixture(scope="module")
def tls_url(tls_redis: TlsRedis) -> str:
    """Return the rediss:// URL of the TLS-only server."""
    return tls_redis.url


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """Start a redis-server that speaks only TLS with a self-signed certificate."""
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
        yield TlsRedis(url, cert)
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


def test_with_the_ca_given_the_server_is_verified(tls_redis: TlsRedis) -> None:
    env = {"REDIS_URL": tls_redis.url, "DMRELAY_SECRET_KEY": SECRET, "DMRELAY_ORGS": ORGS}
    for given in (str(tls_redis.cert), tls_redis.cert.read_text()):  # a path, or the PEM itself
        settings = load_settings({**env, "DMRELAY_REDIS_CA_CERT": given})
        client = connect(settings.redis_url, 1, ca_cert=settings.redis_ca_cert)
        assert client.ping()
        assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
        client.close()


def test_with_a_wrong_ca_the_connection_is_refused(tls_redis: TlsRedis, tmp_path: Path) -> None:
    other_ca, _ = self_signed_certificate(tmp_path, "other")
    client = connect(tls_redis.url, 1, ca_cert=other_ca.read_text())
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_check_names_a_failed_verification(  # type: ignore[no-untyped-def]
    tls_redis: TlsRedis, tmp_path: Path, monkeypatch, capsys
) -> None:
    other_ca, _ = self_signed_certificate(tmp_path, "other")
    monkeypatch.setenv("REDIS_URL", tls_redis.url)
    monkeypatch.setenv("DMRELAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("DMRELAY_ORGS", ORGS)
    monkeypatch.setenv("DMRELAY_REDIS_CA_CERT", str(other_ca))
    monkeypatch.setenv("DMTRACKER_BASE_URL", "http://127.0.0.1:1/api/v1")
    assert cli.main(["check"]) == 1
    redis_line = capsys.readouterr().err.splitlines()[0]
    where = tls_redis.url.removeprefix("rediss://")
    assert redis_line.startswith(
        f"dmrelay check: Redis unreachable at {where} "
        "(TLS, certificate verified against DMRELAY_REDIS_CA_CERT): "
    )
    assert "certificate verify failed" in redis_line
