"""Send alerts to the operator's channels: a Slack-compatible webhook and e-mail over SMTP.

Each send has a timeout and a few tries; a channel that still fails is reported, never raised,
and its error names what went wrong without the channel's URL (a Slack webhook URL is itself a
secret, an SMTP URL holds a password).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import requests

from relay.config import Settings
from relay.core import defaults
from relay.core.alerts import Alert, subject_of, text_of, webhook_body
from relay.core.redact import redact

log = logging.getLogger("dmrelay.alerts")
WEBHOOK, EMAIL = "webhook", "email"
RETRY_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class ChannelResult:
    """How sending one alert to one channel went."""

    channel: str
    ok: bool
    error: str = ""
    tries: int = 1


class Notifier:
    """The configured alert channels."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout_seconds: float = defaults.ALERT_SEND_TIMEOUT_SECONDS,
        tries: int = defaults.ALERT_SEND_TRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.timeout = timeout_seconds
        self.tries = tries
        self.sleep = sleep
        self.secrets = settings.secrets()

    @property
    def channels(self) -> list[str]:
        """Return the names of the configured channels."""
        settings = self.settings
        configured = [(WEBHOOK, settings.alert_webhook_url), (EMAIL, settings.alert_smtp_url)]
        return [name for name, where in configured if where]

    def send(self, alert: Alert, tries: int | None = None) -> list[ChannelResult]:
        """Send the alert to every channel, each with its tries; return how each went."""
        senders = {WEBHOOK: self._post_webhook, EMAIL: self._send_email}
        return [self._with_tries(name, senders[name], alert, tries) for name in self.channels]

    def _with_tries(
        self, name: str, sender: Callable[[Alert], None], alert: Alert, tries: int | None
    ) -> ChannelResult:
        error = ""
        total = tries or self.tries
        for attempt in range(1, total + 1):
            try:
                sender(alert)
                return ChannelResult(name, True, tries=attempt)
            except Exception as failure:  # any fault of a channel is reported, never raised
                error = self._describe(failure)
                log.warning("alert channel %s failed (try %d): %s", name, attempt, error)
            if attempt < total:
                self.sleep(RETRY_PAUSE_SECONDS * attempt)
        return ChannelResult(name, False, error, total)

    def _describe(self, failure: Exception) -> str:
        """Say what failed, masking any secret a library put in its message."""
        if isinstance(failure, requests.HTTPError) and failure.response is not None:
            text = f"the webhook answered {failure.response.status_code}"
        elif isinstance(failure, requests.Timeout | socket.timeout | TimeoutError):
            text = "timed out"
        elif isinstance(failure, requests.ConnectionError | ConnectionError):
            text = "connection refused or unreachable"
        elif isinstance(failure, smtplib.SMTPException):
            text = f"SMTP: {type(failure).__name__}"
        else:
            text = type(failure).__name__
        return redact(text, secrets=self.secrets)

    def _post_webhook(self, alert: Alert) -> None:
        url = self.settings.alert_webhook_url or ""
        # A session of its own each time (requests.post): alerts are rare, and nothing stays open.
        response = requests.post(url, json=webhook_body(alert), timeout=self.timeout)
        response.raise_for_status()

    def _send_email(self, alert: Alert) -> None:
        settings = self.settings
        message = EmailMessage()
        message["Subject"] = subject_of(alert)
        message["From"] = settings.alert_email_from
        message["To"] = ", ".join(settings.alert_email_to)
        message.set_content(text_of(alert))
        with smtp_connection(settings.alert_smtp_url or "", self.timeout) as smtp:
            smtp.send_message(message)


def smtp_connection(url: str, timeout: float) -> smtplib.SMTP:
    """Open an SMTP session from smtp://user:password@host:port (STARTTLS when offered) or
    smtps:// (TLS from the start), logged in when the URL names a user."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            host, parts.port or 465, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(host, parts.port or 587, timeout=timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
    if parts.username:
        smtp.login(unquote(parts.username), unquote(parts.password or ""))
    return smtp
