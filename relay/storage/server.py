"""What the Redis server under the relay is set up to do: eviction, persistence, memory, clients.

Read with INFO, plus CONFIG GET where the host allows it: managed Redis (Heroku's Key-Value
Store among them) often disables CONFIG, and then what INFO alone tells is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from relay.config import Settings, default_of
from relay.core import defaults

# What a queued delivery costs Redis at most: its record, RQ job, queue and index entries and
# its contact's entries (`python -m bench.queued_memory` measures about 1,160 B with a new contact
# each; tests/integration/test_delivery_costs.py holds it under this bound).
QUEUED_DELIVERY_BYTES = 1200
# Delivered history's share of maxmemory, when one is set (relay/storage/history.py trims to it).
HISTORY_SHARE_OF_MAXMEMORY = 0.25
SAFE_POLICY = "noeviction"  # any other policy drops queued deliveries when memory runs out
MIN_FREE_MEMORY_FRACTION = 0.2
ONE_OFF_CONNECTIONS = defaults.CLI_REDIS_CONNECTIONS  # a release check, a replay, a console
# Each web process subscribes once to the answers of finished deliveries (answer waits).
ANSWER_SUBSCRIPTIONS = 1


@dataclass(frozen=True)
class ServerFacts:
    """The Redis server's settings and use that matter to the relay."""

    version: str
    eviction_policy: str
    aof_enabled: bool
    rdb_enabled: bool | None  # None: CONFIG is disabled and no snapshot was ever taken
    maxmemory_bytes: int  # 0: no limit
    used_memory_bytes: int
    maxclients: int | None  # None: CONFIG is disabled and INFO is too old to say
    connected_clients: int
    config_readable: bool

    @property
    def persistent(self) -> bool | None:
        """Say whether anything is written to disk; None when it cannot be told."""
        if self.aof_enabled or self.rdb_enabled:
            return True
        return None if self.rdb_enabled is None else False

    @property
    def free_memory_fraction(self) -> float | None:
        """Return the share of maxmemory still free, or None when there is no limit."""
        if not self.maxmemory_bytes:
            return None
        return max(0.0, 1 - self.used_memory_bytes / self.maxmemory_bytes)


def inspect_server(connection: redis.Redis) -> ServerFacts:
    """Read the facts from INFO and, where allowed, CONFIG GET; raise RedisError if unreachable."""
    info: dict[str, Any] = connection.info()
    config = readable_config(connection)
    return ServerFacts(
        version=str(info.get("redis_version", "?")),
        eviction_policy=str(config.get("maxmemory-policy") or info.get("maxmemory_policy", "?")),
        aof_enabled=bool(int(info.get("aof_enabled", 0))),
        rdb_enabled=_rdb_enabled(config, info),
        maxmemory_bytes=int(config.get("maxmemory") or info.get("maxmemory", 0)),
        used_memory_bytes=int(info.get("used_memory", 0)),
        maxclients=_maxclients(config, info),
        connected_clients=int(info.get("connected_clients", 0)),
        config_readable=bool(config),
    )


def readable_config(connection: redis.Redis) -> dict[str, str]:
    """Return the CONFIG values the checks use, or {} where CONFIG is disabled or renamed."""
    try:
        values: dict[str, str] = {}
        for name in ("maxmemory-policy", "maxmemory", "save", "maxclients"):
            values |= {str(k): str(v) for k, v in connection.config_get(name).items()}
        return values
    except redis.ResponseError:  # unknown command, or NOPERM under an ACL
        return {}


def _rdb_enabled(config: dict[str, str], info: dict[str, Any]) -> bool | None:
    if "save" in config:
        return bool(config["save"].strip())
    # Without CONFIG, a snapshot ever taken proves RDB; none taken proves nothing.
    if int(info.get("rdb_saves", 0)) > 0 or int(info.get("rdb_last_bgsave_time_sec", -1)) >= 0:
        return True
    return None


def _maxclients(config: dict[str, str], info: dict[str, Any]) -> int | None:
    value = config.get("maxclients") or info.get("maxclients")  # INFO has it since Redis 7
    return int(value) if value is not None else None


def log_warnings(connection: redis.Redis, log: logging.Logger) -> None:
    """Log one warning line per risky setting; if Redis does not answer, say so and go on."""
    try:
        facts = inspect_server(connection)
    except redis.RedisError as error:
        log.warning("could not inspect Redis at start-up (%s); going on", type(error).__name__)
        return
    for line in warnings(facts):
        log.warning(line)


