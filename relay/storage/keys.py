"""Every Redis key name the relay uses, spelled once."""

from __future__ import annotations

from rq import Queue
from rq.registry import ScheduledJobRegistry

from relay.core import defaults


def queue_name(org_id: str) -> str:
    """Return the RQ queue name of one organization (one queue each, for fairness)."""
    return f"dmrelay-{org_id}"


# What the Lua scripts add an organization id to, to find its queue.
QUEUE_KEY_PREFIX = Queue.redis_queue_namespace_prefix + queue_name("")
# RQ's set of every queue's key, read by `rq info` and dashboards.
QUEUES_KEY = Queue.redis_queues_keys


class Keys:
    """Name the keys of one relay namespace (the prefix lets tests and tenants share a server)."""

    def __init__(self, prefix: str = defaults.KEY_PREFIX) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        """Return a key in the relay's namespace."""
        return ":".join((self.prefix, *parts))

    def delivery(self, delivery_id: str) -> str:
        """Return the key of one delivery's record (JSON; the Lua scripts name it too)."""
        return self.key("d", delivery_id)

    def queue(self, org_id: str) -> str:
        """Return the RQ queue list of an organization."""
        return QUEUE_KEY_PREFIX + org_id

    def scheduled(self, org_id: str) -> str:
        """Return the schedule (sorted set by due time) of an organization's retries."""
        # RQ's own ScheduledJobRegistry of the queue, so RQ's tools list the retries; a stock
        # scheduler moving a due one onto the queue does what the relay's worker would.
        return ScheduledJobRegistry.key_template.format(queue_name(org_id))

    def scheduled_prefix(self) -> str:
        """Return what the Lua scripts add an organization id to, to find its schedule."""
        return self.scheduled("")

    @property
    def pending(self) -> str:
        """Return the hash of accepted, unfinished deliveries counted by organization."""
        return self.key("pending")

    @property
    def pending_bytes(self) -> str:
        """Return the hash of the bytes of accepted, unfinished deliveries by organization."""
        return self.key("pending", "bytes")

    @property
    def pending_sizes(self) -> str:
        """Return the hash of each unfinished delivery's counted bytes, by delivery id."""
        return self.key("pending", "sizes")

    @property
    def history_trimmed_before(self) -> str:
        """Return the reception time (epoch s) up to which delivered history was trimmed."""
        return self.key("history", "trimmed_before")

    @property
    def index(self) -> str:
        """Return the sorted set of every kept delivery by reception time."""
        return self.key("index")

    @property
    def dead(self) -> str:
        """Return the sorted set of dead letters by the time they died."""
        return self.key("dead")

    @property
    def parked(self) -> str:
        """Return the set of deliveries waiting behind an earlier one of their contact."""
        return self.key("parked")

    def contacts(self, org_id: str) -> str:
        """Return the hash of an organization's contacts: chains, dedup marks, aliases."""
        return self.key("contacts", org_id)

    def answer(self, delivery_id: str) -> str:
        """Return the key that keeps a finished delivery's answer for a little while."""
        return self.key("answer", delivery_id)

    @property
    def answers_channel(self) -> str:
        """Return the channel on which finished deliveries' answers are published."""
        return self.key("answers")

    def idempotency(self, org_id: str, digest: str) -> str:
        """Return the key that remembers an Idempotency-Key."""
        return self.key("idem", org_id, digest)

    def stats(self, minute: int) -> str:
        """Return one minute's outcome counters (hash)."""
        return self.key("stats", str(minute))

    @property
    def latency(self) -> str:
        """Return the list of recent DmTracker latencies."""
        return self.key("latency")

    @property
    def metrics(self) -> str:
        """Return the hash of metric values shared by every process."""
        return self.key("metrics")

    def hits(self, name: str, window: int) -> str:
        """Return one fixed window's hit counter."""
        return self.key("hits", name, str(window))

    @property
    def workers(self) -> str:
        """Return the set of registered workers."""
        return self.key("workers")

    def worker(self, name: str) -> str:
        """Return a worker's heartbeat key (leases.lua names it too)."""
        return self.key("worker", name)

    def dead_since(self, name: str) -> str:
        """Return the mark set when a worker is first seen dead (its age is the time since)."""
        return self.key("dead-since", name)

    @property
    def leases(self) -> str:
        """Return the hash of leases: delivery id -> 'holder token' of the take running it."""
        return self.key("leases")

    @property
    def failed_attempts(self) -> str:
        """Return the list of the latest failed attempts, with full request and response."""
        return self.key("failed-attempts")

    def processing(self, worker: str) -> str:
        """Return the list of deliveries a worker has taken and not finished."""
        return self.key("processing", worker)

    def rate_limit(self, org_id: str, endpoint: str) -> tuple[str, str]:
        """Return the rate limiter's send log and wake-slot cursor of an org and endpoint."""
        base = self.key("rl", org_id, endpoint)
        return f"{base}:log", f"{base}:cursor"
