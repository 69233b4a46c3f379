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
# How a deadline is shared: waiting for a pooled connection, connecting (TCP and TLS
# handshakes), and the answer. No retry after a timeout, so one call ends within it.
DEADLINE_SHARES = {"pool": 0.25, "connect": 0.25, "answer": 0.5}
# Errors that mean "Redis cannot take writes now", not "this command is wrong": redis-py
# gives some replies classes of their own, the others are plain errors named by their code.
REFUSING_WRITES = (
    redis.ConnectionError,  # includes BusyLoadingError (LOADING)
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
REFUSING_WRITES_CODES = ("BUSY", "MISCONF", "NOREPLICAS")


def connect(
    url: str,
    max_connections: int,
    name: str = "dmrelay",
    ca_cert: str | None = None,
    deadline_seconds: float | None = None,
) -> redis.Redis:
    """Open a client holding at most max_connections; rediss:// is checked against ca_cert.

    With a deadline, every call ends within it, pool wait included (the web process: ManyChat
    must be answered in time, from Redis or from the spool).
    """
    # Fail fast when Redis is down: ManyChat gives up after about 10 s, and a quick 503
    # tells the caller more than a hung request. A brief blip is retried with jitter.
    options: dict[str, object] = {
        "client_name": name,  # CLIENT LIST tells which process holds which connection
        "health_check_interval": 30,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "retry": retry_on_closed_connections(),
    }
    pool_wait = POOL_WAIT_SECONDS
    if deadline_seconds is not None:
        options |= deadline_options(deadline_seconds)
        pool_wait = deadline_seconds * DEADLINE_SHARES["pool"]
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        options |= tls_options(ca_cert)
    # Small plans allow 20 connections in all: every thread must share a bounded pool.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_wait, **options
    )
    return redis.Redis(connection_pool=pool)


def retry_on_closed_connections() -> Retry:
    """Return the retry policy of a pooled client: a closed connection only, never a timeout.

    After a timeout the command may still run, once Redis answers again (SIGSTOP, a long
    fork): sent again, a script that changes state would run twice. A connection found
    closed (Redis restarted) is retried on a new one; a reply lost with it may mean the
    command ran, so every script the worker runs is safe to run twice (take.lua, finish.lua,
    retry.lua) or leaves what the worker reconciles (requeue_orphans.lua).
    """
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
    return Retry(backoff, retries=2, supported_errors=(redis.ConnectionError,))


def deadline_options(deadline_seconds: float) -> dict[str, object]:
    """Return connection options under which no call outlasts the deadline."""
    return {
        "socket_connect_timeout": deadline_seconds * DEADLINE_SHARES["connect"],
        "socket_timeout": deadline_seconds * DEADLINE_SHARES["answer"],
        "health_check_interval": 0,  # no PING before a command
        "driver_info": None,  # no CLIENT SETINFO round trips on connect
        # A connection found closed (Redis restarted) is tried once more on a new one, which
        # is immediate; a timeout is not retried.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }


def refuses_writes(error: redis.RedisError) -> bool:
    """Return True if the error means Redis cannot take writes now (try again later)."""
    if isinstance(error, REFUSING_WRITES):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(REFUSING_WRITES_CODES)


def why_not_writable(error: redis.RedisError) -> str:
    """Say in a few words why Redis does not take writes, never naming the host."""
    if isinstance(error, redis.TimeoutError):
        return "Redis does not answer in time"
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return "Redis is read-only"
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return "Redis is out of memory and refuses writes"
    if isinstance(error, redis.ConnectionError):
        return "Redis is unreachable"
    return f"Redis refuses writes ({type(error).__name__})"


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
