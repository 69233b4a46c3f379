"""Configuration, read once from the environment into a frozen Settings object."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.core import defaults
from relay.core.endpoints import ENDPOINTS
from relay.core.errors import ConfigError

MIN_SECRET_KEY_CHARS = 32  # HS256 wants a key of at least 256 bits
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class Org:
    """One organization the relay serves; its token never shows in a repr."""

    id: str
    token: str = field(repr=False)
    page_name: str | None = None


def answer_wait_defaults() -> dict[str, float]:
    """Return each endpoint's default wait for DmTracker's answer, in seconds."""
    return {e.name: float(e.answer_wait_seconds) for e in ENDPOINTS.values()}


def max_answer_wait_defaults() -> dict[str, float]:
    """Return the longest wait a client may ask for on each endpoint, in seconds."""
    return dict.fromkeys(ENDPOINTS, defaults.MAX_ANSWER_WAIT_SECONDS)


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes need to know, fixed at start-up."""

    redis_url: str
    secret_key: str = field(repr=False)
    orgs: tuple[Org, ...]
    dmtracker_base_url: str = defaults.DMTRACKER_BASE_URL
    redis_ca_cert: str | None = field(default=None, repr=False)  # PEM text
    metrics_token: str | None = field(default=None, repr=False)
    sentry_dsn: str | None = field(default=None, repr=False)
    dedup_window_seconds: int = defaults.DEDUP_WINDOW_SECONDS
    max_pending_deliveries: int = defaults.MAX_PENDING_DELIVERIES
    max_pending_per_org: int = defaults.MAX_PENDING_PER_ORG
    ingest_rate_per_org: float = defaults.INGEST_RATE_PER_ORG_PER_SECOND
    ingest_redis_deadline_seconds: float = defaults.INGEST_REDIS_DEADLINE_SECONDS
    spool_dir: str = defaults.SPOOL_DIR
    spool_max_bytes: int = defaults.SPOOL_MAX_BYTES
    settle_seconds: float = defaults.SETTLE_SECONDS
    clock_skew_seconds: float = defaults.CLOCK_SKEW_SECONDS
    max_attempts: int = defaults.MAX_ATTEMPTS
    backoff_base_seconds: float = defaults.BACKOFF_BASE_SECONDS
    backoff_cap_seconds: float = defaults.BACKOFF_CAP_SECONDS
    http_connect_timeout_seconds: float = defaults.HTTP_CONNECT_TIMEOUT_SECONDS
    http_read_timeout_seconds: float = defaults.HTTP_READ_TIMEOUT_SECONDS
    rate_limits_per_minute: Mapping[str, int] = field(default_factory=dict)
    answer_wait_seconds: Mapping[str, float] = field(default_factory=answer_wait_defaults)
    worker_concurrency: int = defaults.WORKER_CONCURRENCY
    web_redis_connections: int = defaults.WEB_REDIS_CONNECTIONS
    worker_redis_connections: int = defaults.WORKER_REDIS_CONNECTIONS
    web_processes: int = defaults.WEB_PROCESSES
    web_threads: int = defaults.WEB_THREADS
    worker_heartbeat_ttl_seconds: int = defaults.WORKER_HEARTBEAT_TTL_SECONDS
    worker_shutdown_grace_seconds: float = defaults.WORKER_SHUTDOWN_GRACE_SECONDS
    delivered_retention_seconds: int = defaults.DELIVERED_RETENTION_SECONDS
    dead_letter_retention_seconds: int = defaults.DEAD_LETTER_RETENTION_SECONDS
    history_max_mb: int = defaults.HISTORY_MAX_MB
    max_retry_after_seconds: float = defaults.MAX_RETRY_AFTER_SECONDS
    throttle_budget_seconds: float = defaults.THROTTLE_BUDGET_SECONDS
    full_record_sample_rate: float = defaults.FULL_RECORD_SAMPLE_RATE
    trusted_proxies: int = defaults.TRUSTED_PROXIES
    # Budgets: what a slow client, a large body, a long wait and a full Redis may take.
    read_deadline_seconds: float = defaults.READ_DEADLINE_SECONDS
    max_answer_wait_seconds: Mapping[str, float] = field(default_factory=max_answer_wait_defaults)
    org_wait_share: float = defaults.ORG_WAIT_SHARE
    max_pending_bytes_per_org: int = 0  # 0: pending_bytes_share of maxmemory, divided
    pending_bytes_share: float = defaults.PENDING_BYTES_SHARE_OF_MAXMEMORY
    redis_headroom: float = defaults.REDIS_HEADROOM
    # Pause, circuit breaker and alerts.
    breaker_failures: int = defaults.BREAKER_FAILURES
    breaker_window_seconds: float = defaults.BREAKER_WINDOW_SECONDS
    breaker_probe_seconds: float = defaults.BREAKER_PROBE_SECONDS
    breaker_probe_max_seconds: float = defaults.BREAKER_PROBE_MAX_SECONDS
    alert_webhook_url: str | None = field(default=None, repr=False)  # Slack's holds a secret
    alert_smtp_url: str | None = field(default=None, repr=False)  # holds the password
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str = defaults.ALERT_EMAIL_FROM
    alert_digest_minutes: float = defaults.ALERT_DIGEST_MINUTES
    alert_backlog_minutes: float = defaults.ALERT_BACKLOG_MINUTES
    public_url: str | None = None  # where the dashboard is served, for links in alerts

    def secrets(self) -> tuple[str, ...]:
        """Return every secret value, so reports and logs can mask them."""
        values = (*(org.token for org in self.orgs), self.secret_key, self.metrics_token or "")
        alerting = (self.alert_webhook_url or "", self.alert_smtp_url or "")
        return tuple(value for value in (*values, *alerting) if value)

    def org_by_id(self, org_id: str) -> Org | None:
        """Return the configured organization with this id, if any."""
        return next((org for org in self.orgs if org.id == org_id), None)


