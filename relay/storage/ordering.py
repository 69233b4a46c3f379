"""Per-contact ordering: chains of delivery ids, parking, and waking the next in line."""

from __future__ import annotations

from dataclasses import dataclass

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
        self._release_stuck = lua.register(connection, "record", "release_chains", "release_stuck")

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

    def queue_args(self) -> list[str]:
        """Return the key prefix and queue key prefix the chain scripts build keys from."""
        return [self.keys.prefix, QUEUE_KEY_PREFIX]

    def release_stuck(self, cursor: int = 0, page: int = 200) -> Released:
        """Free chains headed by a vanished or finished delivery, for one page of parked ones."""
        args: list[str | int] = [*self.queue_args(), cursor, page]
        found = self._release_stuck(keys=[self.keys.parked], args=args)
        next_cursor, *rest = [text(item) for item in found]
        split = rest.index("")
        pairs = (entry.split(" ", 1) for entry in rest[:split])
        chains = tuple((head, chain) for head, chain in pairs)
        return Released(int(next_cursor), chains, tuple(rest[split + 1 :]))

    def release_all_stuck(self, max_pages: int = 100) -> Released:
        """Run release_stuck over the whole parked set (bounded); return everything it did."""
        cursor, chains, woken = 0, list[tuple[str, str]](), list[str]()
        for _ in range(max_pages):
            found = self.release_stuck(cursor)
            chains += found.chains
            woken += found.woken
            cursor = found.cursor
            if cursor == 0:
                break
        return Released(cursor, tuple(chains), tuple(woken))


@dataclass(frozen=True)
class Released:
    """What release_stuck did: where to go on, (head, chain) pairs freed, deliveries woken."""

    cursor: int
    chains: tuple[tuple[str, str], ...]
    woken: tuple[str, ...]
