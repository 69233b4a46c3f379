"""Configuration, read once from the environment into a frozen Settings object.

Each setting is declared once, a field of Settings (see `setting`); load_settings, gunicorn_conf.py
and `dmrelay check` read the declarations, and a test holds the README's table to them."""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from relay import config_readers as read
from relay.config_readers import REQUIRED, Org, answer_wait_defaults, setting
from relay.core.errors import ConfigError

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes need to know, fixed at start-up."""

    redis_url: str = setting(REQUIRED, "`redis://…`, or `rediss://…` for TLS", env="REDIS_URL")
    secret_key: str = setting(
        REQUIRED,
        "signs admin tokens and dashboard sessions; 32 characters or more",
        reader=read.secret_key,
        secret=True,
    )
    orgs: tuple[Org, ...] = setting(
        REQUIRED,
        'JSON array of `{"id": "<org uuid>", "token": "<org auth token>", "page_name":'
        ' "<optional>"}`, each token 16 characters or more; or `DMRELAY_ORGS_FILE`: its path',
        reader=read.orgs,
        file_env="DMRELAY_ORGS_FILE",
    )
    port: int = setting(8000, "web port (gunicorn binds `0.0.0.0:$PORT`)", env="PORT", minimum=1)
    web_processes: int = setting(2, "gunicorn worker processes", env="WEB_CONCURRENCY", minimum=1)
    web_threads: int = setting(8, "threads of each gunicorn worker", minimum=1)
    dmtracker_base_url: str = setting(
        "https://app.dmtracker.ai/api/v1",
        "DmTracker's API",
        env="DMTRACKER_BASE_URL",
        reader=read.url,
    )
    redis_ca_cert: str | None = setting(
        None,
        "`rediss://` only: a CA certificate (PEM text, or the path of a PEM file) to verify"
        " the Redis server and its host name against",
        reader=read.ca_cert,
        secret=True,
    )
    metrics_token: str | None = setting(
        None,
        "bearer token for `/metrics` (an admin token works too), 16 characters or more",
        reader=read.long_secret,
        secret=True,
    )
    sentry_dsn: str | None = setting(
        None, "errors go to Sentry (`pip install 'dmrelay[sentry]'`)", env="SENTRY_DSN", secret=True
    )
    dedup_window_seconds: int = setting(
        300, "duplicate window; 0 turns content dedup off (`Idempotency-Key` still holds)"
    )
    max_pending_deliveries: int = setting(
        100_000, "undelivered messages kept in all; beyond it ingest answers 503 (0: no limit)"
    )
    max_pending_per_org: int = setting(
        50_000, "the same per organization: beyond it only its requests answer 503 (0: no limit)"
    )
    # Generous: the limit is there to stop a runaway ManyChat loop, not a busy broadcast.
    ingest_rate_per_org: float = setting(
        100.0, "requests/s per organization and web process, bursts of 10 s worth (0: no limit)"
    )
    ingest_redis_deadline_seconds: float = setting(
        2.0, "time a request may spend on Redis in all; past it, it is spooled", strict=True
    )
    spool_dir: str = setting("/tmp/dmrelay-spool", "the local spool's folder")  # noqa: S108
    spool_max_bytes: int = setting(256 * 2**20, "the local spool's size bound", minimum=1)
    # After an outage, deliveries accepted since it began wait for every host's spool to drain.
    settle_seconds: float = setting(
        10.0, "how long deliveries accepted during a Redis outage wait for the spools to drain"
    )
    clock_skew_seconds: float = setting(
        5.0, "how far hosts' clocks may differ and still keep a contact's order through an outage"
    )
    # 35 attempts of full-jitter exponential backoff span about a day on average.
    max_attempts: int = setting(
        35, "attempts before a dead letter; `dmrelay schedule` prints the waits", minimum=1
    )
    backoff_base_seconds: float = setting(
        2.0, "longest wait after the first failed attempt; it doubles after each", strict=True
    )
    backoff_cap_seconds: float = setting(7200.0, "longest wait between two attempts", strict=True)
    http_connect_timeout_seconds: float = setting(3.05, "DmTracker connect timeout", strict=True)
    http_read_timeout_seconds: float = setting(10.0, "DmTracker read timeout", strict=True)
    rate_limits_per_minute: Mapping[str, int] = setting(
        read.rate_limit_defaults,
        'JSON of requests per minute per organization by endpoint, e.g. `{"update-tags": 120}`',
        env="DMRELAY_RATE_LIMITS",
        reader=read.rate_limits,
    )
    answer_wait_seconds: Mapping[str, float] = setting(
        answer_wait_defaults,
        "how long ingest waits for DmTracker's answer (0 to 8 s): one number, or JSON by endpoint",
        reader=read.answer_waits,
    )
    worker_concurrency: int = setting(32, "deliveries in flight per worker process", minimum=1)
    # Redis connections per process: a mini plan allows 20 for the whole formation.
    web_redis_connections: int = setting(
        4, "Redis connections each web process may hold, shared by its threads", minimum=1
    )
    worker_redis_connections: int = setting(
        5, "Redis connections each worker process may hold", minimum=1
    )
    worker_heartbeat_ttl_seconds: int = setting(
        30, "crash detection: a worker silent this long has its deliveries taken back", minimum=3
    )
    worker_shutdown_grace_seconds: float = setting(
        20.0, "how long a stopping worker's deliveries in flight may take to finish", strict=True
    )
    delivered_retention_seconds: int = setting(7 * DAY_SECONDS, "how long delivered records stay")
    dead_letter_retention_seconds: int = setting(30 * DAY_SECONDS, "how long dead letters stay")
    history_max_mb: int = setting(
        64, "delivered history's budget if Redis has no `maxmemory` (else 1/4 of it)", minimum=1
    )
    max_retry_after_seconds: float = setting(
        3600.0, "longest wait a 429's `retry_after` / `Retry-After` is honoured for"
    )
    throttle_budget_seconds: float = setting(
        float(DAY_SECONDS),
        "how long 429s may go on before the delivery is dead-lettered",
        strict=True,
    )
    full_record_sample_rate: float = setting(
        0.01, "share (0 to 1) of delivered messages that keep their full record, not a summary"
    )
    # Proxies in front of the web process that each append the address they saw; 0: the
    # socket's peer is the client.
    trusted_proxies: int = setting(
        0, "proxies whose `X-Forwarded-For` entries are believed; Heroku 1, Render 2"
    )
    # Budgets (docs/budgets.md): what a slow client, a large body, a long wait, a full Redis take.
    read_deadline_seconds: float = setting(
        10.0, "time a connection has to send a whole request; later it is answered 408", strict=True
    )
    max_answer_wait_seconds: Mapping[str, float] = setting(
        read.max_answer_wait_defaults,
        "longest `?wait=` a client may ask for (it caps the answer waits): one number, or JSON",
        reader=read.max_answer_waits,
    )
    org_wait_share: float = setting(
        0.5, "share of a web process's waiting slots the organizations waiting divide", strict=True
    )
    max_pending_bytes_per_org: int = setting(
        0, "bytes of undelivered messages per organization, then 503 (0: from `maxmemory`)"
    )
    pending_bytes_share: float = setting(
        0.5, "share of `maxmemory` the organizations' undelivered bytes divide among them"
    )
    redis_headroom: float = setting(
        0.1, "share of `maxmemory` ingest leaves free for the workers; past it, it spools"
    )
    # Pause, circuit breaker and alerts (docs/alerts.md).
    breaker_failures: int = setting(
        20, "transient failures in a row that open an organization's breaker", minimum=1
    )
    breaker_window_seconds: float = setting(120.0, "the window of those failures", strict=True)
    breaker_probe_seconds: float = setting(30.0, "while open, one probe every", strict=True)
    breaker_probe_max_seconds: float = setting(300.0, "the probes' spacing's cap", strict=True)
    alert_webhook_url: str | None = setting(  # Slack's holds a secret
        None,
        "alerts are POSTed here as Slack-compatible JSON",
        reader=read.checked_url,
        secret=True,
    )
    alert_smtp_url: str | None = setting(  # holds the password
        None,
        "alerts by e-mail: `smtp://user:password@host:587` or `smtps://…:465`",
        reader=read.smtp_url,
        secret=True,
    )
    alert_email_to: tuple[str, ...] = setting(
        (), "the e-mail alerts' recipients, comma-separated", reader=read.addresses
    )
    alert_email_from: str = setting("dmrelay@localhost", "the e-mail alerts' sender")
    alert_digest_minutes: float = setting(15.0, "at most one digest of dead letters this often")
    alert_backlog_minutes: float = setting(30.0, "alert when a delivery waits longer", strict=True)
    public_url: str | None = setting(None, "the relay's URL, for links in alerts", reader=read.url)

    def secrets(self) -> tuple[str, ...]:
        """Return every secret value, so reports and logs can mask them."""
        values = (*(org.token for org in self.orgs), self.secret_key, self.metrics_token or "")
        alerting = (self.alert_webhook_url or "", self.alert_smtp_url or "")
        return tuple(value for value in (*values, *alerting) if value)

    def org_by_id(self, org_id: str) -> Org | None:
        """Return the configured organization with this id, if any."""
        return next((org for org in self.orgs if org.id == org_id), None)


DECLARED: dict[str, Field[Any]] = {f.name: f for f in fields(Settings)}
KINDS = typing.get_type_hints(Settings)
ENV = {name: f.metadata["env"] or f"DMRELAY_{name.upper()}" for name, f in DECLARED.items()}
# Every variable the relay reads, in the order of the declarations.
VARIABLES = tuple(v for f in DECLARED.values() for v in (ENV[f.name], f.metadata["file_env"]) if v)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every variable; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    values = {name: read_setting(name, env) for name in DECLARED}
    if values["redis_ca_cert"] and not values["redis_url"].startswith("rediss://"):
        raise ConfigError("DMRELAY_REDIS_CA_CERT", "applies only to a rediss:// REDIS_URL")
    most, waits = values["max_answer_wait_seconds"], values["answer_wait_seconds"]
    values["answer_wait_seconds"] = {key: min(wait, most[key]) for key, wait in waits.items()}
    if values["alert_smtp_url"] and not values["alert_email_to"]:
        raise ConfigError("DMRELAY_ALERT_EMAIL_TO", "is not set (DMRELAY_ALERT_SMTP_URL is)")
    return Settings(**values)


def read_setting(name: str, env: Mapping[str, str]) -> Any:
    """Return one field's setting, or its default when unset; raise ConfigError if bad."""
    spec = DECLARED[name].metadata
    variable, raw = ENV[name], env.get(ENV[name], "").strip()
    if not raw and spec["file_env"] and env.get(spec["file_env"]):
        variable, raw = spec["file_env"], read.read_file(spec["file_env"], env[spec["file_env"]])
    if not raw:
        if default_of(name) is REQUIRED:
            alternative = f" (nor {spec['file_env']})" if spec["file_env"] else ""
            raise ConfigError(ENV[name], f"is not set{alternative}")
        return default_of(name)
    if spec["reader"] is not None:
        return spec["reader"](variable, raw)
    kind = KINDS[name]
    return read.number(variable, raw, kind, spec) if kind in (int, float) else raw


def default_of(name: str) -> Any:
    """Return a field's declared default (REQUIRED when it has none)."""
    declared = DECLARED[name]
    if declared.default_factory is not MISSING:
        return declared.default_factory()
    return declared.default