@dataclass(frozen=True)
class Number:
    """One numeric environment variable: the Settings field it fills, its default and bound."""

    env: str
    field: str
    kind: type[int] | type[float]
    default: float
    minimum: float = 0
    strict: bool = False  # the value must be above the minimum, not equal to it

    def read(self, env: Mapping[str, str]) -> float:
        """Return the variable's value, or its default when unset; raise ConfigError if bad."""
        raw = env.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = self.kind(raw)
        except ValueError:
            noun = "a whole number" if self.kind is int else "a number"
            raise ConfigError(self.env, f"must be {noun}, got {raw!r}") from None
        if not math.isfinite(value):  # float() takes "inf" and "nan", which no bound holds
            raise ConfigError(self.env, f"must be a finite number, got {raw!r}")
        if value < self.minimum or (self.strict and value == self.minimum):
            relation = "greater than" if self.strict else "at least"
            raise ConfigError(self.env, f"must be {relation} {self.kind(self.minimum)}")
        return value


# Every numeric setting, once: name, field, type, default and bound. The README's
# configuration table is checked against this table and VARIABLES by a test.
NUMBERS = (
    Number(
        "DMRELAY_DEDUP_WINDOW_SECONDS", "dedup_window_seconds", int, defaults.DEDUP_WINDOW_SECONDS
    ),
    Number(
        "DMRELAY_MAX_PENDING_DELIVERIES",
        "max_pending_deliveries",
        int,
        defaults.MAX_PENDING_DELIVERIES,
    ),
    Number("DMRELAY_MAX_PENDING_PER_ORG", "max_pending_per_org", int, defaults.MAX_PENDING_PER_ORG),
    Number(
        "DMRELAY_INGEST_RATE_PER_ORG",
        "ingest_rate_per_org",
        float,
        defaults.INGEST_RATE_PER_ORG_PER_SECOND,
    ),
    Number(
        "DMRELAY_INGEST_REDIS_DEADLINE_SECONDS",
        "ingest_redis_deadline_seconds",
        float,
        defaults.INGEST_REDIS_DEADLINE_SECONDS,
        strict=True,
    ),
    Number("DMRELAY_SPOOL_MAX_BYTES", "spool_max_bytes", int, defaults.SPOOL_MAX_BYTES, 1),
    Number("DMRELAY_SETTLE_SECONDS", "settle_seconds", float, defaults.SETTLE_SECONDS),
    Number("DMRELAY_CLOCK_SKEW_SECONDS", "clock_skew_seconds", float, defaults.CLOCK_SKEW_SECONDS),
    Number("DMRELAY_MAX_ATTEMPTS", "max_attempts", int, defaults.MAX_ATTEMPTS, 1),
    Number(
        "DMRELAY_BACKOFF_BASE_SECONDS",
        "backoff_base_seconds",
        float,
        defaults.BACKOFF_BASE_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_BACKOFF_CAP_SECONDS",
        "backoff_cap_seconds",
        float,
        defaults.BACKOFF_CAP_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_HTTP_CONNECT_TIMEOUT_SECONDS",
        "http_connect_timeout_seconds",
        float,
        defaults.HTTP_CONNECT_TIMEOUT_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_HTTP_READ_TIMEOUT_SECONDS",
        "http_read_timeout_seconds",
        float,
        defaults.HTTP_READ_TIMEOUT_SECONDS,
        strict=True,
    ),
    Number("DMRELAY_WORKER_CONCURRENCY", "worker_concurrency", int, defaults.WORKER_CONCURRENCY, 1),
    Number("WEB_CONCURRENCY", "web_processes", int, defaults.WEB_PROCESSES, 1),
    Number("DMRELAY_WEB_THREADS", "web_threads", int, defaults.WEB_THREADS, 1),
    Number(
        "DMRELAY_WEB_REDIS_CONNECTIONS",
        "web_redis_connections",
        int,
        defaults.WEB_REDIS_CONNECTIONS,
        1,
    ),
    Number(
        "DMRELAY_WORKER_REDIS_CONNECTIONS",
        "worker_redis_connections",
        int,
        defaults.WORKER_REDIS_CONNECTIONS,
        1,
    ),
    Number(
        "DMRELAY_WORKER_HEARTBEAT_TTL_SECONDS",
        "worker_heartbeat_ttl_seconds",
        int,
        defaults.WORKER_HEARTBEAT_TTL_SECONDS,
        3,
    ),
    Number(
        "DMRELAY_WORKER_SHUTDOWN_GRACE_SECONDS",
        "worker_shutdown_grace_seconds",
        float,
        defaults.WORKER_SHUTDOWN_GRACE_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_DELIVERED_RETENTION_SECONDS",
        "delivered_retention_seconds",
        int,
        defaults.DELIVERED_RETENTION_SECONDS,
    ),
    Number(
        "DMRELAY_DEAD_LETTER_RETENTION_SECONDS",
        "dead_letter_retention_seconds",
        int,
        defaults.DEAD_LETTER_RETENTION_SECONDS,
    ),
    Number("DMRELAY_HISTORY_MAX_MB", "history_max_mb", int, defaults.HISTORY_MAX_MB, 1),
    Number(
        "DMRELAY_MAX_RETRY_AFTER_SECONDS",
        "max_retry_after_seconds",
        float,
        defaults.MAX_RETRY_AFTER_SECONDS,
    ),
    Number(
        "DMRELAY_THROTTLE_BUDGET_SECONDS",
        "throttle_budget_seconds",
        float,
        defaults.THROTTLE_BUDGET_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_FULL_RECORD_SAMPLE_RATE",
        "full_record_sample_rate",
        float,
        defaults.FULL_RECORD_SAMPLE_RATE,
    ),
    Number("DMRELAY_TRUSTED_PROXIES", "trusted_proxies", int, defaults.TRUSTED_PROXIES),
    # Budgets (docs/budgets.md).
    Number(
        "DMRELAY_READ_DEADLINE_SECONDS",
        "read_deadline_seconds",
        float,
        defaults.READ_DEADLINE_SECONDS,
        strict=True,
    ),
    Number("DMRELAY_ORG_WAIT_SHARE", "org_wait_share", float, defaults.ORG_WAIT_SHARE, strict=True),
    Number("DMRELAY_MAX_PENDING_BYTES_PER_ORG", "max_pending_bytes_per_org", int, 0),
    Number(
        "DMRELAY_PENDING_BYTES_SHARE",
        "pending_bytes_share",
        float,
        defaults.PENDING_BYTES_SHARE_OF_MAXMEMORY,
    ),
    Number("DMRELAY_REDIS_HEADROOM", "redis_headroom", float, defaults.REDIS_HEADROOM),
    # Pause, circuit breaker and alerts.
    Number("DMRELAY_BREAKER_FAILURES", "breaker_failures", int, defaults.BREAKER_FAILURES, 1),
    Number(
        "DMRELAY_BREAKER_WINDOW_SECONDS",
        "breaker_window_seconds",
        float,
        defaults.BREAKER_WINDOW_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_BREAKER_PROBE_SECONDS",
        "breaker_probe_seconds",
        float,
        defaults.BREAKER_PROBE_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_BREAKER_PROBE_MAX_SECONDS",
        "breaker_probe_max_seconds",
        float,
        defaults.BREAKER_PROBE_MAX_SECONDS,
        strict=True,
    ),
    Number(
        "DMRELAY_ALERT_DIGEST_MINUTES",
        "alert_digest_minutes",
        float,
        defaults.ALERT_DIGEST_MINUTES,
    ),
    Number(
        "DMRELAY_ALERT_BACKLOG_MINUTES",
        "alert_backlog_minutes",
        float,
        defaults.ALERT_BACKLOG_MINUTES,
        strict=True,
    ),
)

