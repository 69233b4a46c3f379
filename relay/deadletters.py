"""Replay and purge dead letters by id; choosing them by filter is the read model's job."""

from __future__ import annotations

from collections.abc import Iterable

from relay.admin.queries import DeliveryQuery, dead_letters
from relay.delivery import DEAD
from relay.store import Store


def replay(store: Store, ids: Iterable[str]) -> list[str]:
    """Send every listed dead letter again with a fresh attempt budget; return their ids."""
    replayed = []
    for delivery in store.iter_deliveries(dict.fromkeys(ids)):
        if delivery.state == DEAD:
            store.replay(delivery)
            replayed.append(delivery.id)
    return replayed


def purge(store: Store, ids: Iterable[str]) -> list[str]:
    """Forget every listed dead letter; return their ids."""
    purged = []
    for delivery in store.iter_deliveries(dict.fromkeys(ids)):
        if delivery.state == DEAD:
            store.purge(delivery.id)
            purged.append(delivery.id)
    return purged


def matching_ids(store: Store, query: DeliveryQuery) -> list[str]:
    """Return the ids of every dead letter the query matches."""
    return [delivery.id for delivery in dead_letters(store, query)]
