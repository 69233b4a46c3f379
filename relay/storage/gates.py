"""Pause and circuit breaker state of each organization, shared by every process in Redis."""

from __future__ import annotations

import time

import redis

from relay.core.gates import Breaker, Gates
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import Keys

OPENED, OPEN, CLOSED = "opened", "open", "closed"


class GateStore:
    """Pause, resume, and the breakers' counts, states and probe locks."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._failure = lua.register(connection, "breaker_failure")
        self._probe = lua.register(connection, "breaker_probe")

    @property
    def paused_key(self) -> str:
        """Return the hash of paused organizations: id -> when paused (epoch s)."""
        return self.keys.key("paused")

    @property
    def breakers_key(self) -> str:
        """Return the hash of open breakers: organization id -> state JSON."""
        return self.keys.key("breakers")

    def failures_key(self, org_id: str) -> str:
        """Return the organization's count of consecutive transient failures."""
        return self.keys.key("breaker-failures", org_id)

    def probe_key(self, org_id: str) -> str:
        """Return the lock held by the worker probing the organization."""
        return self.keys.key("breaker-probe", org_id)

    def pause(self, org_id: str, now: float | None = None) -> bool:
        """Pause an organization; return False when it was paused already."""
        return bool(self.redis.hsetnx(self.paused_key, org_id, now or time.time()))

    def resume(self, org_id: str) -> bool:
        """Resume an organization; return False when it was not paused."""
        return bool(self.redis.hdel(self.paused_key, org_id))

    def read(self) -> Gates:
        """Return every pause and open breaker, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.paused_key)
            pipe.hgetall(self.breakers_key)
            paused, breakers = pipe.execute()
        return Gates(
            {text(org): float(at) for org, at in paused.items()},
            {text(org): Breaker.from_json(text(org), text(raw)) for org, raw in breakers.items()},
        )

    def record_failure(
        self,
        org_id: str,
        *,
        auth: bool,
        threshold: int,
        window_seconds: float,
        probe_seconds: float,
        max_probe_seconds: float,
        was_probe: bool,
        error: str,
        now: float | None = None,
    ) -> tuple[str, Breaker | None]:
        """Count a failed call; return (opened | open | closed, the breaker if open)."""
        keys = [self.breakers_key, self.failures_key(org_id), self.probe_key(org_id)]
        args: list[str | int | float] = [
            org_id,
            now or time.time(),
            "1" if auth else "0",
            threshold,
            window_seconds,
            probe_seconds,
            max_probe_seconds,
            "auth" if auth else "transient",
            "1" if was_probe else "0",
            error,
        ]
        found = [text(item) for item in self._failure(keys=keys, args=args)]
        if found[0] == CLOSED:
            return CLOSED, None
        return found[0], Breaker.from_json(org_id, found[1])

    def record_success(self, org_id: str) -> bool:
        """Reset the count and close the breaker; return True when it was open."""
        with self.redis.pipeline() as pipe:
            pipe.hdel(self.breakers_key, org_id)
            pipe.delete(self.failures_key(org_id), self.probe_key(org_id))
            closed, _ = pipe.execute()
        return bool(closed)

    def claim_probe(self, org_id: str, holder: str, lock_seconds: float, now: float) -> bool:
        """Take the right to send the one probe of an organization whose breaker is open."""
        keys = [self.breakers_key, self.probe_key(org_id)]
        return bool(self._probe(keys=keys, args=[org_id, now, holder, int(lock_seconds * 1000)]))

    def release_probe(self, org_id: str) -> None:
        """Give up the probe lock (the probe ended, or found nothing to send)."""
        self.redis.delete(self.probe_key(org_id))
