"""What tests share besides fixtures: organizations, sandbox and worker handles, helpers."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from relay.config import Org, Settings
from relay.core.delivery import Attempt, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS
from relay.devtools.localredis import free_port
from relay.devtools.sandbox import SandboxServer
from relay.logs import JsonFormatter
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.keys import Keys
from relay.storage.store import Store
from relay.web.admin import tokens
from workers.bootstrap import build_worker

T = TypeVar("T")

ORG_A = Org("11111111-1111-4111-8111-111111111111", "token-a-0123456789", "Page A")
ORG_B = Org("22222222-2222-4222-8222-222222222222", "token-b-0123456789", "Page B")
SECRET = "test-secret-key-0123456789abcdef"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')

DEFAULT_REPLY = {
    "manychat_id": "123456",
    "username": "John_Doe",
    "message_content": "Sure, send me more details about pricing.",
    "page_name": "Page A",
}

# A contact as ManyChat renders "Full Contact Data" (Instagram): ids as numbers, many nulls.
MANYCHAT_CONTACT = {
    "id": 1843127460,
    "key": "user:1843127460",
    "page_id": 102938475,
    "status": "active",
    "first_name": "Maria",
    "last_name": "Lopez",
    "name": "Maria Lopez",
    "gender": None,
    "profile_pic": "https://scontent.cdninstagram.com/v/t51.2885-19/maria.jpg",
    "locale": None,
    "language": None,
    "timezone": None,
    "live_chat_url": "https://app.manychat.com/fb102938475/chat/1843127460",
    "last_input_text": "Hi! How much is the coaching program?",
    "optin_phone": False,
    "phone": None,
    "optin_email": False,
    "email": "maria@example.com",
    "subscribed": "2026-11-02T09:14:55+00:00",
    "last_interaction": "2026-11-30T10:02:11+00:00",
    "last_seen": "2026-11-30T10:02:11+00:00",
    "is_followup_enabled": True,
    "ig_username": "Maria.Lopez.Fit",
    "ig_id": 17841400123456789,
    "whatsapp_phone": None,
    "custom_fields": {"lead_source": "reel", "budget": None, "cuf_14652832": None},
}


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Return check()'s first truthy value, or fail after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def headers(token: str, **extra: Any) -> dict[str, str]:
    """Return the headers ManyChat sends with an org token."""
    return {"x-org-auth-token": token, "Content-Type": "application/json", **extra}


class CapturedLog(logging.Handler):
    """The JSON lines the relay would print while attached, from the threads `accept` takes."""

    def __init__(self, accept: Callable[[logging.LogRecord], bool] = lambda record: True) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.accept = accept
        self.lines: list[dict[str, Any]] = []
        self._root_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record as the relay's stdout handler would, in the thread that logs it."""
        if self.accept(record):
            self.lines.append(json.loads(self.format(record)))

    def messages(self) -> list[str]:
        """Return the message of every line captured."""
        return [line["message"] for line in self.lines]

    def __enter__(self) -> CapturedLog:
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)


class Sandbox:
    """Test-side handle on the sandbox's control API."""

    def __init__(self, server: SandboxServer) -> None:
        self.url = server.url
        self.control = server.url.removesuffix("/api/v1") + "/_sandbox"

    def requests(self) -> list[dict[str, Any]]:
        """Return every request the sandbox received."""
        return list(requests.get(f"{self.control}/requests", timeout=5).json()["data"])

    def fault(self, **spec: Any) -> None:
        """Queue an injected fault."""
        requests.post(f"{self.control}/faults", json=spec, timeout=5).raise_for_status()

    def configure(self, **options: Any) -> None:
        """Change latency, fault rate or the create-contact limit."""
        requests.put(f"{self.control}/config", json=options, timeout=5).raise_for_status()

    def contacts(self, org_id: str) -> list[dict[str, Any]]:
        """Return the contacts the sandbox holds for an organization."""
        response = requests.get(
            f"{self.control}/contacts", params={"organization_id": org_id}, timeout=5
        )
        return list(response.json()["data"])


class RunningWorker:
    """A WorkerProcess on a background thread, stoppable from the test."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.process = build_worker(settings, connection)
        self.deliverer = self.process.deliverer
        self.thread = threading.Thread(target=self.process.run, daemon=True)

    def start(self) -> RunningWorker:
        """Start working in the background."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the worker to stop and wait for it."""
        self.process.stopping.set()
        self.thread.join(timeout=30)


def free_port_url() -> str:
    """Return an API base URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api/v1"


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """Return a copy of settings with some fields changed."""
    return replace(settings, **changes)


def queued_ids(connection: redis.Redis, org_id: str = ORG_A.id) -> list[str]:
    """Return the ids waiting in an organization's queue, oldest first."""
    return [i.decode() for i in connection.lrange(f"rq:queue:dmrelay-{org_id}", 0, -1)]


def expire_dedup_marks(connection: redis.Redis, org_id: str = ORG_A.id) -> None:
    """Age every dedup mark of an organization past its window, as time would."""
    contacts = Keys().contacts(org_id)
    for field, value in connection.hgetall(contacts).items():
        if field.startswith(b"d:"):
            connection.hset(contacts, field, value.rsplit(b"|", 1)[0] + b"|0")


def dedup_fields(connection: redis.Redis, org_id: str = ORG_A.id) -> list[str]:
    """Return the fields of an organization's contacts hash that hold dedup marks."""
    contacts = Keys().contacts(org_id)
    return [f.decode() for f in connection.hkeys(contacts) if f.startswith(b"d:")]


