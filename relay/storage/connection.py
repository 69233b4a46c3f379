"""The Redis connection: one client per process, built from the URL, failing fast."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry


def connect(url: str) -> redis.Redis:
    """Open a Redis client for a URL; rediss:// accepts Heroku's self-signed certificates."""
    # Fail fast when Redis is down: ManyChat gives up after about 10 s, and a quick 503
    # tells the caller more than a hung request. A brief blip is retried with jitter.
    options: dict[str, object] = {
        "health_check_interval": 30,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
    }
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        options["ssl_cert_reqs"] = None
    return redis.Redis.from_url(url, **options)
