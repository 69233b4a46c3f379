"""What an operator does to dead letters: replay or purge those listed or a query matches."""

from __future__ import annotations

from collections.abc import Iterable

from relay.core.errors import FieldError
from relay.core.filters import DeliveryQuery
from relay.storage.queries import dead_letters
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
