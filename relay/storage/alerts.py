"""What alerting keeps in Redis: the history, each channel's health, the conditions that are
firing, the dead-letter rhythm per organization, and the locks that make every decision once.

Every process that watches (each worker and web process) runs the same checks; a check runs
in at most one of them at a time (a lock per round), a condition fires once (HSETNX) and is
resolved once (HDEL), and each event is sent once (SET NX on its id).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from relay.core import defaults
from relay.core.alerts import Alert, Rhythm, received_at_of
from relay.storage.codec import text
from relay.storage.keys import Keys

SENT_MARK_SECONDS = 24 * 3600


class AlertStore:
    """The alert history, channel health and the decisions shared by every process."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def key(self, *parts: str) -> str:
        """Return a key of the alerts family."""
        return self.keys.key("alerts", *parts)

    # -- deciding once -------------------------------------------------------------------------
    def take_round(self, holder: str, seconds: float) -> bool:
        """Take this round of checks; False when another process has it."""
        return bool(self.redis.set(self.key("round"), holder, nx=True, px=int(seconds * 1000)))

    def claim_event(self, event_id: str) -> bool:
        """Claim the right to send one event; False when it was claimed already."""
        return bool(self.redis.set(self.key("sent", event_id), 1, nx=True, ex=SENT_MARK_SECONDS))

    def fire(self, condition: str, details: dict[str, Any]) -> bool:
        """Mark a condition as firing; True only for the first to see it."""
        raw = json.dumps(details, separators=(",", ":"))
        return bool(self.redis.hsetnx(self.key("active"), condition, raw))

    def resolve(self, condition: str) -> dict[str, Any] | None:
        """Clear a firing condition; return its details only for the first to clear it."""
        with self.redis.pipeline() as pipe:
            pipe.hget(self.key("active"), condition)
            pipe.hdel(self.key("active"), condition)
            raw, removed = pipe.execute()
        return json.loads(raw) if removed and raw else None

    def active(self) -> dict[str, dict[str, Any]]:
        """Return every firing condition with its details."""
        found = self.redis.hgetall(self.key("active"))
        return {text(name): json.loads(raw) for name, raw in found.items()}

    # -- the dead-letter rhythm -----------------------------------------------------------------
    def dead_cursor(self) -> float:
        """Return the death time of the last dead letter already counted."""
        raw = self.redis.hget(self.key("rhythm"), "cursor")
        return float(raw) if raw else 0.0

    def dead_since(self, cursor: float, count: int) -> list[tuple[str, float]]:
        """Return (id, death time) of the dead letters after the cursor, oldest first."""
        found: list[Any] = self.redis.zrangebyscore(
            self.keys.dead, f"({cursor}", "+inf", start=0, num=count, withscores=True
        )
        return [(text(member), float(score)) for member, score in found]

    def rhythms(self) -> dict[str, Rhythm]:
        """Return each organization's dead-letter rhythm (field 'org:<kind>')."""
        found = self.redis.hgetall(self.key("rhythm"))
        return {
            text(name): Rhythm.from_json(raw) for name, raw in found.items() if name != b"cursor"
        }

    def save_rhythms(self, cursor: float, rhythms: dict[str, Rhythm]) -> None:
        """Store the cursor and the rhythms in one step."""
        mapping: dict[str | bytes | bytearray | memoryview | int | float, Any]
        mapping = {name: rhythm.to_json() for name, rhythm in rhythms.items()}
        mapping["cursor"] = cursor
        self.redis.hset(self.key("rhythm"), mapping=mapping)

    # -- what the conditions read ----------------------------------------------------------------
    def oldest_undelivered(self, org_id: str) -> float | None:
        """Return when the oldest delivery waiting on the queue or for a retry was received.

        The queue's head is its oldest; of the retries, the first hundred due are looked at.
        """
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.lindex(self.keys.queue(org_id), 0)
            pipe.zrange(self.keys.scheduled(org_id), 0, 99)
            head, scheduled = pipe.execute()
        ids = [text(i) for i in ([head] if head else []) + list(scheduled)]
        times = [t for t in (received_at_of(i) for i in ids) if t is not None]
        return min(times) if times else None

    def no_worker_since(self, now: float, *, alive: bool) -> float | None:
        """Return since when no worker has been alive (None while one is)."""
        key = self.key("no-worker-since")
        if alive:
            self.redis.delete(key)
            return None
        self.redis.set(key, now, nx=True)
        raw = self.redis.get(key)
        return float(raw) if raw else now

    # -- history and channel health -------------------------------------------------------------
    def record(self, alert: Alert, results: list[dict[str, Any]]) -> None:
        """Add a sent alert, with how each channel took it, to the history."""
        entry = json.dumps({"alert": json.loads(alert.to_json()), "channels": results})
        with self.redis.pipeline() as pipe:
            pipe.lpush(self.key("history"), entry)
            pipe.ltrim(self.key("history"), 0, defaults.ALERT_HISTORY_KEPT - 1)
            for result in results:
                pipe.hset(self.key("channels"), result["channel"], json.dumps(result))
            pipe.execute()

    def history(self, count: int = 50) -> list[tuple[Alert, list[dict[str, Any]]]]:
        """Return the latest alerts, newest first, with their channel results."""
        entries = [json.loads(raw) for raw in self.redis.lrange(self.key("history"), 0, count - 1)]
        return [(Alert(**entry["alert"]), entry["channels"]) for entry in entries]

    def channels(self) -> dict[str, dict[str, Any]]:
        """Return each channel's last result: ok, error, when."""
        found = self.redis.hgetall(self.key("channels"))
        return {text(name): json.loads(raw) for name, raw in found.items()}

    def clear_channel(self, channel: str) -> None:
        """Forget a channel's health (it is no longer configured)."""
        self.redis.hdel(self.key("channels"), channel)


def channel_entry(channel: str, ok: bool, error: str, tries: int) -> dict[str, Any]:
    """Return how one channel took one alert, as the history keeps it."""
    return {"channel": channel, "ok": ok, "error": error, "tries": tries, "at": time.time()}
