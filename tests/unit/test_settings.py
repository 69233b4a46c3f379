"""Configuration: read once, checked, one clear message naming the variable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import DECLARED, ENV, REQUIRED, VARIABLES, default_of, load_settings
from relay.core.errors import ConfigError

TOKEN = "tok-0123456789abcdef"
ORG = {"id": "11111111-1111-4111-8111-111111111111", "token": TOKEN, "page_name": "P"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
BASE = {
    "REDIS_URL": "redis://localhost:6379/0",
    "DMRELAY_SECRET_KEY": "s" * 32,
    "DMRELAY_ORGS": json.dumps([ORG]),
}


def test_reads_a_complete_environment() -> None:
    settings = load_settings(BASE)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.dmtracker_base_url == "https://app.dmtracker.ai/api/v1"
    (org,) = settings.orgs
    assert (org.id, org.token, org.page_name) == (ORG["id"], TOKEN, "P")
    assert settings.rate_limits_per_minute == {"create-contact": 60}


def test_settings_are_frozen_and_hide_secrets_in_repr() -> None:
    settings = load_settings(BASE)
    with pytest.raises(AttributeError):
        settings.redis_url = "x"  # type: ignore[misc]
    assert TOKEN not in repr(settings)
    assert "s" * 32 not in repr(settings)


def test_orgs_can_come_from_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps([ORG]))
    env = {**BASE, "DMRELAY_ORGS": "", "DMRELAY_ORGS_FILE": str(path)}
    assert load_settings(env).orgs[0].id == ORG["id"]


@pytest.mark.parametrize(
    ("changes", "variable", "fragment"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL", "is not set"),
        ({"DMRELAY_SECRET_KEY": ""}, "DMRELAY_SECRET_KEY", "is not set"),
        ({"DMRELAY_SECRET_KEY": "s" * 31}, "DMRELAY_SECRET_KEY", "at least 32"),
        ({"DMRELAY_ORGS": ""}, "DMRELAY_ORGS", "is not set"),
        ({"DMRELAY_ORGS": "[{"}, "DMRELAY_ORGS", "not valid JSON"),
        ({"DMRELAY_ORGS": "[]"}, "DMRELAY_ORGS", "non-empty JSON array"),
        ({"DMRELAY_ORGS": '[{"id": "nope", "token": "t"}]'}, "DMRELAY_ORGS", "UUID"),
        (
            {"DMRELAY_ORGS": json.dumps([{**ORG, "token": "x" * 15}])},
            "DMRELAY_ORGS",
            "entry 0: 'token' must be at least 16 characters long",
        ),
        (
            {
                "DMRELAY_ORGS": json.dumps(
                    [ORG, {**ORG, "id": ORG["id"][:-1] + "2", "token": " t "}]
                )
            },
            "DMRELAY_ORGS",
            "entry 1: 'token' must be at least 16 characters long",
        ),
        (
            {"DMRELAY_METRICS_TOKEN": "prices"},
            "DMRELAY_METRICS_TOKEN",
            "must be at least 16 characters long",
        ),
        ({"DMRELAY_ORGS": json.dumps([{"id": ORG["id"]}])}, "DMRELAY_ORGS", "'token'"),
        ({"DMRELAY_ORGS": json.dumps([ORG, ORG])}, "DMRELAY_ORGS", "share the same id"),
        ({"DMTRACKER_BASE_URL": "ftp://x"}, "DMTRACKER_BASE_URL", "http"),
        ({"DMRELAY_MAX_ATTEMPTS": "many"}, "DMRELAY_MAX_ATTEMPTS", "whole number"),
        ({"DMRELAY_MAX_ATTEMPTS": "0"}, "DMRELAY_MAX_ATTEMPTS", "at least 1"),
        ({"DMRELAY_RATE_LIMITS": '{"nope": 5}'}, "DMRELAY_RATE_LIMITS", "endpoint names"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY", "at least 1"),
        ({"DMRELAY_REDIS_CA_CERT": PEM}, "DMRELAY_REDIS_CA_CERT", "only to a rediss://"),
        (
            {"REDIS_URL": "rediss://h:6380", "DMRELAY_REDIS_CA_CERT": "/nonexistent"},
            "DMRELAY_REDIS_CA_CERT",
            "cannot read",
        ),
        (
            {"REDIS_URL": "rediss://h:6380", "DMRELAY_REDIS_CA_CERT": "not a certificate"},
            "DMRELAY_REDIS_CA_CERT",
            "cannot read",
        ),
        (
            {"DMRELAY_ORGS": "", "DMRELAY_ORGS_FILE": "/nonexistent"},
            "DMRELAY_ORGS_FILE",
            "cannot read",
        ),
    ],
)
def test_bad_values_name_the_variable(changes, variable, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **changes})
    assert caught.value.variable == variable
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "value"),
    [
        ({"DMRELAY_ORGS": json.dumps([{**ORG, "token": "short-tok-1"}])}, "short-tok-1"),
        ({"DMRELAY_METRICS_TOKEN": "short-metrics"}, "short-metrics"),
        ({"DMRELAY_SECRET_KEY": "short-secret-key"}, "short-secret-key"),
    ],
)
def test_a_short_secret_is_refused_without_echoing_it(changes, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **changes})
    assert value not in str(caught.value)
    assert "at least" in str(caught.value)


def test_secrets_of_16_characters_are_accepted() -> None:
    org = {**ORG, "token": "t" * 16}
    env = {**BASE, "DMRELAY_ORGS": json.dumps([org]), "DMRELAY_METRICS_TOKEN": "m" * 16}
    settings = load_settings(env)
    assert settings.orgs[0].token == "t" * 16
    assert settings.metrics_token == "m" * 16


def test_invalid_json_does_not_echo_tokens() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "DMRELAY_ORGS": '[{"token": "super-secret-tok"'})
    assert "super-secret-tok" not in str(caught.value)


def test_a_short_token_stops_start_up_with_one_line() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DMRELAY_SECRET_KEY": "x" * 40,
        "REDIS_URL": "redis://x",
        "DMRELAY_ORGS": json.dumps([{**ORG, "token": "prices"}]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "relay", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dmrelay: configuration error: DMRELAY_ORGS: entry 0: 'token' must be at least"
        " 16 characters long"
    )
    assert "prices" not in result.stdout + result.stderr


def test_a_ca_certificate_is_read_from_its_file_or_given_as_pem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**BASE, "REDIS_URL": "rediss://h:6380"}
    path = tmp_path / "ca.pem"
    path.write_text(PEM)
    assert load_settings({**env, "DMRELAY_REDIS_CA_CERT": str(path)}).redis_ca_cert == PEM
    assert load_settings({**env, "DMRELAY_REDIS_CA_CERT": PEM}).redis_ca_cert == PEM.strip()
    assert load_settings(env).redis_ca_cert is None
    path.write_text("hello")
    with pytest.raises(ConfigError, match="must be a PEM certificate or the path of one"):
        load_settings({**env, "DMRELAY_REDIS_CA_CERT": str(path)})


def test_rate_limits_can_be_changed_and_added() -> None:
    env = {**BASE, "DMRELAY_RATE_LIMITS": '{"create-contact": 30, "update-tags": 120}'}
    assert load_settings(env).rate_limits_per_minute == {"create-contact": 30, "update-tags": 120}


def test_worker_start_up_fails_with_one_line_and_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "worker"],
        env={"PATH": "/usr/bin:/bin", "DMRELAY_SECRET_KEY": "x" * 40, "REDIS_URL": "redis://x"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dmrelay: configuration error: DMRELAY_ORGS: is not set (nor DMRELAY_ORGS_FILE)"
    )
    assert "Traceback" not in result.stdout + result.stderr


UNITS = {"_seconds": " s", "_minutes": " min", "_bytes": " B", "_mb": " MB"}


def number(value: float) -> str:
    """Render a number as a person writes it: 3.05, 100, 604800."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def spelled_out(unit: str, value: float) -> str:
    """Say long spans in days or hours and large sizes in MiB, as a hint beside the number."""
    if unit == " s" and value >= 86400 and value % 86400 == 0:
        days = int(value // 86400)
        return f" ({days} day{'s' if days > 1 else ''})"
    if unit == " s" and value >= 3600 and value % 3600 == 0:
        return f" ({int(value // 3600)} h)"
    if unit == " B" and value % 2**20 == 0:
        return f" ({int(value // 2**20)} MiB)"
    return ""


def shown(name: str, value: object) -> str:
    """Render a declared default as the README's table shows it, with its unit."""
    unit = next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")
    if value is REQUIRED:
        return "required"
    if value is None or value == ():
        return "unset"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, dict):
        return ", ".join(f"{key} {number(amount)}{unit}" for key, amount in value.items())
    assert isinstance(value, int | float), name
    return f"{number(value)}{unit}{spelled_out(unit, value)}"


