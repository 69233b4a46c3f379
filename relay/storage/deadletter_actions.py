"""What an operator does to dead letters: replay or purge those listed or a query matches."""

from __future__ import annotations

from collections.abc import Iterable

from relay.core.filters import DeliveryQuery
from relay.storage.queries import dead_letters
from relay.storage.store import Store


def replay(store: Store, ids: Iterable[str]) -> list[str]:
    """Send every listed dead letter again with a fresh attempt budget; return their ids."""
    return [delivery_id for delivery_id in dict.fromkeys(ids) if store.dead.replay(delivery_id)]


def purge(store: Store, ids: Iterable[str]) -> list[str]:
    """Forget every listed dead letter; return their ids."""
    return [delivery_id for delivery_id in dict.fromkeys(ids) if store.dead.purge(delivery_id)]


def matching_ids(store: Store, query: DeliveryQuery) -> list[str]:
    """Return the ids of every dead letter the query matches."""
    return [delivery.id for delivery in dead_letters(store, query)]
