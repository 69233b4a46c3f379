"""Per-contact ordering: chains of delivery ids, parking, and waking the next in line."""

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

    def identities(self, delivery: Delivery) -> list[str]:
        """Return the names a delivery's contact goes by: username, manychat_id, contact_id."""
        payload = delivery.payload
        found = []
        for kind, field in (("u", "username"), ("m", "manychat_id"), ("c", "contact_id")):
            value = payload.get(field)
            if value not in (None, ""):
                found.append(f"{kind}:{value}")
        return found

    def chains(self, pipe: redis.client.Pipeline, delivery: Delivery) -> list[str]:
        """Return the chains a delivery joins: its identities and those linked to them."""
        identities = self.identities(delivery)
        alias_keys = [self.keys.alias(delivery.org_id, name) for name in identities]
        linked = pipe.mget(alias_keys) if identities else []
        names = dict.fromkeys(identities + [text(alias) for alias in linked if alias])
        return [self.keys.chain(delivery.org_id, name) for name in names]

    def join(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that put a delivery at the end of its chains and link names."""
        for chain in delivery.contact_keys:
            pipe.rpush(chain, delivery.id)
        identities = [i for i in self.identities(delivery) if i[0] in "um"]
        if len(identities) == 2:
            username, manychat = identities
            # One key per link, so links of contacts gone quiet expire instead of piling up.
            pipe.set(self.keys.alias(delivery.org_id, manychat), username, ex=ALIAS_TTL_SECONDS)

    def try_start(self, delivery: Delivery) -> bool:
        """Return True if the delivery may go now; otherwise park it behind its predecessor."""
        if not delivery.contact_keys:
            return True
        args = [delivery.id, self.keys.parked]
        return bool(self._try_start(keys=delivery.contact_keys, args=args))

    def release_if_finished(self, delivery: Delivery) -> list[str]:
        """Take a delivery still finished out of its chains; requeue successors it unblocks."""
        if not delivery.contact_keys:
            return []
        keys, args = delivery.contact_keys, self.chain_args(delivery)
        return [text(item) for item in self._release_if_finished(keys=keys, args=args)]

    def chain_args(self, delivery: Delivery) -> list[str]:
        """Return the arguments release_chains.lua expects first."""
        return [delivery.id, self.keys.parked, self.keys.prefix, QUEUE_KEY_PREFIX]
