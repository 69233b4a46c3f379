"""Optional error reporting to Sentry, on when SENTRY_DSN is set and silent otherwise."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from relay.core.errors import ConfigError
from relay.core.redact import REDACTED


def init_sentry(dsn: str | None, component: str, secrets: Iterable[str]) -> bool:
    """Start the official SDK with its Flask and RQ integrations; return True if started."""
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
        from sentry_sdk.integrations.rq import RqIntegration
    except ImportError:
        raise ConfigError(
            "SENTRY_DSN", "is set but sentry-sdk is not installed (pip install 'dmrelay[sentry]')"
        ) from None
    sentry_sdk.init(
        dsn=dsn,
        integrations=[FlaskIntegration(), RqIntegration()],
        send_default_pii=False,
        # Frame locals hold tokens and message bodies; the stack trace is enough.
        include_local_variables=False,
        max_request_body_size="never",
        server_name=component,
        before_send=functools.partial(scrub_event, secrets=tuple(s for s in secrets if s)),
    )
    return True


def scrub_event(event: Any, hint: dict[str, Any], secrets: tuple[str, ...] = ()) -> Any:
    """Drop the command line and replace every known secret anywhere in an event."""
    if isinstance(event, dict) and isinstance(event.get("extra"), dict):
        # A command line may carry configuration; the SDK copies it into every event.
        event["extra"].pop("sys.argv", None)
    return _mask(event, secrets)


def _mask(event: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(event, str):
        for secret in secrets:
            event = event.replace(secret, REDACTED)
        return event
    if isinstance(event, dict):
        return {key: _mask(value, secrets) for key, value in event.items()}
    if isinstance(event, list):
        return [_mask(value, secrets) for value in event]
    return event
