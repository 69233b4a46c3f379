"""Accept a request: deduplicate, check quotas, store, chain and enqueue it, in one script."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import redis

from relay.core.delivery import Delivery
from relay.core.record import record_json
from relay.storage import lua
from relay.storage.codec import text
from relay.storage.contacts import ALIAS_TTL_SECONDS
from relay.storage.keys import QUEUES_KEY, Keys
from relay.storage.rqjobs import QUEUED, job_fields, job_key
from relay.storage.settle import SettleTimes, settle_key

IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600
# How old the other organizations' pending counts may be when the global limit is checked.
COUNTS_MAX_AGE_SECONDS = 1.0
ACCEPTED, DUPLICATE, KNOWN = "accepted", "duplicate", "known"
ORG_FULL, ORG_BYTES_FULL, FULL = "org_full", "org_bytes_full", "full"


@dataclass(frozen=True)
class Accepted:
    """The outcome of accepting a request: its delivery id, and whether it was a repeat."""

    delivery_id: str
    duplicate: bool
    spooled: bool = False
    settling: bool = False  # Redis holds it back after an outage: no answer comes soon


@dataclass(frozen=True)
class Quotas:
    """Most undelivered messages kept, per organization and in all, and most bytes of them
    per organization; 0 means no limit."""

    per_org: int = 0
    total: int = 0
    per_org_bytes: int = 0


NO_QUOTAS = Quotas()


@dataclass(frozen=True)
class Outcome:
    """What the accept script did: accepted, duplicate, known, org_full or full."""

    result: str
    delivery_id: str
    pending: int  # the organization's undelivered messages, this one included if accepted
    settling: bool = False  # workers hold it back after an outage (settle.lua)


def fingerprint(org_id: str, endpoint: str, body: str) -> str:
    """Return the dedup fingerprint of a normalized request."""
    # 48 bits are plenty: it is compared with one contact's latest request only (a collision
    # is one chance in 2**48 per request), and it is kept in every dedup mark.
    return hashlib.sha256(f"{org_id}\n{endpoint}\n{body}".encode()).hexdigest()[:12]


class Intake:
    """Store and enqueue new deliveries once each, in one round trip."""

    def __init__(
        self, connection: redis.Redis, keys: Keys, settle: SettleTimes | None = None
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.settle = settle or SettleTimes()
        self._accept = lua.register(connection, "chains", "settle", "accept")
        self._registered: set[str] = set()  # queues this process added to RQ's set
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._counts_read_at = float("-inf")

    def accept(
        self,
        delivery: Delivery,
        fingerprint: str,
        *,
        window_seconds: int,
        quotas: Quotas,
        spooled: bool = False,
    ) -> Outcome:
        """Store and enqueue a delivery once; a repeat of the contact's latest is not stored.

        A delivery `spooled` (drained from a spool) takes its place in its contact's chains by
        acceptance time. Redis errors propagate: the caller decides between the spool and an
        error.
        """
        keys, args = self._script_input(delivery, fingerprint, window_seconds, quotas)
        keys += [settle_key(self.keys), self.keys.leases]
        args += ["1" if spooled else "0", *self.settle.script_args()]
        keys.append(job_key(delivery.id))
        args += job_fields(delivery, QUEUED)
        reply = self._accept(keys=keys, args=args)
        result, delivery_id, pending, counts = text(reply[0]), text(reply[1]), reply[2], reply[3]
        self._remember_counts(delivery.org_id, int(pending), counts)
        if result == ACCEPTED:
            self._registered.add(delivery.org_id)
            delivery.contact_keys = [text(name) for name in reply[4]]
            return Outcome(result, delivery_id, int(pending), settling=reply[5] == 1)
        return Outcome(result, delivery_id, int(pending))

    def _script_input(
        self, delivery: Delivery, fingerprint: str, window_seconds: int, quotas: Quotas
    ) -> tuple[list[str], list[str | int | float | bytes]]:
        org_id, payload, keys = delivery.org_id, delivery.payload, self.keys
        username, manychat, contact = (
            _text_or_empty(payload.get(name)) for name in ("username", "manychat_id", "contact_id")
        )
        script_keys = [
            keys.delivery(delivery.id),
            keys.queue(org_id),
            keys.index,
            keys.pending,
            self._idempotency_key(delivery),
            keys.contacts(org_id),
            QUEUES_KEY,
            keys.pending_bytes,
            keys.pending_sizes,
        ]
        args: list[str | int | float | bytes] = [
            delivery.id,
            record_json(delivery)[:-1],  # the script adds the chains it joins, and the brace
            org_id,
            repr(delivery.received_at),
            username,
            manychat,
            contact,
            repr(time.time()),
            delivery.endpoint,
            fingerprint,
            window_seconds,
            IDEMPOTENCY_KEY_TTL_SECONDS,
            ALIAS_TTL_SECONDS,
            quotas.per_org,
            quotas.total,
            self._others_pending(org_id, quotas),
            "0" if org_id in self._registered else "1",
            quotas.per_org_bytes,
        ]
        return script_keys, args

    def _idempotency_key(self, delivery: Delivery) -> str:
        if not delivery.idempotency_key:
            return ""
        digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:32]
        return self.keys.idempotency(delivery.org_id, digest)

    def _others_pending(self, org_id: str, quotas: Quotas) -> str:
        """Return the other organizations' pending count, or '' to have the script count."""
        if not quotas.total:
            return "0"
        with self._lock:
            if time.monotonic() - self._counts_read_at > COUNTS_MAX_AGE_SECONDS:
                return ""
            return str(sum(n for org, n in self._counts.items() if org != org_id))

    def _remember_counts(self, org_id: str, pending: int, counts: list[bytes]) -> None:
        with self._lock:
            if counts:
                pairs = zip(counts[::2], counts[1::2], strict=True)
                self._counts = {text(org): int(n) for org, n in pairs}
                self._counts_read_at = time.monotonic()
            if pending:
                self._counts[org_id] = pending


def _text_or_empty(value: object) -> str:
    """Return an identity field as the script compares it: '' when absent."""
    return "" if value in (None, "") else str(value)
