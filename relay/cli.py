"""The `dmrelay` command: web, worker, sandbox, dead letters, tokens, and a local run."""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import redis
from marshmallow import ValidationError

from relay.alerting import send_test_alert
from relay.config import DECLARED, ENV, REQUIRED, Settings, default_of, load_settings, read_setting
from relay.core import defaults
from relay.core.delivery import Delivery
from relay.core.errors import ConfigError, FieldError, HttpError
from relay.core.filters import DEAD_LETTER_FILTERS, DeliveryQuery, query_of, reason_of
from relay.logs import configure_logging
from relay.notify import Notifier
from relay.storage import deadletter_actions, server
from relay.storage.connection import connect, describe_tls, safe_location
from relay.storage.queries import iter_dead_letters, search_dead_letters
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.spool import prepare_directory

HEALTHY_BEAT_SECONDS = 60
CHECK_READ_TIMEOUT_SECONDS = 5.0  # the check waits for DmTracker's headers, no longer
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; configuration and usage errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(f"dmrelay: configuration error: {error}", file=sys.stderr)
        return 2
    except HttpError as error:  # a filter combination the table's converters cannot catch
        print(f"dmrelay: {error.message}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """Describe every subcommand."""
    parser = argparse.ArgumentParser(prog="dmrelay", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add(commands, "web", "run the web process under gunicorn", _web)
    _add(commands, "worker", "run a delivery worker", _worker)
    sandbox = _add(commands, "sandbox", "run a local DmTracker stand-in", _sandbox)
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.add_argument("--latency-ms", type=int, default=0)
    sandbox.add_argument("--fault-rate", type=float, default=0.0)
    sandbox.add_argument("--create-contact-limit", type=int, default=60)
    run = _add(commands, "run", "run web, worker, Redis and the sandbox locally", _run)
    run.add_argument("--port", type=int, help="the web port (default: PORT, else 8000)")
    _add(commands, "healthcheck", "exit 0 if this container's web or worker is alive", _health)
    _add(commands, "schedule", "print the retry schedule of the current settings", _schedule)
    _add_check(commands)
    _add_dead_letters(commands)
    _add_controls(commands)
    alerts = commands.add_parser("alerts", help="the alert channels")
    _add(
        alerts.add_subparsers(dest="action", required=True),
        "test",
        "send a test alert",
        _alerts_test,
    )
    token = _add(commands, "token", "print an admin API token (a signed JWT)", _token)
    token.add_argument(
        "--scope", action="append", required=True, choices=tokens.SCOPES, dest="scopes"
    )
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    token.add_argument("--subject", default="operator", help="who the token is for")
    return parser


def _add(
    commands: argparse._SubParsersAction, name: str, help_text: str, handler: Callable
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _add_dead_letters(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("dead-letters", help="list, replay or purge dead letters")
    actions = group.add_subparsers(dest="action", required=True)
    for name, handler in (("list", _dl_list), ("replay", _dl_replay), ("purge", _dl_purge)):
        action = _add(actions, name, f"{name} dead letters", handler)
        if name != "list":
            which = action.add_mutually_exclusive_group(required=True)
            which.add_argument("id", nargs="?", help="one dead letter's delivery id")
            which.add_argument("--all", action="store_true", help="every dead letter matching")
        else:
            action.add_argument(
                "--skip", type=int, default=0, help="leave out the N newest (default 0)"
            )
            action.add_argument(
                "--take", type=int, default=None, help="list at most N (default: every one)"
            )
        for row in DEAD_LETTER_FILTERS:
            if row.flag:
                action.add_argument(
                    row.flag, dest=row.field, type=_checked(row.convert), help=row.doc
                )
    edit = _add(
        actions,
        "edit",
        "replace a held or dead letter's body, checked as ingest checks one; then replay it",
        _dl_edit,
    )
    edit.add_argument("id", help="the dead letter's delivery id")
    edit.add_argument(
        "--body",
        required=True,
        help="a file holding the whole new body as a JSON object, or - for standard input",
    )


def _add_controls(commands: argparse._SubParsersAction) -> None:
    for name, handler, help_text in (
        ("pause", _pause, "hold an organization's deliveries (it keeps accepting)"),
        ("resume", _resume, "let a paused organization's deliveries go again"),
    ):
        action = _add(commands, name, help_text, handler)
        action.add_argument("org", help="the organization's id")


def _add_check(commands: argparse._SubParsersAction) -> None:
    check = _add(
        commands,
        "check",
        "check the configuration, Redis and DmTracker before a release; non-zero if unfit",
        _check,
    )
    instances = "instances (dynos on Heroku) of the %s process that share this Redis"
    check.add_argument("--web-instances", type=int, default=1, help=instances % "web")
    check.add_argument("--worker-instances", type=int, default=1, help=instances % "worker")
    check.add_argument(
        "--wait", type=float, default=0, help="seconds to wait for Redis to answer (default 0)"
    )


def _checked(convert: Callable[[object], T]) -> Callable[[str], T]:
    """Turn a schema's field converter into an argparse type."""

    def parse(value: str) -> T:
        try:
            return convert(value)
        except ValidationError as error:
            raise argparse.ArgumentTypeError(f"{value!r}: {reason_of(error)}") from None

    return parse


def _web(args: argparse.Namespace) -> int:
    # Fail here with one clear line rather than inside gunicorn.
    prepare_directory(Path(load_settings().spool_dir))
    # The one place that spells out gunicorn: the Procfile, the Dockerfile and devrun call this.
    command = [sys.executable, "-m", "gunicorn", "--config", "python:relay.gunicorn_conf"]
    os.execv(sys.executable, [*command, "relay.web.app:create_app()"])  # noqa: S606 - no shell


def _worker(args: argparse.Namespace) -> int:
    from workers.bootstrap import run_worker

    settings = load_settings()
    configure_logging()  # only long-running commands log; the others print their results
    run_worker(settings)
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from relay.devtools.sandbox import SandboxOrg, serve

    # The sandbox needs only the organizations: no Redis, no secret.
    orgs = [SandboxOrg(org.id, org.token) for org in read_setting("orgs", os.environ)]
    serve(
        orgs,
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        create_contact_limit_per_minute=args.create_contact_limit,
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from relay.devtools.devrun import run_local

    return run_local(args.port or read_setting("port", os.environ))


def _health(args: argparse.Namespace) -> int:
    from workers.bootstrap import ALIVE_FILE

    url = f"http://127.0.0.1:{read_setting('port', os.environ)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        pass  # no web process here: is this a worker?
    fresh = ALIVE_FILE.exists() and time.time() - ALIVE_FILE.stat().st_mtime < HEALTHY_BEAT_SECONDS
    return 0 if fresh else 1


def _schedule(args: argparse.Namespace) -> int:
    from relay.core.policy import Backoff, schedule_table

    settings = load_settings()
    backoff = Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds)
    print("attempt  longest wait after it  expected time since first attempt")
    for attempt, ceiling, expected in schedule_table(settings.max_attempts, backoff):
        print(f"{attempt:>7}  {ceiling:>19.0f} s  {expected / 3600:>30.2f} h")
    print(f"{settings.max_attempts:>7}  dead letter if it fails")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        return _report([f"configuration invalid: {error}"], [])
    formation = server.Formation.from_settings(settings, args.web_instances, args.worker_instances)
    redis_problems, redis_lines = _check_redis(settings, formation, args.wait)
    http_problems, http_lines = _check_dmtracker(settings)
    orgs = f"{len(settings.orgs)} organization(s)"
    changed = ", ".join(_changed_settings(settings)) or "all at their defaults"
    summary = [f"configuration  {orgs}", f"settings       {changed}", *redis_lines, *http_lines]
    return _report(redis_problems + http_problems, summary)


def _changed_settings(settings: Settings) -> list[str]:
    """Return `VARIABLE=value` for each setting off its default, but the secret or required."""
    return [
        f"{ENV[name]}={_text(value)}"
        for name, declared in DECLARED.items()
        if not declared.metadata["secret"]
        and default_of(name) is not REQUIRED
        and (value := getattr(settings, name)) != default_of(name)
    ]


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return json.dumps(value) if isinstance(value, Mapping) else str(value)


def _report(problems: list[str], summary: list[str]) -> int:
    """Print one line per problem and fail, or print the summary."""
    for problem in problems:
        print(f"dmrelay check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("dmrelay check: ready")
    for line in summary:
        print(f"  {line}")
    return 0


def _check_redis(
    settings: Settings, formation: server.Formation, wait_seconds: float
) -> tuple[list[str], list[str]]:
    tls = describe_tls(settings.redis_url, settings.redis_ca_cert)
    where = f"{safe_location(settings.redis_url)} ({tls})"
    connection = connect(settings.redis_url, 1, "dmrelay-check", settings.redis_ca_cert)
    try:
        facts = _inspect_when_up(connection, wait_seconds)
        history = _history(Store(connection), settings, facts)
    except redis.RedisError as error:
        return [f"Redis unreachable at {where}: {error}"], []
    finally:
        connection.close()
    needed = server.connections_needed(formation)
    lines = [
        f"redis          {facts.version} at {where}",
        f"eviction       {facts.eviction_policy}",
        f"persistence    {_persistence(facts)}",
        f"memory         {_memory(facts, settings.history_max_mb)}",
        f"history        {history}",
        f"budgets        {_budgets(settings, facts)}",
        f"connections    {needed} needed ({_need(formation)}) of maxclients "
        f"{facts.maxclients or 'unknown'}; {facts.connected_clients} open now",
    ]
    return server.problems(facts, needed), lines


def _inspect_when_up(connection: redis.Redis, wait_seconds: float) -> server.ServerFacts:
    """Inspect the server, retrying connection errors for up to wait_seconds."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return server.inspect_server(connection)
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


def _persistence(facts: server.ServerFacts) -> str:
    if facts.persistent is None:
        return "AOF off, RDB unknown (CONFIG is disabled here: ask the host)"
    rdb = "on" if facts.rdb_enabled else "off"
    return f"AOF {'on' if facts.aof_enabled else 'off'}, RDB {rdb}"


def _memory(facts: server.ServerFacts, history_max_mb: int) -> str:
    used = server.mebibytes(facts.used_memory_bytes)
    history = server.mebibytes(server.history_budget_bytes(facts.maxmemory_bytes, history_max_mb))
    room = server.queued_room(facts)
    if room is None:
        return f"{used} used, no maxmemory; delivered history kept within {history}"
    return (
        f"{used} used of {server.mebibytes(facts.maxmemory_bytes)}: delivered history kept"
        f" within {history}, room for about {room:,} more queued deliveries"
        f" ({server.QUEUED_DELIVERY_BYTES:,} B each)"
    )


def _history(store: Store, settings: Settings, facts: server.ServerFacts) -> str:
    """Say what fills delivered history's budget: records, their index, contact links."""
    budget = server.history_budget_bytes(facts.maxmemory_bytes, settings.history_max_mb)
    cost = store.history.cost(org.id for org in settings.orgs)
    mib = server.mebibytes
    return (
        f"{mib(cost.total)} of its {mib(budget)}: {cost.delivered:,} delivered records"
        f" {mib(cost.records_bytes)}, index {mib(cost.index_bytes)},"
        f" contact links {mib(cost.contacts_bytes)}"
    )


def _budgets(settings: Settings, facts: server.ServerFacts) -> str:
    """Say each organization's byte budget and where ingest starts spooling."""
    per_org = settings.max_pending_bytes_per_org or int(
        facts.maxmemory_bytes * settings.pending_bytes_share / len(settings.orgs)
    )
    if not facts.maxmemory_bytes:
        budget = f"{server.mebibytes(per_org)}" if per_org else "no byte budget"
        return f"{budget} per organization; no maxmemory, so no headroom to keep"
    spools_at = server.mebibytes(int(facts.maxmemory_bytes * (1 - settings.redis_headroom)))
    return (
        f"{server.mebibytes(per_org)} of undelivered messages per organization; ingest spools"
        f" past {spools_at} used ({settings.redis_headroom:.0%} kept free for delivery)"
    )


def _need(formation: server.Formation) -> str:
    f = formation
    web = f"web {f.web_instances} x {f.web_processes} x {server.web_process_connections(f)}"
    worker = f"worker {f.worker_instances} x {server.worker_process_connections(f)}"
    return f"{web}, {worker}, one-off {server.ONE_OFF_CONNECTIONS}"


def _check_dmtracker(settings: Settings) -> tuple[list[str], list[str]]:
    from workers.dmtracker import DmTrackerClient

    client = DmTrackerClient(
        settings.dmtracker_base_url,
        connect_timeout_seconds=settings.http_connect_timeout_seconds,
        read_timeout_seconds=CHECK_READ_TIMEOUT_SECONDS,
    )
    try:
        reply = client.probe()
    finally:
        client.close()
    where = settings.dmtracker_base_url
    if reply.status is None:
        return [f"DmTracker unreachable at {where}: {reply.error}"], []
    return [], [f"dmtracker      {where} answered HTTP {reply.status} in {reply.latency_ms:.0f} ms"]


def _token(args: argparse.Namespace) -> int:
    # Only the secret is needed to sign: no Redis, no organizations.
    secret = read_setting("secret_key", os.environ)
    try:
        scopes = list(dict.fromkeys(args.scopes))
        print(tokens.mint(secret, scopes, tokens.parse_ttl(args.ttl), args.subject))
    except ValueError as error:
        print(f"dmrelay: {error}", file=sys.stderr)
        return 2
    return 0


def _store(settings: Settings) -> Store:
    return Store(
        connect(
            settings.redis_url,
            defaults.CLI_REDIS_CONNECTIONS,
            "dmrelay-cli",
            settings.redis_ca_cert,
        )
    )


def _query(args: argparse.Namespace) -> DeliveryQuery:
    given = {row.field: getattr(args, row.field, None) for row in DEAD_LETTER_FILTERS}
    return query_of({field: value for field, value in given.items() if value is not None})


def _dl_list(args: argparse.Namespace) -> int:
    store = _store(load_settings())
    query = _query(args)
    if args.take is not None:  # one page: without a filter, only the page is read
        found: Iterable[Delivery] = search_dead_letters(store, query, args.skip, args.take)[0]
    else:  # every one, streamed a batch at a time
        found = itertools.islice(iter_dead_letters(store, query), args.skip, None)
    for delivery in found:
        last = delivery.last_attempt
        print(
            json.dumps(
                {
                    "id": delivery.id,
                    "org_id": delivery.org_id,
                    "endpoint": delivery.endpoint,
                    "state": delivery.state,
                    "status": last.status if last else None,
                    "reason": delivery.reason,
                    "attempts": delivery.attempt_count,
                    "dead_at": datetime.fromtimestamp(delivery.finished_at or 0, UTC).isoformat(),
                }
            )
        )
    return 0


def _dl_replay(args: argparse.Namespace) -> int:
    if not args.id:
        return _dl_apply(args, deadletter_actions.replay, "replayed")
    try:
        replayed = _store(load_settings()).dead.replay(args.id)
    except FieldError as error:
        print(f"dmrelay: {args.id} is still held: {error.message}", file=sys.stderr)
        print(f"edit its body first: dmrelay dead-letters edit {args.id}", file=sys.stderr)
        return 1
    if not replayed:
        print(f"dmrelay: no dead letter {args.id}", file=sys.stderr)
        return 1
    print(f"replayed 1 dead letter(s)\n{args.id}")
    return 0


def _dl_purge(args: argparse.Namespace) -> int:
    return _dl_apply(args, deadletter_actions.purge, "purged")


def _dl_edit(args: argparse.Namespace) -> int:
    try:
        with open(args.body if args.body != "-" else 0, encoding="utf-8") as source:
            payload = json.load(source)
    except (OSError, ValueError) as error:
        print(f"dmrelay: cannot read a JSON body from {args.body}: {error}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print("dmrelay: the body must be a JSON object", file=sys.stderr)
        return 2
    settings = load_settings()
    editor = f"{getpass.getuser()} (dmrelay dead-letters edit)"
    try:
        edited = deadletter_actions.edit_payload(
            _store(settings), args.id, payload, editor, settings.secrets()
        )
    except FieldError as error:
        print(f"dmrelay: not changed: {error.message}", file=sys.stderr)
        return 1
    if edited is None:
        print(f"dmrelay: no held or dead letter {args.id}", file=sys.stderr)
        return 1
    print(f"edited {args.id}; replay it with: dmrelay dead-letters replay {args.id}")
    return 0


def _dl_apply(args: argparse.Namespace, operation: Callable, verb: str) -> int:
    store = _store(load_settings())
    chosen = [args.id] if args.id else deadletter_actions.matching_ids(store, _query(args))
    ids = operation(store, chosen)
    if args.id and not ids:
        print(f"dmrelay: no dead letter {args.id}", file=sys.stderr)
        return 1
    print(f"{verb} {len(ids)} dead letter(s)")
    for delivery_id in ids:
        print(delivery_id)
    return 0


def _pause(args: argparse.Namespace) -> int:
    return _gate_action(args.org, paused=True)


def _resume(args: argparse.Namespace) -> int:
    return _gate_action(args.org, paused=False)


def _gate_action(org_id: str, *, paused: bool) -> int:
    """Pause or resume one configured organization; say what it was already."""
    settings = load_settings()
    if settings.org_by_id(org_id) is None:
        print(f"dmrelay: the relay serves no organization {org_id}", file=sys.stderr)
        return 1
    store = _store(settings)
    try:
        changed = store.gates.pause(org_id) if paused else store.gates.resume(org_id)
    finally:
        store.redis.connection_pool.disconnect()
    verb = "paused" if paused else "resumed"
    print(f"{verb} {org_id}" if changed else f"{org_id} was {verb} already")
    return 0


def _alerts_test(args: argparse.Namespace) -> int:
    """Send a test alert to every configured channel; non-zero when one failed or none is set."""
    settings = load_settings()
    notifier = Notifier(settings)
    if not notifier.channels:
        print("dmrelay: no alert channel is configured", file=sys.stderr)
        return 1
    store = _store(settings)
    try:
        results = send_test_alert(store, notifier, "dmrelay alerts test")
    finally:
        store.redis.connection_pool.disconnect()
    for result in results:
        print(f"{result['channel']}: {'sent' if result['ok'] else 'failed: ' + result['error']}")
    return 0 if all(result["ok"] for result in results) else 1
