"""Optional error reporting to Sentry, on when SENTRY_DSN is set and silent otherwise."""

from __future__ import annotations

from typing import Any

from relay.errors import ConfigError
from relay.redact import REDACTED

SCRUBBED_HEADERS = {"x-org-auth-token", "authorization", "cookie", "idempotency-key"}


def init_sentry(dsn: str | None, component: str) -> bool:
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
        server_name=component,
        before_send=scrub_event,  # type: ignore[arg-type]
    )
    return True


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Remove tokens and message bodies from an event before it leaves the process."""
    request = event.get("request") or {}
    headers = request.get("headers") or {}
    for name in list(headers):
        if name.lower() in SCRUBBED_HEADERS:
            headers[name] = REDACTED
    if "data" in request:
        request["data"] = REDACTED
    return event
