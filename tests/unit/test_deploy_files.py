"""The deploy files (Procfile, app.json, render.yaml, compose.yaml, Dockerfile) name real things.

Every `dmrelay` command they run parses as a real subcommand, every variable they set is a
setting the relay reads, every file they install from exists, and their ports, process names
and paths agree with each other and with the code.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from relay import cli
from relay.config import VARIABLES, load_settings
from relay.storage.server import Formation, connections_needed
from relay.web.app import register_blueprints

ROOT = Path(__file__).parents[2]
# Connection limits of the Redis plans the deploy files ask for (vendors' tables, FACTS.md).
PLAN_CONNECTIONS = {"heroku-redis:mini": 20}
PROCESSES = {"web": "dmrelay web", "worker": "dmrelay worker"}
SAMPLE_ENV = {
    "REDIS_URL": "rediss://h:1",
    "DMRELAY_SECRET_KEY": "s" * 64,
    "DMRELAY_ORGS": json.dumps(
        [{"id": "11111111-1111-4111-8111-111111111111", "token": "token-0123456789abcdef"}]
    ),
}


def read(name: str) -> str:
    """Return a file of the repository."""
    return (ROOT / name).read_text(encoding="utf-8")


def procfile() -> dict[str, str]:
    """Return the Procfile's process types and commands."""
    lines = [line.split(":", 1) for line in read("Procfile").splitlines() if line.strip()]
    return {kind.strip(): command.strip() for kind, command in lines}


def app_json() -> dict[str, Any]:
    """Return Heroku's app.json."""
    return dict(json.loads(read("app.json")))


def render_yaml() -> dict[str, Any]:
    """Return Render's Blueprint."""
    return dict(yaml.safe_load(read("render.yaml")))


def compose_yaml() -> dict[str, Any]:
    """Return the Compose file."""
    return dict(yaml.safe_load(read("compose.yaml")))


def dockerfile() -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (keyword, arguments), continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", read("Dockerfile"))
    lines = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def docker_args(keyword: str) -> list[str]:
    """Return the arguments of every instruction with this keyword."""
    return [arguments for key, arguments in dockerfile() if key == keyword]


def render_services(kind: str) -> list[dict[str, Any]]:
    """Return Render's services of one type."""
    return [s for s in render_yaml()["services"] if s["type"] == kind]


def commands() -> list[tuple[str, str]]:
    """Return (where, shell command) for every command the deploy files run."""
    found = [(f"Procfile {kind}", command) for kind, command in procfile().items()]
    for service in render_yaml()["services"]:
        for key in ("buildCommand", "preDeployCommand", "startCommand"):
            if key in service:
                found.append((f"render.yaml {service['name']} {key}", service[key]))
    for name, service in compose_yaml()["services"].items():
        if "command" in service:
            found.append((f"compose.yaml {name}", shlex.join(service["command"])))
    for keyword in ("CMD", "RUN"):
        for arguments in docker_args(keyword):
            words = json.loads(arguments) if arguments.startswith("[") else None
            found.append((f"Dockerfile {keyword}", shlex.join(words) if words else arguments))
    healthcheck = docker_args("HEALTHCHECK")[0].split("CMD", 1)[1].strip()
    found.append(("Dockerfile HEALTHCHECK", shlex.join(json.loads(healthcheck))))
    return found


def steps(command: str) -> list[list[str]]:
    """Split a shell command line into its `&&`-joined steps."""
    return [shlex.split(step) for step in command.split("&&")]


@pytest.mark.parametrize(("where", "command"), commands())
def test_every_command_exists_and_every_file_it_names_too(where: str, command: str) -> None:
    for argv in steps(command):
        program = argv[0]
        if program == "dmrelay":
            try:
                cli.build_parser().parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{where}: `{shlex.join(argv)}` is not a dmrelay command")
        elif program == "pip":
            for flag, value in itertools.pairwise(argv):
                if flag in ("-r", "--requirement"):
                    assert (ROOT / value).is_file(), f"{where}: {value} does not exist"
        else:
            allowed = ("useradd", "install", "redis-server")
            assert program in allowed, f"{where}: unexpected {program}"


def test_every_deploy_path_runs_the_same_web_and_worker_commands() -> None:
    assert {k: v for k, v in procfile().items() if k in PROCESSES} == PROCESSES
    assert {
        s["type"]: s["startCommand"] for s in render_yaml()["services"] if "startCommand" in s
    } == PROCESSES
    services = compose_yaml()["services"]
    assert {k: shlex.join(services[k]["command"]) for k in PROCESSES} == PROCESSES
    assert json.loads(docker_args("CMD")[0]) == PROCESSES["web"].split()


def test_release_steps_run_the_check() -> None:
    assert procfile()["release"].split()[:2] == ["dmrelay", "check"]
    (web,) = render_services("web")
    assert web["preDeployCommand"].split()[:2] == ["dmrelay", "check"]


