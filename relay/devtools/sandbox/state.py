"""The in-memory DmTracker: organizations, contacts, tags, rate window, faults and journal."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

WINDOW_SECONDS = 60.0
UNAVAILABLE_MESSAGE = "Database infrastructure error, try again later."
Clock = Callable[[], float]


@dataclass(frozen=True)
class SandboxOrg:
    """An organization the sandbox serves."""

    id: str
    token: str


class ApiError(Exception):
    """An error answered in DmTracker's shape: {"error": ..., "message": ...}."""

    def __init__(self, status: int, message: str, *, error: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
        self.error = error or HTTPStatus(status).phrase


@dataclass
class Config:
    """The knobs the control API can turn at run time."""

    create_contact_limit_per_minute: int
    latency_ms: int
    fault_rate: float


@dataclass
class Fault:
    """An injected answer for the next `count` matching requests (-1: until cleared)."""

    endpoint: str
    status: int
    count: int = 1
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency_ms: int | None = None
    organization_id: str | None = None  # only this organization's requests (by token)


@dataclass
class OrgState:
    """One organization's data: contacts by username, tags by name, create-contact window."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    window: deque[float] = field(default_factory=deque)


class Sandbox:
    """All mutable sandbox state; callers hold `lock` while touching it."""

    def __init__(
        self, orgs: Iterable[SandboxOrg], config: Config, seed: int | None, clock: Clock
    ) -> None:
        self.lock = threading.Lock()
        self.org_by_token = {org.token: org.id for org in orgs}
        self.initial_config, self.seed, self.clock = config, seed, clock
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to the starting config and random sequence."""
        self.config = replace(self.initial_config)
        self.random = random.Random(self.seed)  # noqa: S311 - fault injection, not security
        self.orgs = {org_id: OrgState() for org_id in self.org_by_token.values()}
        self.faults: list[Fault] = []
        self.journal: list[dict[str, Any]] = []

    def plan(self, endpoint: str, org_id: str | None = None) -> tuple[int, Fault | None]:
        """Return the latency to wait and the fault that answers this request, if any."""
        fault = self.take_queued_fault(endpoint, org_id)
        rate = self.config.fault_rate
        if fault is None and rate > 0 and self.random.random() < rate:
            body = {"error": "Service Unavailable", "message": UNAVAILABLE_MESSAGE}
            fault = Fault(endpoint, 503, body=body)
        if fault is not None and fault.latency_ms is not None:
            return fault.latency_ms, fault
        return self.config.latency_ms, fault

    def take_queued_fault(self, endpoint: str, org_id: str | None = None) -> Fault | None:
        """Use up one turn of the first queued fault that matches the endpoint (and org)."""
        for fault in self.faults:
            if fault.organization_id not in (None, org_id):
                continue
            if fault.endpoint in ("*", endpoint):
                if fault.count > 0:
                    fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_create_contact_slot(self, org: OrgState) -> None:
        """Count a create-contact call in the org's sliding window, or refuse it with 429."""
        now, limit, window = self.clock(), self.config.create_contact_limit_per_minute, org.window
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            # The limit may have been lowered at run time, so several calls may have to expire.
            frees_at = window[len(window) - limit] + WINDOW_SECONDS
            raise ApiError(
                429,
                f"You have exceeded the maximum of {limit} requests per minute. "
                "Please wait before retrying.",
                error="Rate limit exceeded",
                retry_after=max(1, math.ceil(frees_at - now)),
            )
        window.append(now)
