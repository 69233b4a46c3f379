"""How a setting is declared, and the readers of the settings' texts: each reader turns one
variable's text into its value, or raises ConfigError naming the variable (never echoing a
value: some hold tokens)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from relay.core import defaults
from relay.core.endpoints import ENDPOINTS
from relay.core.errors import ConfigError

MIN_SECRET_KEY_CHARS = 32  # HS256 wants a key of at least 256 bits
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
REQUIRED: Any = MISSING
Reader = Callable[[str, str], Any]  # (variable, its text, never empty) -> the value


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,  # DMRELAY_ and the field's name in capitals, unless given
    minimum: float = 0,
    strict: bool = False,  # a number must be above the minimum, not equal to it
    reader: Reader | None = None,  # for what is neither a number nor a plain string
    secret: bool = False,
    file_env: str | None = None,  # a variable naming a file that holds the text instead
) -> Any:
    """Declare one field of Settings; a function as its default builds it for each Settings."""
    metadata = dict(env=env, help=help, minimum=minimum, strict=strict, reader=reader)
    metadata.update(file_env=file_env, secret=secret)
    if callable(default):
        return field(default_factory=default, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Org:
    """One organization the relay serves; its token never shows in a repr."""

    id: str
    token: str = field(repr=False)
    page_name: str | None = None


def answer_wait_defaults() -> dict[str, float]:
    """Return each endpoint's default wait for DmTracker's answer, in seconds."""
    return {e.name: float(e.answer_wait_seconds) for e in ENDPOINTS.values()}


def rate_limit_defaults() -> dict[str, int]:
    """Return the documented requests per minute of each endpoint that has a limit."""
    endpoints = ENDPOINTS.values()
    return {e.name: e.rate_limited_per_minute for e in endpoints if e.rate_limited_per_minute}


def number(name: str, raw: str, kind: type[int] | type[float], bound: Mapping[str, Any]) -> float:
    """Read a number of this kind, at least (or, strict, above) the bound's minimum."""
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(name, f"must be {noun}, got {raw!r}") from None
    if not math.isfinite(value):  # float() takes "inf" and "nan", which no bound holds
        raise ConfigError(name, f"must be a finite number, got {raw!r}")
    minimum, strict = bound["minimum"], bound["strict"]
    if value < minimum or (strict and value == minimum):
        relation = "greater than" if strict else "at least"
        raise ConfigError(name, f"must be {relation} {kind(minimum)}")
    return value


def secret_key(name: str, value: str) -> str:
    """Read a key long enough to sign admin tokens."""
    if len(value) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(name, f"must be at least {MIN_SECRET_KEY_CHARS} characters long")
    return value


def long_secret(name: str, value: str) -> str:
    """Read a token long enough never to match ordinary text."""
    if len(value) < defaults.MIN_SECRET_CHARS:
        raise ConfigError(name, f"must be at least {defaults.MIN_SECRET_CHARS} characters long")
    return value


def url(name: str, value: str) -> str:
    """Read an http(s) URL, without its trailing slash."""
    if not value.startswith(("http://", "https://")):
        raise ConfigError(name, "must be an http:// or https:// URL")
    return value.rstrip("/")


def checked_url(name: str, value: str) -> str:
    """Read an http(s) URL, as it is given."""
    url(name, value)
    return value


def smtp_url(name: str, value: str) -> str:
    """Read an SMTP server's URL."""
    if not value.startswith(("smtp://", "smtps://")):
        raise ConfigError(name, "must be an smtp:// or smtps:// URL")
    return value


def addresses(name: str, raw: str) -> tuple[str, ...]:
    """Read a comma-separated list of e-mail addresses."""
    return tuple(address.strip() for address in raw.split(",") if address.strip())


def ca_cert(name: str, value: str) -> str:
    """Read a CA certificate given as PEM text or as the path of a PEM file."""
    pem = value if value.startswith(PEM_BEGIN) else read_file(name, value)
    if PEM_BEGIN not in pem:
        raise ConfigError(name, "must be a PEM certificate or the path of one")
    return pem


def rate_limits(name: str, raw: str) -> dict[str, int]:
    """Read JSON of requests per minute by endpoint, over the documented limits."""
    overrides = _json(name, raw)
    if not isinstance(overrides, dict) or not all(
        key in ENDPOINTS and (value is None or (isinstance(value, int) and value > 0))
        for key, value in overrides.items()
    ):
        raise ConfigError(
            name, f"must map endpoint names ({', '.join(ENDPOINTS)}) to requests per minute"
        )
    limits = {**rate_limit_defaults(), **overrides}
    return {key: value for key, value in limits.items() if value}


def max_answer_wait_defaults() -> dict[str, float]:
    """Return the longest wait a client may ask for on each endpoint, in seconds."""
    return dict.fromkeys(ENDPOINTS, defaults.MAX_ANSWER_WAIT_SECONDS)


def answer_waits(name: str, raw: str) -> dict[str, float]:
    """Read the waits for DmTracker's answer, over each endpoint's default."""
    return _seconds_per_endpoint(name, raw, answer_wait_defaults())


def max_answer_waits(name: str, raw: str) -> dict[str, float]:
    """Read the longest waits a client may ask for, over the longest any may."""
    return _seconds_per_endpoint(name, raw, max_answer_wait_defaults())


def _seconds_per_endpoint(name: str, raw: str, waits: dict[str, float]) -> dict[str, float]:
    """Read one number of seconds for every endpoint, or JSON of seconds per endpoint."""
    given = _float_or_none(raw)
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
    return {**waits, **{key: float(value) for key, value in overrides.items()}}


def orgs(name: str, raw: str) -> tuple[Org, ...]:
    """Read a JSON array of organizations, each with its own id and token."""
    entries = _json(name, raw)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(name, "must be a non-empty JSON array of organizations")
    found = tuple(_org(name, index, entry) for index, entry in enumerate(entries))
    for attribute in ("id", "token"):
        values = [getattr(org, attribute) for org in found]
        if len(set(values)) != len(values):
            raise ConfigError(name, f"two organizations share the same {attribute}")
    return found


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


def read_file(name: str, path: str) -> str:
    """Return a file's text; a file that cannot be read is the variable's fault."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(name, f"cannot read {path}: {error.strerror}") from None


def _float_or_none(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(
            name, f"is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None
