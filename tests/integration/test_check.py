"""`dmrelay check` on the suite's redis-server and sandbox: ready, or one line per problem."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from relay import cli
from relay.storage.server import Formation, connections_needed
from relay.storage.store import Store
from tests.helpers import ORG_A, SECRET, free_port_url, point_cli_at

ConfigSetter = Callable[[str, str], None]


@pytest.fixture
def env(monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    """Point the command at the test Redis, the sandbox and two organizations."""
    point_cli_at(monkeypatch, settings)
    sizes = ("WEB_CONCURRENCY", "DMRELAY_WEB_THREADS", "DMRELAY_WORKER_CONCURRENCY")
    pools = ("DMRELAY_WEB_REDIS_CONNECTIONS", "DMRELAY_WORKER_REDIS_CONNECTIONS")
    for name in (*sizes, *pools):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sound_server(server_config: ConfigSetter) -> ConfigSetter:
    """Turn RDB snapshots on: the suite's server keeps nothing on disk, a deploy must."""
    server_config("save", "3600 1")
    return server_config


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    """Run the command; return its exit code, stdout lines and stderr lines."""
    code = cli.main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_a_sound_setup_is_ready_with_a_one_screen_summary(
    env, sound_server, sandbox, capsys
) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_check(capsys)
    assert (code, err) == (0, [])
    assert out[0] == "dmrelay check: ready"
    assert len(out) <= 24
    summary = {line.split()[0]: line for line in out[1:]}
    assert "noeviction" in summary["eviction"]
    assert "RDB on" in summary["persistence"]
    assert f"{connections_needed(Formation())} needed" in summary["connections"]
    assert "answered HTTP" in summary["dmtracker"]
    assert SECRET not in "\n".join(out) and ORG_A.token not in "\n".join(out)