# Every variable the relay reads: the numbers above and those with readers of their own.
VARIABLES = (
    "PORT",
    "REDIS_URL",
    "DMRELAY_REDIS_CA_CERT",
    "DMTRACKER_BASE_URL",
    "DMRELAY_ORGS",
    "DMRELAY_ORGS_FILE",
    "DMRELAY_SECRET_KEY",
    "DMRELAY_METRICS_TOKEN",
    "SENTRY_DSN",
    "DMRELAY_RATE_LIMITS",
    "DMRELAY_ANSWER_WAIT_SECONDS",
    "DMRELAY_SPOOL_DIR",
    "DMRELAY_MAX_ANSWER_WAIT_SECONDS",
    "DMRELAY_ALERT_WEBHOOK_URL",
    "DMRELAY_ALERT_SMTP_URL",
    "DMRELAY_ALERT_EMAIL_TO",
    "DMRELAY_ALERT_EMAIL_FROM",
    "DMRELAY_PUBLIC_URL",
    *(number.env for number in NUMBERS),
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every variable; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    numbers: dict[str, Any] = {number.field: number.read(env) for number in NUMBERS}
    redis_url = _required(env, "REDIS_URL")
    most = _seconds_per_endpoint(env, "DMRELAY_MAX_ANSWER_WAIT_SECONDS", max_answer_wait_defaults())
    return Settings(
        redis_url=redis_url,
        redis_ca_cert=_ca_cert(env, redis_url),
        secret_key=read_secret_key(env),
        orgs=load_orgs(env),
        dmtracker_base_url=_url(env, "DMTRACKER_BASE_URL", defaults.DMTRACKER_BASE_URL),
        metrics_token=read_metrics_token(env),
        sentry_dsn=env.get("SENTRY_DSN") or None,
        rate_limits_per_minute=_rate_limits(env),
        answer_wait_seconds={k: min(v, most[k]) for k, v in _answer_waits(env).items()},
        max_answer_wait_seconds=most,
        spool_dir=env.get("DMRELAY_SPOOL_DIR", "").strip() or defaults.SPOOL_DIR,
        **_alerting(env),
        **numbers,
    )


def _alerting(env: Mapping[str, str]) -> dict[str, Any]:
    """Read the alert channels: a webhook, SMTP with its recipients, the dashboard's address."""
    webhook = env.get("DMRELAY_ALERT_WEBHOOK_URL", "").strip() or None
    if webhook:
        _url(env, "DMRELAY_ALERT_WEBHOOK_URL", webhook)
    smtp = env.get("DMRELAY_ALERT_SMTP_URL", "").strip() or None
    if smtp and not smtp.startswith(("smtp://", "smtps://")):
        raise ConfigError("DMRELAY_ALERT_SMTP_URL", "must be an smtp:// or smtps:// URL")
    to = tuple(a.strip() for a in env.get("DMRELAY_ALERT_EMAIL_TO", "").split(",") if a.strip())
    if smtp and not to:
        raise ConfigError("DMRELAY_ALERT_EMAIL_TO", "is not set (DMRELAY_ALERT_SMTP_URL is)")
    public = env.get("DMRELAY_PUBLIC_URL", "").strip()
    return {
        "alert_webhook_url": webhook,
        "alert_smtp_url": smtp,
        "alert_email_to": to,
        "alert_email_from": env.get("DMRELAY_ALERT_EMAIL_FROM", "").strip()
        or defaults.ALERT_EMAIL_FROM,
        "public_url": _url(env, "DMRELAY_PUBLIC_URL", public) if public else None,
    }


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is not set")
    return value


def read_secret_key(env: Mapping[str, str]) -> str:
    """Read DMRELAY_SECRET_KEY, long enough to sign admin tokens."""
    name = "DMRELAY_SECRET_KEY"
    value = _required(env, name)
    if len(value) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(name, f"must be at least {MIN_SECRET_KEY_CHARS} characters long")
    return value


def read_metrics_token(env: Mapping[str, str]) -> str | None:
    """Read the optional DMRELAY_METRICS_TOKEN, long enough never to match ordinary text."""
    value = env.get("DMRELAY_METRICS_TOKEN") or None
    if value is not None and len(value) < defaults.MIN_SECRET_CHARS:
        raise ConfigError(
            "DMRELAY_METRICS_TOKEN", f"must be at least {defaults.MIN_SECRET_CHARS} characters long"
        )
    return value


def _ca_cert(env: Mapping[str, str], redis_url: str) -> str | None:
    """Read DMRELAY_REDIS_CA_CERT, given as PEM text or as the path of a PEM file."""
    name = "DMRELAY_REDIS_CA_CERT"
    value = env.get(name, "").strip()
    if not value:
        return None
    if not redis_url.startswith("rediss://"):
        raise ConfigError(name, "applies only to a rediss:// REDIS_URL")
    pem = value if value.startswith(PEM_BEGIN) else _read_file(name, value)
    if PEM_BEGIN not in pem:
        raise ConfigError(name, "must be a PEM certificate or the path of one")
    return pem


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(name, "must be an http:// or https:// URL")
    return value.rstrip("/")


def _rate_limits(env: Mapping[str, str]) -> dict[str, int]:
    name = "DMRELAY_RATE_LIMITS"
    limits = {e.name: e.rate_limited_per_minute for e in ENDPOINTS.values()}
    raw = env.get(name, "").strip()
    overrides = _json(name, raw) if raw else {}
    if not isinstance(overrides, dict) or not all(
        key in ENDPOINTS and (value is None or (isinstance(value, int) and value > 0))
        for key, value in overrides.items()
    ):
        raise ConfigError(
            name, f"must map endpoint names ({', '.join(ENDPOINTS)}) to requests per minute"
        )
    limits.update(overrides)
    return {key: value for key, value in limits.items() if value}


def _answer_waits(env: Mapping[str, str]) -> dict[str, float]:
    """Read DMRELAY_ANSWER_WAIT_SECONDS: one number for every endpoint, or JSON per endpoint."""
    return _seconds_per_endpoint(env, "DMRELAY_ANSWER_WAIT_SECONDS", answer_wait_defaults())


def _seconds_per_endpoint(
    env: Mapping[str, str], name: str, waits: dict[str, float]
) -> dict[str, float]:
    """Read a wait from 0 to 8 s: one number for every endpoint, or JSON per endpoint."""
    raw = env.get(name, "").strip()
    if not raw:
        return waits
    given = _number(raw)
    overrides = dict.fromkeys(waits, given) if given is not None else _json(name, raw)
    cap = defaults.MAX_ANSWER_WAIT_SECONDS
    if not isinstance(overrides, dict) or not all(
        key in ENDPOINTS and _is_number(value) and 0 <= value <= cap
        for key, value in overrides.items()
    ):
        raise ConfigError(
            name,
            f"must be seconds from 0 to {cap:g}, or JSON mapping endpoint names"
            f" ({', '.join(ENDPOINTS)}) to such seconds",
        )
    waits.update({key: float(value) for key, value in overrides.items()})
    return waits


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_orgs(env: Mapping[str, str]) -> tuple[Org, ...]:
    """Read the organizations from DMRELAY_ORGS or DMRELAY_ORGS_FILE."""
    name, raw = "DMRELAY_ORGS", env.get("DMRELAY_ORGS", "").strip()
    if not raw and env.get("DMRELAY_ORGS_FILE"):
        name = "DMRELAY_ORGS_FILE"
        raw = _read_file(name, env["DMRELAY_ORGS_FILE"])
    if not raw:
        raise ConfigError("DMRELAY_ORGS", "is not set (nor DMRELAY_ORGS_FILE)")
    entries = _json(name, raw)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(name, "must be a non-empty JSON array of organizations")
    orgs = tuple(_org(name, index, entry) for index, entry in enumerate(entries))
    _check_unique(name, orgs)
    return orgs


def _org(name: str, index: int, entry: Any) -> Org:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise ConfigError(name, f"{where} must be an object with id and token")
    org_id, token, page_name = entry.get("id"), entry.get("token"), entry.get("page_name")
    try:
        org_id = str(uuid.UUID(str(org_id)))
    except ValueError:
        raise ConfigError(name, f"{where}: 'id' must be an organization UUID") from None
    if not isinstance(token, str) or not token.strip():
        raise ConfigError(name, f"{where}: 'token' must be a non-empty string")
    if len(token.strip()) < defaults.MIN_SECRET_CHARS:
        # Shorter, it could match ordinary words in bodies the relay checks for secrets.
        raise ConfigError(
            name, f"{where}: 'token' must be at least {defaults.MIN_SECRET_CHARS} characters long"
        )
    if page_name is not None and not isinstance(page_name, str):
        raise ConfigError(name, f"{where}: 'page_name' must be a string")
    return Org(id=org_id, token=token.strip(), page_name=page_name or None)


def _check_unique(name: str, orgs: tuple[Org, ...]) -> None:
    for attribute in ("id", "token"):
        values = [getattr(org, attribute) for org in orgs]
        if len(set(values)) != len(values):
            raise ConfigError(name, f"two organizations share the same {attribute}")


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        # Never echo the value: it holds tokens.
        raise ConfigError(
            name, f"is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None


def _read_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(name, f"cannot read {path}: {error.strerror}") from None