def csrf_of(client: FlaskClient, path: str = "/dashboard/sign-in", **kwargs: Any) -> str:
    """Return the CSRF token a page's forms carry."""
    page = client.get(path, **kwargs)
    found = CSRF_FIELD.search(page.text)
    assert found, f"no CSRF field on {path} ({page.status_code})"
    return found.group(1)


def sign_in(client: FlaskClient, scopes: tuple[str, ...] = (tokens.ADMIN,), ttl: int = 600) -> Any:
    """Sign in through the form with a freshly minted token; return the response."""
    token = tokens.mint(SECRET, list(scopes), ttl)
    return client.post("/dashboard/sign-in", data={"token": token, "csrf_token": csrf_of(client)})


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """Serve an app over real HTTP on a free port with Werkzeug's threaded server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def make_settings(
    redis_url: str, dmtracker_base_url: str, spool_dir: Path | None = None
) -> Settings:
    """Return the tests' settings: two organizations, quick retries, no answer wait."""
    return Settings(
        redis_url=redis_url,
        secret_key=SECRET,
        orgs=(ORG_A, ORG_B),
        dmtracker_base_url=dmtracker_base_url,
        backoff_base_seconds=0.05,
        backoff_cap_seconds=0.2,
        max_attempts=4,
        rate_limits_per_minute={"create-contact": 60},
        worker_concurrency=8,
        # Answer at once unless a test asks to wait: tests without a worker would wait in vain.
        answer_wait_seconds=dict.fromkeys(ENDPOINTS, 0.0),
        full_record_sample_rate=1.0,  # tests read attempts back; summaries have tests of their own
        # The inbound rate limit has tests of its own; fuzzing sends thousands of requests.
        ingest_rate_per_org=0,
        # A spool of the test's own, never one another test's app would drain.
        spool_dir=str(spool_dir or tempfile.mkdtemp(prefix="dmrelay-test-spool-")),
    )


def accept_default_reply(store: Store, username: str, org: Org = ORG_A) -> Delivery:
    """Accept a default reply of a contact of its own, as ingest stores it (no dedup window)."""
    manychat_id = str(sum(ord(c) * 31**i for i, c in enumerate(username)) % 10**9)
    payload = {**DEFAULT_REPLY, "organization_id": org.id, "username": username}
    payload |= {"manychat_id": manychat_id, "message_content": f"hi {username}"}
    delivery = Delivery.new(org.id, "default-reply", payload)
    same = fingerprint(org.id, "default-reply", delivery.id)
    store.intake.accept(delivery, same, window_seconds=0, quotas=NO_QUOTAS)
    return delivery


def store_dead_letter(store: Store, org_id: str, message: str = "hi") -> str:
    """Store a default reply that DmTracker refused with a 400, as the worker would."""
    payload = {"organization_id": org_id, "manychat_id": "123456", "username": "john_doe"}
    delivery = Delivery.new(org_id, "default-reply", {**payload, "message_content": message})
    same = fingerprint(org_id, "default-reply", delivery.id)
    store.intake.accept(delivery, same, window_seconds=60, quotas=NO_QUOTAS)
    store.stats.count_later(org_id, "default-reply", "accepted")  # as the ingest route counts it
    store.stats.tally.flush()
    delivery.attempts.append(Attempt(time.time(), 400, 12.5, "permanent", '{"error":"Bad"}'))
    delivery.reason = "DmTracker answered 400"
    store.history.finish(delivery, DeliveryState.DEAD, 3600)
    return delivery.id


def point_cli_at(monkeypatch: Any, settings: Settings) -> None:
    """Set the environment a `dmrelay` command reads: the test Redis, sandbox and two orgs."""
    orgs = [{"id": o.id, "token": o.token} for o in (ORG_A, ORG_B)]
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("DMRELAY_ORGS", json.dumps(orgs))
    monkeypatch.setenv("DMRELAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("DMTRACKER_BASE_URL", settings.dmtracker_base_url)


def sign_in_page(page: Any, relay_url: str) -> None:
    """Open the dashboard in a browser page and sign in there with an admin token."""
    from playwright.sync_api import expect  # only the browser tests drive a page

    page.goto(f"{relay_url}/dashboard/")
    expect(page).to_have_url(f"{relay_url}/dashboard/sign-in?next=/dashboard/")
    page.fill("#token", tokens.mint(SECRET, [tokens.ADMIN], 600))
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{relay_url}/dashboard/")


def assert_held(response: Any, connection: redis.Redis, reason: str = "") -> Delivery:
    """Check a request was answered 200 "held", kept as a held dead letter and queued nowhere;
    return the held delivery."""
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["status"] == "held", answer
    assert answer["data"]["state"] == "held" and answer["relay"]["state"] == "held"
    assert isinstance(answer["message"], str) and answer["message"]
    assert reason in answer["data"]["reason"], answer["data"]["reason"]
    delivery_id = answer["data"]["delivery_id"]
    held = Store(connection).history.load(delivery_id)
    assert held is not None and held.state == DeliveryState.HELD
    assert held.reason == answer["data"]["reason"]
    assert connection.zscore(Keys("dmrelay").dead, delivery_id) is not None
    for org in (ORG_A, ORG_B):
        assert delivery_id not in queued_ids(connection, org.id)
    return held
