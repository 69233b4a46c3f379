"""The contacts hash: a contact's chains, dedup marks and aliases are fields of one hash per
organization, and expired entries count as absent and are deleted by upkeep."""

from __future__ import annotations

from relay.core.delivery import DeliveryState
from relay.storage.contacts import CLOCK_GRACE_SECONDS
from relay.storage.store import Store
from tests.helpers import DEFAULT_REPLY, ORG_A, expire_dedup_marks, headers, wait_until

URL = "/api/v1/contact/default-reply"
STATUS_URL = "/api/v1/contact/contact-status"


def accept(client, **changes: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post(URL, json={**DEFAULT_REPLY, **changes}, headers=headers(ORG_A.token))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["delivery_id"])


def entries(store: Store) -> dict[str, str]:
    raw = store.redis.hgetall(store.keys.contacts(ORG_A.id))
    return {field.decode(): value.decode() for field, value in raw.items()}


def test_a_new_contact_is_three_fields_of_one_hash_and_no_key_of_its_own(client, store) -> None:  # type: ignore[no-untyped-def]
    delivery_id = accept(client)

    assert set(entries(store)) == {"q:u:john_doe", "d:default-reply:u:john_doe", "a:123456"}
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == [delivery_id]
    assert store.contacts.alias(ORG_A.id, "123456") is not None
    contact_keys = [k for k in store.redis.scan_iter() if b"john" in k.lower() or b"123456" in k]
    assert contact_keys == []


def test_a_contacts_deliveries_line_up_in_its_chain_and_leave_it_when_finished(  # type: ignore[no-untyped-def]
    client, store, start_worker, sandbox
) -> None:
    ids = [accept(client, message_content=f"message {n}") for n in range(3)]
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == ids

    start_worker()
    wait_until(lambda: store.history.load(ids[-1]).state == DeliveryState.DELIVERED)
    sent = [r["body"]["message_content"] for r in sandbox.requests()]
    assert sent == ["message 0", "message 1", "message 2"]
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == []
    assert "q:u:john_doe" not in entries(store)


def test_an_expired_mark_counts_as_absent_and_upkeep_deletes_expired_entries_only(  # type: ignore[no-untyped-def]
    client, store
) -> None:
    first = accept(client)
    expire_dedup_marks(store.redis)
    second = accept(client)  # the same body: no longer a duplicate once the window passed
    assert second != first
    expire_dedup_marks(store.redis)

    cursor, deleted = store.contacts.forget_expired(ORG_A.id)

    assert (cursor, deleted) == (0, 1)
    assert set(entries(store)) == {"q:u:john_doe", "a:123456"}  # the chain and the live alias
    alias = store.contacts.alias(ORG_A.id, "123456")
    assert alias is not None and alias[0] == "john_doe"
    _, deleted = store.contacts.forget_expired(ORG_A.id, now=alias[1] + CLOCK_GRACE_SECONDS + 1)
    assert deleted == 1
    assert set(entries(store)) == {"q:u:john_doe"}  # a chain never expires


def test_an_expired_alias_no_longer_links_a_manychat_id_to_its_username(client, store) -> None:  # type: ignore[no-untyped-def]
    accept(client)
    contacts = store.keys.contacts(ORG_A.id)
    store.redis.hset(contacts, "a:123456", "john_doe|1")

    status = {"manychat_id": "123456", "lead_status": "won"}
    response = client.post(STATUS_URL, json=status, headers=headers(ORG_A.token))

    delivery = store.history.load(response.get_json()["data"]["delivery_id"])
    assert delivery is not None
    assert delivery.contact_keys == ["m:123456"]  # not behind u:john_doe any more


def test_forgetting_expired_entries_pages_through_a_large_hash(client, store) -> None:  # type: ignore[no-untyped-def]
    contacts = store.keys.contacts(ORG_A.id)
    store.redis.hset(contacts, mapping={f"d:tags:u:n{i}": f"f|dlv_{i}|1" for i in range(2500)})
    store.redis.hset(contacts, "q:u:kept", "dlv_kept")

    cursor, total, pages = 0, 0, 0
    while True:
        cursor, deleted = store.contacts.forget_expired(ORG_A.id, cursor, page=500)
        total, pages = total + deleted, pages + 1
        if cursor == 0:
            break

    assert total == 2500
    assert pages > 1
    assert entries(store) == {"q:u:kept": "dlv_kept"}


def test_a_parked_delivery_missing_from_its_chain_is_put_back_and_delivered(  # type: ignore[no-untyped-def]
    client, store, start_worker, sandbox
) -> None:
    # What a replay whose join failed leaves: a delivery queued for a contact whose chain
    # (in the hash) does not hold it.
    first = accept(client, message_content="message 0")
    contacts = store.keys.contacts(ORG_A.id)
    store.redis.hset(contacts, "q:u:john_doe", "dlv_unrelated_head")
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.verdict == "parked"

    released = store.ordering.release_all_stuck()

    assert released.rejoined == ((first, f"{contacts} q:u:john_doe"),)
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == [first]  # the vanished head went
    assert released.woken == (first,)
    start_worker()
    wait_until(lambda: store.history.load(first).state == DeliveryState.DELIVERED)
    assert [r["body"]["message_content"] for r in sandbox.requests()] == ["message 0"]


def test_a_replay_joins_its_chains_even_after_the_script_cache_was_flushed(client, store) -> None:  # type: ignore[no-untyped-def]
    delivery_id = accept(client)
    taken = store.inflight.take("w", [ORG_A.id])
    assert taken is not None and taken.delivery is not None
    store.history.finish(taken.delivery, DeliveryState.DEAD, 60, taken.lease)
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == []
    store.redis.script_flush()

    assert store.dead.replay(delivery_id)
    assert store.contacts.chain(ORG_A.id, "u:john_doe") == [delivery_id]
