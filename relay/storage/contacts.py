"""The contacts hash, one per organization: what the relay remembers of each contact.

Its fields (accept.lua writes them, chains.lua reads and changes the chains):
- `q:<name>`: the contact's chain, the ids of its unfinished deliveries in acceptance order,
  space-separated: the contact's next delivery waits until it heads every chain it is in;
- `d:<endpoint>:<name>`: its latest request on an endpoint, `fingerprint|id|expiry`, for the
  dedup window;
- `a:<manychat_id>`: the username a manychat_id goes with, `username|expiry` ('' when the
  manychat_id was used alone), for ALIAS_TTL_SECONDS.
A name is u:<username>, m:<manychat_id> or c:<contact_id>; an expiry is in epoch seconds. An
entry past its expiry counts as absent, and the worker's upkeep deletes it.

One field per entry, instead of a key each: a new contact's three entries cost about 280 bytes
of Redis instead of 650 (a key, its TTL and a list's overhead each), and the accept script reads
them all in one command and writes them in another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from relay.storage import lua
from relay.storage.codec import text
from relay.storage.keys import Keys

ALIAS_TTL_SECONDS = 30 * 24 * 3600
CHAIN, MARK, ALIAS = "q:", "d:", "a:"
EXPIRED_PAGE = 1000  # entries looked at per command when deleting expired ones
CLOCK_GRACE_SECONDS = 60


@dataclass(frozen=True)
class Mark:
    """A contact's latest request on an endpoint, remembered for the dedup window."""

    fingerprint: str
    delivery_id: str
    expires_at: int


class Contacts:
    """Read and tidy the contacts hashes (the accept script and chain scripts write them)."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._forget_expired = lua.register(connection, "forget_expired")

    def chain(self, org_id: str, name: str) -> list[str]:
        """Return the ids in a contact's chain, first in line first."""
        line = self.redis.hget(self.keys.contacts(org_id), CHAIN + name)
        return text(line).split(" ") if line else []

    def mark(self, org_id: str, endpoint: str, name: str) -> Mark | None:
        """Return a contact's dedup mark on an endpoint, expired or not, if one is kept."""
        raw = self.redis.hget(self.keys.contacts(org_id), f"{MARK}{endpoint}:{name}")
        if raw is None:
            return None
        fingerprint, delivery_id, expiry = text(raw).split("|")
        return Mark(fingerprint, delivery_id, int(expiry))

    def alias(self, org_id: str, manychat_id: str) -> tuple[str, int] | None:
        """Return the username a manychat_id goes with and when the link expires, if kept."""
        raw = self.redis.hget(self.keys.contacts(org_id), ALIAS + manychat_id)
        if raw is None:
            return None
        username, expiry = text(raw).rsplit("|", 1)
        return username, int(expiry)

    def forget_expired(
        self,
        org_id: str,
        cursor: int = 0,
        now: float | None = None,
        page: int = EXPIRED_PAGE,
        aliases_made_before: float = 0,
    ) -> tuple[int, int]:
        """Delete one page of expired entries, and of aliases made before a time whose contact
        has nothing on its way; return the next cursor (0: done) and how many."""
        now = time.time() if now is None else now
        # A grace for the clocks of other machines, which wrote the expiries.
        args: list[int] = [cursor, page, int(now) - CLOCK_GRACE_SECONDS]
        args += [int(aliases_made_before), ALIAS_TTL_SECONDS]
        next_cursor, deleted = self._forget_expired(keys=[self.keys.contacts(org_id)], args=args)
        return int(next_cursor), int(deleted)