def warnings(facts: ServerFacts) -> list[str]:
    """Return one line per setting that can lose or refuse deliveries; [] when all is well."""
    found = []
    if facts.eviction_policy != SAFE_POLICY:
        found.append(
            f"Redis maxmemory-policy is {facts.eviction_policy}, not {SAFE_POLICY}: "
            "when memory runs out Redis will delete queued deliveries"
        )
    if facts.persistent is False:
        found.append(
            "Redis persistence is off (neither AOF nor RDB): "
            "a Redis restart loses every queued delivery"
        )
    free = facts.free_memory_fraction
    if free is not None and free < MIN_FREE_MEMORY_FRACTION:
        found.append(
            f"Redis memory is {1 - free:.0%} used ({mebibytes(facts.used_memory_bytes)} of "
            f"maxmemory {mebibytes(facts.maxmemory_bytes)}): less than "
            f"{MIN_FREE_MEMORY_FRACTION:.0%} free"
        )
    return found


@dataclass(frozen=True)
class Formation:
    """How many of each process run against one Redis, and their shape."""

    web_instances: int = 1  # dynos on Heroku, instances on Render, containers elsewhere
    web_processes: int = default_of("web_processes")  # gunicorn workers per instance
    web_threads: int = default_of("web_threads")  # request threads per gunicorn worker
    web_pool: int = default_of("web_redis_connections")  # Redis pool size per gunicorn worker
    worker_instances: int = 1
    worker_threads: int = default_of("worker_concurrency")  # deliveries in flight per worker
    worker_pool: int = default_of("worker_redis_connections")  # Redis pool size per worker

    @classmethod
    def from_settings(
        cls, settings: Settings, web_instances: int = 1, worker_instances: int = 1
    ) -> Formation:
        """Return the formation these settings give with so many instances of each."""
        return cls(
            web_instances,
            settings.web_processes,
            settings.web_threads,
            settings.web_redis_connections,
            worker_instances,
            settings.worker_concurrency,
            settings.worker_redis_connections,
        )


def web_process_connections(formation: Formation) -> int:
    """Return the connections one gunicorn worker holds at its busiest."""
    return min(formation.web_threads, formation.web_pool) + ANSWER_SUBSCRIPTIONS


def worker_process_connections(formation: Formation) -> int:
    """Return the connections one worker process holds at its busiest."""
    return min(formation.worker_threads + 1, formation.worker_pool)


def connections_needed(formation: Formation) -> int:
    """Count the Redis connections a formation holds at its busiest, so maxclients can be checked.

    Each process has one bounded redis-py pool (relay/storage/connection.py): a connection
    opens when a thread needs one and none is idle, stays open afterwards, and no more than
    the pool's size ever open; past that, threads wait their turn. So a process holds the
    smaller of its pool size and the number of its threads that use Redis:
    - a gunicorn worker of the web: DMRELAY_WEB_THREADS request threads and a pool of
      DMRELAY_WEB_REDIS_CONNECTIONS, plus the one connection of its subscription to DmTracker's
      answers (relay/storage/answers.py); the gunicorn master never connects. An instance
      runs WEB_CONCURRENCY such workers.
    - a worker: DMRELAY_WORKER_CONCURRENCY delivery threads plus its main loop (take, move
      due retries, beat, reclaim), and a pool of DMRELAY_WORKER_REDIS_CONNECTIONS.
    - a one-off command (the release check, a replay, a console): the CLI's pool.
    """
    web = formation.web_instances * formation.web_processes * web_process_connections(formation)
    worker = formation.worker_instances * worker_process_connections(formation)
    return web + worker + ONE_OFF_CONNECTIONS


def history_budget_bytes(maxmemory_bytes: int, fallback_mb: int) -> int:
    """Return what delivered history may use: a quarter of maxmemory, else the fallback."""
    if maxmemory_bytes:
        return int(maxmemory_bytes * HISTORY_SHARE_OF_MAXMEMORY)
    return fallback_mb * 2**20


def queued_room(facts: ServerFacts) -> int | None:
    """Return about how many more deliveries fit queued (None: no limit), leaving delivered
    history its quarter of maxmemory (whether it uses it yet or not: the count errs low)."""
    if not facts.maxmemory_bytes:
        return None
    history = history_budget_bytes(facts.maxmemory_bytes, 0)
    free = facts.maxmemory_bytes - history - facts.used_memory_bytes
    return max(0, free) // QUEUED_DELIVERY_BYTES


def mebibytes(size_bytes: int) -> str:
    """Format a byte count for people."""
    return f"{size_bytes / 2**20:.1f} MiB"


def problems(facts: ServerFacts, connections: int) -> list[str]:
    """Return the warnings, plus a maxclients too small for the connections the formation needs."""
    found = warnings(facts)
    if facts.maxclients is not None and facts.maxclients < connections:
        found.append(
            f"Redis maxclients is {facts.maxclients} but the formation needs {connections} "
            "connections: choose a larger plan or lower the concurrency settings"
        )
    return found
