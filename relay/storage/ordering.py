"""Per-contact ordering: chains of delivery ids, parking, and waking the next in line.

A delivery joins its chains when it is accepted (accept.lua decides which); its record keeps
their short names (u:<username>, m:<manychat_id>, c:<contact_id>), not the key names.
"""

from __future__ import annotations

import redis

from relay.core.delivery import Delivery
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import QUEUE_KEY_PREFIX, Keys

ALIAS_TTL_SECONDS = 30 * 24 * 3600


class Ordering:
    """Keep each contact's deliveries in acceptance order."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._try_start = lua.register(connection, "try_start")
        self._release_if_finished = lua.register(
            connection, "release_chains", "release_if_finished"
        )

    def chain_keys(self, delivery: Delivery) -> list[str]:
        """Return the key of each chain the delivery is in."""
        # Records stored before chains had short names hold the keys themselves.
        root = self.keys.key("chain", "")
        return [
            name if name.startswith(root) else self.keys.chain(delivery.org_id, name)
            for name in delivery.contact_keys
        ]

    def join(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that put a delivery back at the end of its chains (a replay)."""
        for chain in self.chain_keys(delivery):
            pipe.rpush(chain, delivery.id)

    def try_start(self, delivery: Delivery) -> bool:
        """Return True if the delivery may go now; otherwise park it behind its predecessor."""
        if not delivery.contact_keys:
            return True
        args = [delivery.id, self.keys.parked]
        return bool(self._try_start(keys=self.chain_keys(delivery), args=args))

    def release_if_finished(self, delivery: Delivery) -> list[str]:
        """Take a delivery still finished out of its chains; requeue successors it unblocks."""
        if not delivery.contact_keys:
            return []
        keys, args = self.chain_keys(delivery), self.chain_args(delivery)
        return [text(item) for item in self._release_if_finished(keys=keys, args=args)]

    def chain_args(self, delivery: Delivery) -> list[str]:
        """Return the arguments release_chains.lua expects first."""
        return [delivery.id, self.keys.parked, self.keys.prefix, QUEUE_KEY_PREFIX]
