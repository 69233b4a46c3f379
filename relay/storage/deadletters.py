"""Replay and purge dead letters by id; choosing them by filter is the read model's job."""

from __future__ import annotations

from collections.abc import Iterable

from relay.storage.queries import DeliveryQuery, dead_letters
from relay.storage.store import Store


def replay(store: Store, ids: Iterable[str]) -> list[str]:
    """Send every listed dead letter again with a fresh attempt budget; return their ids."""
    return [delivery_id for delivery_id in dict.fromkeys(ids) if store.replay(delivery_id)]


def purge(store: Store, ids: Iterable[str]) -> list[str]:
    """Forget every listed dead letter; return their ids."""
    return [delivery_id for delivery_id in dict.fromkeys(ids) if store.purge(delivery_id)]


def matching_ids(store: Store, query: DeliveryQuery) -> list[str]:
    """Return the ids of every dead letter the query matches."""
    return [delivery.id for delivery in dead_letters(store, query)]
