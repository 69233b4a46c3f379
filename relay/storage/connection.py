"""The Redis connection: one bounded pool per process, built from the URL, failing fast."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

# A thread that finds every connection busy waits this long, then fails like a Redis outage.
POOL_WAIT_SECONDS = 2.0


def connect(url: str, max_connections: int, name: str = "dmrelay") -> redis.Redis:
    """Open a client for a URL holding at most max_connections; rediss:// takes self-signed."""
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
        options["ssl_cert_reqs"] = None
    # Small plans allow 20 connections in all: every thread must share a bounded pool.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, **options
    )
    return redis.Redis(connection_pool=pool)