def test_the_summary_names_the_settings_off_their_defaults_and_no_secret(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("DMRELAY_MAX_ATTEMPTS", "20")
    monkeypatch.setenv("DMRELAY_RATE_LIMITS", '{"update-tags": 120}')
    monkeypatch.setenv("DMRELAY_METRICS_TOKEN", "metrics-token-0123456789")

    code, out, _ = run_check(capsys)

    assert code == 0
    (line,) = [line for line in out if line.split()[0] == "settings"]
    assert "DMRELAY_MAX_ATTEMPTS=20" in line
    assert 'DMRELAY_RATE_LIMITS={"create-contact": 60, "update-tags": 120}' in line
    assert "DMTRACKER_BASE_URL=http://127.0.0.1:" in line  # the sandbox, not DmTracker
    assert "DMRELAY_BACKOFF_BASE_SECONDS" not in line  # at its default
    assert "METRICS_TOKEN" not in line and "metrics-token" not in "\n".join(out)
    assert "DMRELAY_SECRET_KEY" not in line and "DMRELAY_ORGS" not in line


def test_the_summary_gives_the_memory_budget_against_maxmemory(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, capsys, redis_conn
) -> None:
    used = int(redis_conn.info("memory")["used_memory"])
    sound_server("maxmemory", str(25 * 2**20))  # Heroku's mini plan

    code, out, _ = run_check(capsys)

    assert code == 0
    (memory,) = [line for line in out if line.split()[0] == "memory"]
    room = int(re.search(r"room for about ([\d,]+) more queued", memory).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert abs(room - (25 * 2**20 * 3 // 4 - used) // 1200) < 200  # used moves a little meanwhile
    assert "(1,200 B each)" in memory
    assert "delivered history kept within 6.2 MiB" in memory  # a quarter of 25 MiB


def test_without_maxmemory_the_history_budget_is_the_configured_one(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, capsys, monkeypatch
) -> None:
    sound_server("maxmemory", "0")
    monkeypatch.setenv("DMRELAY_HISTORY_MAX_MB", "48")

    _, out, _ = run_check(capsys)

    (memory,) = [line for line in out if line.split()[0] == "memory"]
    assert "no maxmemory; delivered history kept within 48.0 MiB" in memory


def test_an_evicting_server_is_one_problem_line(env, sound_server, sandbox, capsys) -> None:  # type: ignore[no-untyped-def]
    sound_server("maxmemory-policy", "allkeys-lru")
    code, out, err = run_check(capsys)
    assert code == 1 and out == []
    assert err == [
        "dmrelay check: Redis maxmemory-policy is allkeys-lru, not noeviction: "
        "when memory runs out Redis will delete queued deliveries"
    ]


def test_a_server_without_persistence_is_a_problem(env, sandbox, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_check(capsys)  # the suite's server: no AOF, no snapshots
    assert code == 1
    assert err == [
        "dmrelay check: Redis persistence is off (neither AOF nor RDB): "
        "a Redis restart loses every queued delivery"
    ]


def test_a_nearly_full_maxmemory_is_a_problem(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, redis_conn, capsys
) -> None:
    used = int(redis_conn.info("memory")["used_memory"])
    sound_server("maxmemory", str(int(used * 1.1)))
    code, _, err = run_check(capsys)
    assert code == 1
    (line,) = err
    assert re.fullmatch(
        r"dmrelay check: Redis memory is \d+% used \(.*\): less than 20% free", line
    )


def test_maxclients_is_checked_against_the_formation(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, capsys
) -> None:
    sound_server("maxclients", "100")
    # Defaults: a web instance runs 2 processes, each with a pool of 4 and its answer
    # subscription; a worker's pool is 5; a one-off command's 2. So 2 web instances and 15
    # workers need 20 + 75 + 2 = 97.
    assert run_check(capsys, "--web-instances", "2", "--worker-instances", "15")[0] == 0
    # A sixteenth worker needs 102.
    code, _, err = run_check(capsys, "--web-instances", "2", "--worker-instances", "16")
    assert code == 1
    assert err == [
        "dmrelay check: Redis maxclients is 100 but the formation needs 102 connections: "
        "choose a larger plan or lower the concurrency settings"
    ]


def test_an_unreachable_dmtracker_is_a_problem(env, sound_server, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    url = free_port_url()
    monkeypatch.setenv("DMTRACKER_BASE_URL", url)
    code, _, err = run_check(capsys)
    assert code == 1
    assert err == [f"dmrelay check: DmTracker unreachable at {url}: connection error"]


def test_an_unreachable_redis_is_a_problem_and_its_password_stays_hidden(  # type: ignore[no-untyped-def]
    env, sandbox, monkeypatch, capsys
) -> None:
    port = free_port_url().split(":")[2].split("/")[0]
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2-password@127.0.0.1:{port}/0")
    code, _, err = run_check(capsys)
    assert code == 1
    (line,) = err
    assert line.startswith(f"dmrelay check: Redis unreachable at 127.0.0.1:{port}/0 (no TLS): ")
    assert "hunter2" not in line


def test_a_bad_configuration_is_one_line(env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DMRELAY_SECRET_KEY", "short")
    code, out, err = run_check(capsys)
    assert (code, out) == (1, [])
    assert err == [
        "dmrelay check: configuration invalid: "
        "DMRELAY_SECRET_KEY: must be at least 32 characters long"
    ]


def test_a_server_with_config_disabled_is_read_from_info(  # type: ignore[no-untyped-def]
    env, sandbox, redis_conn, monkeypatch, capsys
) -> None:
    # Managed Redis (Heroku's among them) refuses CONFIG; an ACL user without it does the same.
    redis_conn.acl_setuser(
        "noconfig",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-config"],
    )
    try:
        url = redis_conn.connection_pool.connection_kwargs
        monkeypatch.setenv("REDIS_URL", f"redis://noconfig:pw@127.0.0.1:{url['port']}/0")
        code, out, err = run_check(capsys)
    finally:
        redis_conn.acl_deluser("noconfig")
    assert (code, err) == (0, [])
    summary = {line.split()[0]: line for line in out[1:]}
    assert "RDB unknown" in summary["persistence"]
    assert "noeviction" in summary["eviction"]


def test_the_summary_shows_the_history_budget_what_fills_it_and_the_byte_budgets(  # type: ignore[no-untyped-def]
    env, sound_server, sandbox, capsys, redis_conn
) -> None:
    sound_server("maxmemory", str(25 * 2**20))
    contacts = Store(redis_conn).keys.contacts(ORG_A.id)
    redis_conn.hset(contacts, mapping={f"a:{n}": f"user_{n}|{2**31}" for n in range(3000)})

    code, out, _ = run_check(capsys)

    assert code == 0
    summary = {line.split()[0]: line for line in out[1:]}
    links = float(re.search(r"contact links ([\d.]+) MiB", summary["history"]).group(1))  # type: ignore[union-attr]
    assert links == round(redis_conn.memory_usage(contacts, samples=0) / 2**20, 1) > 0
    assert "of its 6.2 MiB: 0 delivered records 0.0 MiB, index 0.0 MiB" in summary["history"]
    # Half of maxmemory divided between the two organizations; spooling past 90 % of it.
    assert "6.2 MiB of undelivered messages per organization" in summary["budgets"]
    assert "ingest spools past 22.5 MiB used (10% kept free for delivery)" in summary["budgets"]