def expected_table() -> str:
    """Return the README's configuration table as the declarations in relay/config.py give it."""
    rows = [
        f"| `{ENV[name]}` | {shown(name, default_of(name))} | {field.metadata['help']} |"
        for name, field in DECLARED.items()
    ]
    return "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows])


def test_the_readme_configuration_table_is_the_declarations() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n\n", 2)[1]
    assert table == expected_table(), (
        "README.md's configuration table should read:\n" + expected_table()
    )
    documented = set(re.findall(r"^\| `([A-Z_]+)`", table, re.MULTILINE))
    assert documented | {"DMRELAY_ORGS_FILE"} == set(VARIABLES)
    assert "`DMRELAY_ORGS_FILE`" in table


def test_every_setting_has_its_declared_default_when_unset() -> None:
    settings = load_settings(BASE)
    for name in DECLARED:
        if default_of(name) is not REQUIRED:
            assert getattr(settings, name) == default_of(name), ENV[name]


def test_every_number_is_checked_against_its_declared_bound() -> None:
    numbers = [name for name in DECLARED if type(default_of(name)) in (int, float)]
    assert len(numbers) >= 25
    for name in numbers:
        spec = DECLARED[name].metadata
        below = spec["minimum"] if spec["strict"] else spec["minimum"] - 1
        with pytest.raises(ConfigError) as caught:
            load_settings({**BASE, ENV[name]: str(below)})
        assert caught.value.variable == ENV[name]
        assert load_settings({**BASE, ENV[name]: str(spec["minimum"] + 1)})


