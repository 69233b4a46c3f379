"""Wire the delivery side together from settings: one place that builds connections."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import redis

from relay.config import Settings
from relay.sentry import init_sentry
from relay.storage import server
from relay.storage.connection import connect
from relay.storage.ratelimit import RateLimiter
from relay.storage.settle import SettleTimes
from relay.storage.store import Store
from workers.deliverer import Deliverer
from workers.dmtracker import DmTrackerClient
from workers.process import WorkerProcess

log = logging.getLogger("dmrelay.worker")
ALIVE_FILE = Path(tempfile.gettempdir()) / "dmrelay-worker.alive"


def build_deliverer(settings: Settings, connection: redis.Redis | None = None) -> Deliverer:
    """Return a Deliverer with its Redis store, limiter and DmTracker client."""
    store = Store(
        connection
        or connect(
            settings.redis_url,
            settings.worker_redis_connections,
            "dmrelay-worker",
            settings.redis_ca_cert,
        ),
        settle=SettleTimes(settings.settle_seconds, settings.clock_skew_seconds),
    )
    client = DmTrackerClient(
        settings.dmtracker_base_url,
        connect_timeout_seconds=settings.http_connect_timeout_seconds,
        read_timeout_seconds=settings.http_read_timeout_seconds,
        pool_size=settings.worker_concurrency,
    )
    return Deliverer(store, client, RateLimiter(store.redis, store.keys), settings)


def build_worker(
    settings: Settings, connection: redis.Redis | None = None, alive_file: Path | None = None
) -> WorkerProcess:
    """Return a worker process for every configured organization."""
    return WorkerProcess(
        build_deliverer(settings, connection),
        [org.id for org in settings.orgs],
        concurrency=settings.worker_concurrency,
        shutdown_grace_seconds=settings.worker_shutdown_grace_seconds,
        heartbeat_ttl_seconds=settings.worker_heartbeat_ttl_seconds,
        alive_file=alive_file,
    )


def run_worker(settings: Settings, connection: redis.Redis | None = None) -> None:
    """Run one worker process until SIGTERM or SIGINT."""
    init_sentry(settings.sentry_dsn, "worker", settings.secrets())
    worker = build_worker(settings, connection, ALIVE_FILE)
    server.log_warnings(worker.store.redis, log)
    worker.install_signal_handlers()
    worker.run()
