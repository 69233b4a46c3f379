"""Per-contact ordering: chains of delivery ids, parking, and waking the next in line.

A delivery joins its chains when it is accepted (accept.lua decides which); its record keeps
their names (u:<username>, m:<manychat_id>, c:<contact_id>). A chain is a field of the
organization's contacts hash (relay/storage/contacts.py, relay/storage/lua/chains.lua).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from relay.core.delivery import Delivery
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.contacts import CHAIN
from relay.storage.keys import QUEUE_KEY_PREFIX, Keys


class Ordering:
    """Keep each contact's deliveries in acceptance order."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        chains = ("record", "chains", "release_chains")
        self._release_stuck = lua.register(connection, *chains, "release_stuck")
        # Sent whole (EVAL): inside a replay's transaction, EVALSHA could meet a script cache
        # flushed since it was loaded, and Redis would run the rest of the transaction without it.
        self._join_source = lua.source("chains", "join_chains")

    def chain_fields(self, delivery: Delivery) -> list[str]:
        """Return the contacts-hash field of each chain the delivery is in."""
        return [CHAIN + name for name in delivery.contact_keys]

    def join(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the command that puts a delivery back at the end of its chains (a replay)."""
        contacts = self.keys.contacts(delivery.org_id)
        pipe.eval(self._join_source, 1, contacts, delivery.id, *self.chain_fields(delivery))

    def queue_args(self) -> list[str]:
        """Return the key prefix and queue key prefix the chain scripts build keys from."""
        return [self.keys.prefix, QUEUE_KEY_PREFIX]

    def release_stuck(self, cursor: int = 0, page: int = 200) -> Released:
        """Free chains headed by a vanished or finished delivery, for one page of parked ones;
        put back in its chains a parked delivery missing from one."""
        args: list[str | int] = [*self.queue_args(), cursor, page]
        found = self._release_stuck(keys=[self.keys.parked], args=args)
        next_cursor, *rest = [text(item) for item in found]
        first = rest.index("")
        second = rest.index("", first + 1)
        return Released(
            int(next_cursor),
            _pairs(rest[:first]),
            tuple(rest[first + 1 : second]),
            _pairs(rest[second + 1 :]),
        )

    def release_all_stuck(self, max_pages: int = 100) -> Released:
        """Run release_stuck over the whole parked set (bounded); return everything it did."""
        total = Released(0, (), (), ())
        for _ in range(max_pages):
            found = self.release_stuck(total.cursor)
            total = Released(
                found.cursor,
                total.chains + found.chains,
                total.woken + found.woken,
                total.rejoined + found.rejoined,
            )
            if found.cursor == 0:
                break
        return total


def _pairs(entries: list[str]) -> tuple[tuple[str, str], ...]:
    """Split 'id hash field' entries into (id, 'hash field') pairs."""
    return tuple((first, rest) for first, rest in (entry.split(" ", 1) for entry in entries))


@dataclass(frozen=True)
class Released:
    """What release_stuck did: where to go on, (head, 'hash field') pairs freed, woken ids,
    and (id, 'hash field') pairs of parked deliveries put back in a chain they were missing from."""

    cursor: int
    chains: tuple[tuple[str, str], ...]
    woken: tuple[str, ...]
    rejoined: tuple[tuple[str, str], ...]
