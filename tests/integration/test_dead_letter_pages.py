"""A page of dead letters reads only its page, however many are kept: admin API, dashboard
and CLI alike."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from relay import cli
from relay.devtools.deadletters import store_dead_letters
from relay.storage.store import Store
from relay.web.admin import tokens
from tests.helpers import ORG_A, SECRET, point_cli_at, sign_in

KEPT = 30_000
PAGE = "/api/v1/admin/dead-letters"
READ = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 3600, subject='ops')}"}


@pytest.fixture
def kept(store: Store) -> list[str]:
    """Return the ids of 30,000 dead letters, newest first."""
    return store_dead_letters(store, ORG_A.id, KEPT)


def timed_ms(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = call()
    assert response.status_code == 200
    return (time.perf_counter() - started) * 1000


def test_a_page_of_30000_dead_letters_answers_in_under_50_ms(client, kept) -> None:  # type: ignore[no-untyped-def]
    client.get(f"{PAGE}?take=25", headers=READ)  # the first request of an app warms it up
    median = statistics.median(
        timed_ms(lambda: client.get(f"{PAGE}?take=25", headers=READ)) for _ in range(5)
    )
    body = client.get(f"{PAGE}?take=25&skip=25", headers=READ).get_json()

    assert median < 50, f"{median:.1f} ms"
    assert [row["id"] for row in body["data"]] == kept[25:50]
    assert body["meta"] == {"total": KEPT, "skip": 25, "take": 25, "hasMore": True}
    last = client.get(f"{PAGE}?take=25&skip={KEPT - 10}", headers=READ).get_json()
    assert ([row["id"] for row in last["data"]], last["meta"]["hasMore"]) == (kept[-10:], False)


def test_a_page_forgets_expired_records_and_fills_their_places(client, store) -> None:  # type: ignore[no-untyped-def]
    ids = store_dead_letters(store, ORG_A.id, 8)
    store.redis.delete(*(store.keys.delivery(i) for i in ids[1:4]))  # expired

    body = client.get(f"{PAGE}?take=3", headers=READ).get_json()

    assert [row["id"] for row in body["data"]] == [ids[0], *ids[4:6]]
    assert body["meta"]["total"] == 5
    assert store.redis.zcard(store.keys.dead) == 5


def test_the_dashboard_page_reads_only_its_page(client, kept) -> None:  # type: ignore[no-untyped-def]
    sign_in(client)
    client.get("/dashboard/dead-letters")
    median = statistics.median(
        timed_ms(lambda: client.get("/dashboard/dead-letters?page=3")) for _ in range(3)
    )
    page = client.get("/dashboard/dead-letters?page=3").text

    assert median < 100, f"{median:.1f} ms"
    assert kept[50] not in page
    assert kept[100] in page  # page 3 of 50 a page


def test_the_cli_lists_one_page(kept, settings, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    point_cli_at(monkeypatch, settings)

    started = time.perf_counter()
    assert cli.main(["dead-letters", "list", "--skip", "10", "--take", "5"]) == 0
    elapsed = time.perf_counter() - started

    listed = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert listed == kept[10:15]
    assert elapsed < 1.0
