"""Find, replay and purge dead letters by filter; shared by the CLI and the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from relay.delivery import Delivery
from relay.store import Store


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; empty fields match everything."""

    ids: tuple[str, ...] | None = None
    org_id: str | None = None
    endpoint: str | None = None
    status: int | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, delivery: Delivery) -> bool:
        """Return True if the dead letter passes every given condition."""
        died = delivery.finished_at or 0.0
        last = delivery.last_attempt
        return (
            (self.org_id is None or delivery.org_id == self.org_id)
            and (self.endpoint is None or delivery.endpoint == self.endpoint)
            and (self.status is None or (last is not None and last.status == self.status))
            and (self.since is None or died >= self.since)
            and (self.until is None or died < self.until)
        )


def find(store: Store, where: DeadLetterFilter) -> Iterator[Delivery]:
    """Yield matching dead letters, newest first."""
    candidates = where.ids if where.ids is not None else store.dead_letter_ids()
    for delivery in store.iter_deliveries(candidates):
        if delivery.state == "dead" and where.matches(delivery):
            yield delivery


def replay(store: Store, where: DeadLetterFilter) -> list[str]:
    """Replay every matching dead letter; return their ids."""
    replayed = []
    for delivery in list(find(store, where)):
        store.replay(delivery)
        replayed.append(delivery.id)
    return replayed


def purge(store: Store, where: DeadLetterFilter) -> list[str]:
    """Forget every matching dead letter; return their ids."""
    purged = []
    for delivery in list(find(store, where)):
        store.purge(delivery.id)
        purged.append(delivery.id)
    return purged
