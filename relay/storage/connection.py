"""The Redis connection: one bounded pool per process, built from the URL, failing fast."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

# A thread that finds every connection busy waits this long, then fails like a Redis outage.
POOL_WAIT_SECONDS = 2.0
# A dedicated connection has one user: a wait for it to be free means a bug, so keep it short.
DEDICATED_POOL_WAIT_SECONDS = 1.0


def connect(
    url: str, max_connections: int, name: str = "dmrelay", ca_cert: str | None = None
) -> redis.Redis:
    """Open a client holding at most max_connections; rediss:// is checked against ca_cert."""
    # Fail fast when Redis is down: ManyChat gives up after about 10 s, and a quick 503
    # tells the caller more than a hung request. A brief blip is retried with jitter.
    options: dict[str, object] = {
        "client_name": name,  # CLIENT LIST tells which process holds which connection
        "health_check_interval": 30,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
    }
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        options |= tls_options(ca_cert)
    # Small plans allow 20 connections in all: every thread must share a bounded pool.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, **options
    )
    return redis.Redis(connection_pool=pool)


def tls_options(ca_cert: str | None) -> dict[str, object]:
    """Verify the server's certificate and name against a CA, or accept any certificate."""
    if ca_cert:
        return {"ssl_cert_reqs": "required", "ssl_ca_data": ca_cert, "ssl_check_hostname": True}
    # Heroku's Key-Value Store presents self-signed certificates: nothing to verify them against.
    return {"ssl_cert_reqs": None, "ssl_check_hostname": False}


def describe_tls(url: str, ca_cert: str | None) -> str:
    """Say how a connection to this URL is protected, for a summary or a log line."""
    if not url.startswith("rediss://"):
        return "no TLS"
    if "ssl_cert_reqs" in url:
        return "TLS as the URL's ssl_cert_reqs says"
    if ca_cert:
        return "TLS, certificate verified against DMRELAY_REDIS_CA_CERT"
    return "TLS, certificate not verified (no DMRELAY_REDIS_CA_CERT)"


def safe_location(url: str) -> str:
    """Return host:port/db of a Redis URL, never its password."""
    parts = urlsplit(url)
    location = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    return location + (parts.path if parts.path not in ("", "/") else "")


def dedicated_client(base: redis.Redis, name: str) -> redis.Redis:
    """Return a client on one connection of its own, made like the base client's."""
    # For a subscription, which holds its connection for good: taken from the shared pool
    # it would shrink it for every other thread; and it reconnects by itself, so no retry.
    pool = base.connection_pool
    options = {**pool.connection_kwargs, "client_name": name}
    options["retry"] = Retry(NoBackoff(), retries=0)
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            connection_class=pool.connection_class,
            max_connections=1,
            timeout=DEDICATED_POOL_WAIT_SECONDS,
            **options,
        )
    )
