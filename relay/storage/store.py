"""The storage layer assembled: one object per Redis key family, sharing one connection."""

from __future__ import annotations

import redis

from relay.core import defaults
from relay.storage.alerts import AlertStore
from relay.storage.answers import Answers
from relay.storage.contacts import Contacts
from relay.storage.deadletters import DeadLetters
from relay.storage.gates import GateStore
from relay.storage.held import HeldRequests
from relay.storage.history import History
from relay.storage.inflight import InFlight
from relay.storage.intake import Intake
from relay.storage.keys import Keys
from relay.storage.ordering import Ordering
from relay.storage.queue import Queues
from relay.storage.schedule import Schedule
from relay.storage.settle import Settle, SettleTimes
from relay.storage.stats import Stats


class Store:
    """Everything the relay keeps in Redis, by family: the only way web and workers reach it."""

    def __init__(
        self,
        connection: redis.Redis,
        prefix: str = defaults.KEY_PREFIX,
        settle: SettleTimes | None = None,
    ) -> None:
        self.redis = connection
        self.keys = Keys(prefix)
        settle = settle or SettleTimes()
        self.settle = Settle(connection, self.keys, settle)
        self.queues = Queues(connection, self.keys)
        self.stats = Stats(connection, self.keys)
        self.contacts = Contacts(connection, self.keys)
        self.ordering = Ordering(connection, self.keys)
        self.intake = Intake(connection, self.keys, settle)
        self.answers = Answers(connection, self.keys)
        self.history = History(connection, self.keys, self.ordering, self.answers)
        self.schedule = Schedule(connection, self.keys)
        self.inflight = InFlight(connection, self.keys)
        self.dead = DeadLetters(connection, self.keys, self.ordering, self.queues)
        self.gates = GateStore(connection, self.keys)
        self.alerts = AlertStore(connection, self.keys)
        self.held = HeldRequests(connection, self.keys)
        self.rqjobs = self.queues.jobs

    def probe_writes(self) -> None:
        """Write a small key, so a refusal (read-only, out of memory) raises as ingest would."""
        self.redis.set(self.keys.key("ready"), "1", ex=60)

    def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False
