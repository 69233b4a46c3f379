"""The DmTracker HTTP client: one pooled session, explicit timeouts, no hidden retries."""

from __future__ import annotations

import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from relay.core.endpoints import TOKEN_HEADER, Endpoint
from relay.core.reply import Reply


class DmTrackerClient:
    """Send deliveries to DmTracker over a pooled session."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        pool_size: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_seconds, read_timeout_seconds)
        self.session = requests.Session()
        # Retries are the relay's job, so urllib3 must not retry behind its back.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def send(
        self, endpoint: Endpoint, token: str, payload: dict[str, Any], request_id: str = ""
    ) -> Reply:
        """Call one endpoint and return the reply; never raise for network faults."""
        headers = {TOKEN_HEADER: token, "Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        started = time.perf_counter()
        try:
            response = self.session.request(
                endpoint.method,
                f"{self.base_url}/{endpoint.path}",
                json=payload,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            return Reply(None, "", _ms_since(started), error=_describe(error))
        return Reply(
            response.status_code, response.text, _ms_since(started), dict(response.headers)
        )

    def probe(self) -> Reply:
        """GET the base URL once, headers only: any HTTP status means DmTracker's host answers."""
        started = time.perf_counter()
        try:
            with self.session.get(
                self.base_url, timeout=self.timeout, stream=True, allow_redirects=False
            ) as response:
                return Reply(response.status_code, "", _ms_since(started))
        except requests.RequestException as error:
            return Reply(None, "", _ms_since(started), error=_describe(error))

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _describe(error: requests.RequestException) -> str:
    """Name a network fault without echoing request details (headers hold the token)."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.ConnectionError):
        return "connection error"
    return type(error).__name__