def test_gunicorn_takes_its_shape_from_the_declared_settings() -> None:
    script = "from relay import gunicorn_conf as g; print(g.bind, g.workers, g.threads)"
    env = {"PATH": "/usr/bin:/bin", "PORT": "9123", "WEB_CONCURRENCY": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.split() == ["0.0.0.0:9123", "3", str(default_of("web_threads"))]
    env["DMRELAY_WEB_THREADS"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dmrelay: configuration error: DMRELAY_WEB_THREADS: must be at least 1"
    )


def test_answer_waits_default_to_5_s_for_the_routed_endpoints_and_0_for_the_others() -> None:
    assert load_settings(BASE).answer_wait_seconds == {
        "default-reply": 5.0,
        "create-contact": 5.0,
        "update-tags": 0.0,
        "contact-status": 0.0,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "2.5",
            {
                "default-reply": 2.5,
                "create-contact": 2.5,
                "update-tags": 2.5,
                "contact-status": 2.5,
            },
        ),
        (
            "0",
            {
                "default-reply": 0.0,
                "create-contact": 0.0,
                "update-tags": 0.0,
                "contact-status": 0.0,
            },
        ),
        (
            '{"update-tags": 3}',
            {
                "default-reply": 5.0,
                "create-contact": 5.0,
                "update-tags": 3.0,
                "contact-status": 0.0,
            },
        ),
    ],
)
def test_answer_waits_take_one_number_or_json_per_endpoint(given: str, expected: dict) -> None:
    settings = load_settings({**BASE, "DMRELAY_ANSWER_WAIT_SECONDS": given})
    assert settings.answer_wait_seconds == expected


@pytest.mark.parametrize(
    "given", ["9", "-1", "nan", "true", '{"delete": 1}', '{"update-tags": 8.5}', "[]"]
)
def test_answer_waits_out_of_range_or_unknown_stop_start_up(given: str) -> None:
    with pytest.raises(
        ConfigError, match="DMRELAY_ANSWER_WAIT_SECONDS: must be seconds from 0 to 8"
    ):
        load_settings({**BASE, "DMRELAY_ANSWER_WAIT_SECONDS": given})
