"""What an operator does to dead letters: replay, purge or edit them, here or from RQ's tools."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.errors import FieldError
from relay.core.filters import DeliveryQuery
from relay.core.hold import ready_to_send
from relay.core.redact import holds_secret, redact
from relay.storage.held import EDITED
from relay.storage.queries import dead_letters
from relay.storage.rqjobs import DELETED_RETENTION_SECONDS
from relay.storage.store import Store


def replay(store: Store, ids: Iterable[str]) -> list[str]:
    """Send every listed dead letter again with a fresh attempt budget; return their ids.

    A held one whose body still breaks a rule stays held, and is left out of the ids.
    """
    return [delivery_id for delivery_id in dict.fromkeys(ids) if _replayed(store, delivery_id)]


def _replayed(store: Store, delivery_id: str) -> bool:
    try:
        return store.dead.replay(delivery_id)
    except FieldError:
        return False


def purge(store: Store, ids: Iterable[str]) -> list[str]:
    """Forget every listed dead letter; return their ids."""
    return [delivery_id for delivery_id in dict.fromkeys(ids) if store.dead.purge(delivery_id)]


def matching_ids(store: Store, query: DeliveryQuery) -> list[str]:
    """Return the ids of every dead letter the query matches."""
    return [delivery.id for delivery in dead_letters(store, query)]


def edit_payload(
    store: Store,
    delivery_id: str,
    payload: dict[str, Any],
    editor: str,
    secrets: tuple[str, ...] = (),
) -> Delivery | None:
    """Replace a held or dead delivery's body once it passes ingest's checks, and log the edit.

    Raise FieldError, changing nothing, when the new body breaks a rule or holds one of the
    relay's secrets; return None when the delivery is no longer held or dead.
    """
    if holds_secret(json.dumps(payload, ensure_ascii=False), secrets):
        # Stored, it would sit in Redis and the dashboard, as ingest refuses it for.
        raise FieldError("payload", "holds one of the relay's secrets: leave the token out.")

    def change(delivery: Delivery) -> None:
        before = json.dumps(delivery.payload, ensure_ascii=False) if delivery.payload else ""
        delivery.payload = payload
        ready_to_send(delivery)
        edit = Attempt(time.time(), None, 0.0, EDITED, redact(f"before: {before}"), None)
        delivery.add_attempt(edit)
        delivery.reason = f"body edited by {editor}; it passes ingest's checks: replay it to send"

    return store.held.edit(delivery_id, change)


def apply_rq_deletions(store: Store, start: int = 0) -> tuple[int, int]:
    """Purge deliveries whose RQ job an RQ tool deleted: every dead letter, and the waiting ones
    in one page of the index from rank `start`. Return how many, and the next rank."""
    jobless = store.rqjobs.deleted_jobs(store.dead.ids())
    purged = [i for i in jobless if _is_given_up(store, i) and store.dead.purge(i)]
    next_start, waiting = store.rqjobs.deleted_while_waiting(start)
    return len(purged) + sum(_purge_waiting(store, i) for i in waiting), next_start


def _is_given_up(store: Store, delivery_id: str) -> bool:
    """Tell a dead letter, which has an RQ job, from a held request, which never had one."""
    delivery = store.history.load(delivery_id)
    return delivery is not None and delivery.state == DeliveryState.DEAD


def _purge_waiting(store: Store, delivery_id: str) -> bool:
    """Purge a queued or retrying delivery: finish it dead (its contact's chains let go, its
    successors wake), then forget it as a dead letter is forgotten."""
    delivery = store.history.load(delivery_id)
    if delivery is None or delivery.state not in (DeliveryState.QUEUED, DeliveryState.RETRYING):
        return False
    delivery.reason = "deleted from an RQ tool"
    store.history.finish(delivery, DeliveryState.DEAD, DELETED_RETENTION_SECONDS)
    return store.dead.purge(delivery_id)
