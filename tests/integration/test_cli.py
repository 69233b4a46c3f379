"""The dmrelay command line: dead letters, schedule, health check."""

from __future__ import annotations

import json

import pytest

from relay import cli
from relay.core.delivery import DeliveryState
from tests.helpers import DEFAULT_REPLY, ORG_A, ORG_B, headers, point_cli_at, wait_until


@pytest.fixture
def env(monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    """Point the CLI at the test Redis and organizations."""
    point_cli_at(monkeypatch, settings)


def dead_letter(client, store, sandbox, body, status: int = 400) -> str:  # type: ignore[no-untyped-def]
    sandbox.fault(endpoint="contact/default-reply", status=status, count=1)
    response = client.post("/api/v1/contact/default-reply", json=body, headers=headers(ORG_A.token))
    delivery_id = str(response.get_json()["data"]["delivery_id"])
    wait_until(lambda: store.history.load(delivery_id).state == DeliveryState.DEAD)
    return delivery_id


def test_list_replay_and_purge_dead_letters(  # type: ignore[no-untyped-def]
    env, client, store, sandbox, start_worker, capsys
) -> None:
    start_worker()
    first = dead_letter(client, store, sandbox, DEFAULT_REPLY, status=400)
    second = dead_letter(client, store, sandbox, {**DEFAULT_REPLY, "username": "x2"}, status=422)

    assert cli.main(["dead-letters", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["id"], row["status"]) for row in listed] == [(second, 422), (first, 400)]
    assert listed[1]["reason"] == "DmTracker answered 400"

    assert cli.main(["dead-letters", "list", "--status", "422"]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [second]
    assert cli.main(["dead-letters", "list", "--username", "@X2"]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [second]
    assert cli.main(["dead-letters", "list", "--since", "2999-01-01T00:00:00"]) == 0
    assert capsys.readouterr().out == ""
    # The filters table normalizes like the API: an upper-case organization id still matches.
    assert cli.main(["dead-letters", "list", "--org", ORG_A.id.upper()]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [second, first]
    assert cli.main(["dead-letters", "list", "--org", ORG_B.id]) == 0
    assert capsys.readouterr().out == ""

    assert cli.main(["dead-letters", "replay", first]) == 0
    assert capsys.readouterr().out.splitlines() == ["replayed 1 dead letter(s)", first]
    wait_until(lambda: store.history.load(first).state == DeliveryState.DELIVERED)
    assert store.history.load(first).attempts_used == 0

    assert cli.main(["dead-letters", "purge", "--all", "--endpoint", "default-reply"]) == 0
    assert capsys.readouterr().out.splitlines() == ["purged 1 dead letter(s)", second]
    assert store.history.load(second) is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--username", "no spaces"),
        ("--since", "yesterday"),
        ("--since", "0999-12-31T00:00:00"),
        ("--until", "0001-01-01T00:00:00"),
        ("--org", "acme"),
        ("--status", "99"),
        ("--endpoint", "contact/default-reply"),
    ],
)
def test_a_malformed_filter_is_a_usage_error(env, capsys, option, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["dead-letters", "list", option, value])
    assert stopped.value.code == 2
    assert f"argument {option}: {value!r}:" in capsys.readouterr().err


def test_a_time_range_that_ends_before_it_starts_is_a_usage_error(env, capsys) -> None:  # type: ignore[no-untyped-def]
    arguments = ["--since", "2026-11-30T11:00:00Z", "--until", "2026-11-30T10:00:00Z"]

    assert cli.main(["dead-letters", "list", *arguments]) == 2
    assert "The 'since' filter must be earlier than 'until'." in capsys.readouterr().err


def test_replaying_something_that_is_not_dead_fails(env, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["dead-letters", "replay", "dlv_nope"]) == 1
    assert "no dead letter dlv_nope" in capsys.readouterr().err


def test_schedule_prints_the_retry_table(env, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["schedule"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["1", "2"]
    assert lines[-1].strip() == "35  dead letter if it fails"


def test_healthcheck_sees_web_or_worker(monkeypatch, relay_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from workers import bootstrap

    alive = tmp_path / "alive"
    monkeypatch.setattr(bootstrap, "ALIVE_FILE", alive)
    monkeypatch.setenv("PORT", relay_url.rsplit(":", 1)[1])
    assert cli.main(["healthcheck"]) == 0

    monkeypatch.setenv("PORT", "1")  # no web process: only a fresh worker beat counts
    assert cli.main(["healthcheck"]) == 1
    alive.touch()
    assert cli.main(["healthcheck"]) == 0