def test_every_variable_set_is_a_setting_and_the_required_ones_are_there() -> None:
    required = {"REDIS_URL", "DMRELAY_SECRET_KEY", "DMRELAY_ORGS"}
    heroku = set(app_json()["env"]) | {"REDIS_URL"}  # the Redis add-on sets REDIS_URL
    render = {
        var["key"]
        for holder in [*render_yaml()["services"], *render_yaml()["envVarGroups"]]
        for var in holder.get("envVars", [])
        if "key" in var
    }
    compose = {
        name
        for service in compose_yaml()["services"].values()
        for name in service.get("environment", {})
    }
    for where, names in (("app.json", heroku), ("render.yaml", render), ("compose.yaml", compose)):
        assert names <= set(VARIABLES), f"{where} sets unknown {names - set(VARIABLES)}"
        assert required <= names, f"{where} lacks {required - names}"


def test_heroku_formation_fits_its_redis_plan() -> None:
    app = app_json()
    assert set(app["formation"]) == set(PROCESSES) <= set(procfile())
    (addon,) = app["addons"]
    values = {name: spec["value"] for name, spec in app["env"].items() if "value" in spec}
    settings = load_settings({**SAMPLE_ENV, **values})
    formation = Formation.from_settings(
        settings, app["formation"]["web"]["quantity"], app["formation"]["worker"]["quantity"]
    )
    assert connections_needed(formation) <= PLAN_CONNECTIONS[addon["plan"]]
    assert app["env"]["DMRELAY_SECRET_KEY"]["generator"] == "secret"
    assert app["env"]["DMRELAY_ORGS"]["required"] is True


def test_render_key_value_never_evicts_and_is_wired_by_name() -> None:
    (store,) = render_services("keyvalue")
    assert store["maxmemoryPolicy"] == "noeviction"
    assert store["plan"] != "free"  # free instances keep nothing on disk
    for service in [*render_services("web"), *render_services("worker")]:
        (redis_url,) = [v for v in service["envVars"] if v.get("key") == "REDIS_URL"]
        assert redis_url["fromService"] == {
            "type": "keyvalue",
            "name": store["name"],
            "property": "connectionString",
        }
        groups = {v["fromGroup"] for v in service["envVars"] if "fromGroup" in v}
        assert groups == {g["name"] for g in render_yaml()["envVarGroups"]}
    (web,) = render_services("web")
    app = Flask(__name__)
    app.config["SETTINGS"] = load_settings(SAMPLE_ENV)
    register_blueprints(app)
    assert web["healthCheckPath"] in {rule.rule for rule in app.url_map.iter_rules()}


def test_compose_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    services = compose_yaml()["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert "profiles" not in services["web"] and "profiles" not in services["worker"]
    assert services["web"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_ports_agree() -> None:
    env_port = re.search(r"\bPORT=(\d+)", " ".join(docker_args("ENV"))).group(1)  # type: ignore[union-attr]
    assert docker_args("EXPOSE") == [env_port]
    (published,) = compose_yaml()["services"]["web"]["ports"]
    assert published.split(":")[-1] == env_port
    sandbox = compose_yaml()["services"]["sandbox"]["command"]
    sandbox_port = sandbox[sandbox.index("--port") + 1]
    assert f"http://sandbox:{sandbox_port}/api/v1" in read("compose.yaml")
    assert f"http://sandbox:{sandbox_port}/api/v1" in read("README.md")


def test_docker_copies_what_exists_and_python_versions_agree() -> None:
    for arguments in docker_args("COPY"):
        *sources, _ = arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    python = read(".python-version").strip()
    assert docker_args("FROM") == [f"python:{python}-slim"]
    assert f"Python {python}" in read("requirements/main.txt").splitlines()[1]


def test_heroku_requirements_carry_the_lock_pins() -> None:
    lock = [
        line.split()[0]
        for line in read("requirements/main.txt").splitlines()
        if "==" in line and line[:1].isalnum()
    ]
    heroku = [
        line for line in read("requirements.txt").splitlines() if line and not line.startswith("#")
    ]
    assert heroku == [*lock, "."]


def test_compose_keeps_the_spool_on_a_volume_the_image_makes_the_user_s_own() -> None:
    compose = compose_yaml()
    spool_dir = compose["services"]["web"]["environment"]["DMRELAY_SPOOL_DIR"]
    (volume,) = [v for v in compose["services"]["web"]["volumes"] if v.endswith(f":{spool_dir}")]
    assert volume.split(":")[0] in compose["volumes"]
    made = [step for run in docker_args("RUN") for step in steps(run) if step[0] == "install"]
    assert ["install", "-d", "-m", "0700", "-o", "dmrelay", "-g", "dmrelay", spool_dir] in made
