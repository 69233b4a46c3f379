"""What ingest answers once a request is stored: DmTracker's own answer when it comes in time.

ManyChat maps fields such as `$.data.contact_type` from a 200 JSON answer only, so the relay
may wait a few seconds for the delivery's outcome before answering. The message is stored
first, so waiting never risks it; only half of a process's threads may wait at once, so
waiting never starves the intake; and each organization only its share of those, so one
organization's waits never starve another's.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from flask import Response, current_app, g, jsonify, request

from relay.config import Settings
from relay.core import defaults
from relay.core.delivery import DeliveryState
from relay.storage.answers import AnswerListener, Answers, Outcome, outcome_of
from relay.storage.connection import dedicated_client
from relay.storage.intake import Accepted
from relay.storage.keys import Keys
from relay.web.context import current_front_door, current_metrics, current_store

log = logging.getLogger(__name__)
WAIT_PARAMETER = "wait"
WAIT_HEADER = "X-Dmrelay-Wait"
ANSWERS_CLIENT_NAME = "dmrelay-web-answers"  # what CLIENT LIST shows for the subscription
# Below this, a wait would end before Redis could answer it.
SHORTEST_WAIT_SECONDS = 0.01


class AnswerWaits:
    """A web process's means of waiting: a bounded number of slots, and its answer listener.

    No organization may hold more than its share of the slots: `share` of them divided among
    the organizations waiting (the asking one included), at least one each. So one
    organization's long waits leave room for every other's, however many it sends.
    """

    def __init__(self, listener: AnswerListener, slots: int, share: float = 1.0) -> None:
        self.listener = listener
        self.slots = slots
        self.share = share
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # organization id -> slots it holds now

    @contextmanager
    def slot(self, org_id: str = "") -> Iterator[bool]:
        """Take a waiting slot if one is free to this organization, without blocking."""
        taken = self._take(org_id)
        try:
            yield taken
        finally:
            if taken:
                self._give_back(org_id)

    def org_limit(self, org_id: str) -> int:
        """Return how many slots the organization may hold, with those now waiting."""
        waiting = len(self._held) + (org_id not in self._held)
        return max(1, int(self.slots * self.share) // waiting)

    def _take(self, org_id: str) -> bool:
        with self._lock:
            held = self._held.get(org_id, 0)
            if sum(self._held.values()) >= self.slots or held >= self.org_limit(org_id):
                return False
            self._held[org_id] = held + 1
            return True

    def _give_back(self, org_id: str) -> None:
        with self._lock:
            left = self._held[org_id] - 1
            if left:
                self._held[org_id] = left
            else:
                del self._held[org_id]


def build_answer_waits(connection: redis.Redis, settings: Settings, keys: Keys) -> AnswerWaits:
    """Give half of the process's threads a slot to wait in, and one listener for them all."""
    subscriber = dedicated_client(connection, ANSWERS_CLIENT_NAME)
    listener = AnswerListener(subscriber, Answers(connection, keys))
    slots = max(1, settings.web_threads // 2)
    # With one organization there is nobody to be fair to: it may use every slot.
    share = settings.org_wait_share if len(settings.orgs) > 1 else 1.0
    return AnswerWaits(listener, slots, share)


def current_answer_waits() -> AnswerWaits:
    """Return the app's means of waiting for DmTracker's answers."""
    waits: AnswerWaits = current_app.extensions["dmrelay.answer_waits"]
    return waits


def requested_wait(endpoint: str, settings: Settings) -> float:
    """Return the seconds to wait: ?wait= or X-Dmrelay-Wait, else the endpoint's default.

    Never more than the endpoint's configured maximum: the client chooses, within it.
    """
    # Most requests carry no query string: skip building request.args (~4 us) for nothing.
    asked = request.args.get(WAIT_PARAMETER) if request.query_string else None
    given = asked or request.headers.get(WAIT_HEADER)
    cap = settings.max_answer_wait_seconds.get(endpoint, defaults.MAX_ANSWER_WAIT_SECONDS)
    return parse_wait(given, settings.answer_wait_seconds.get(endpoint, 0.0), cap)


def parse_wait(
    given: str | None, default: float, cap: float = defaults.MAX_ANSWER_WAIT_SECONDS
) -> float:
    """Return a wait between 0 and the cap; anything unreadable means the default."""
    # A bad value must never cost the lead, so it is never an error.
    try:
        seconds = float(given) if given is not None else default
    except ValueError:
        seconds = default
    if not math.isfinite(seconds):
        seconds = default
    return min(max(seconds, 0.0), cap, defaults.MAX_ANSWER_WAIT_SECONDS)


def answer(accepted: Accepted, wait_seconds: float, org_id: str = "") -> Response:
    """Answer with DmTracker's own answer if it comes within the wait, else the queued body."""
    outcome = find_outcome(accepted, wait_seconds, org_id)
    body = json_object(outcome.body) if outcome.state == DeliveryState.DELIVERED else None
    if body is not None:
        return delivered(body, accepted, outcome)
    return queued(accepted, outcome)


def find_outcome(accepted: Accepted, wait_seconds: float, org_id: str = "") -> Outcome:
    """Return the delivery's outcome as it stands when the answer must go."""
    try:
        outcome, result = _outcome(accepted, wait_seconds, org_id)
    except redis.RedisError as error:
        # The message is stored already: the caller still gets its queued answer.
        log.warning("answer not awaited: Redis unavailable (%s)", type(error).__name__)
        outcome, result = Outcome(DeliveryState.QUEUED), "error"
    g.answer_result = result
    endpoint = g.get("endpoint", "")
    current_metrics().count("dmrelay_answers", endpoint=endpoint, result=result)
    return outcome


def _outcome(accepted: Accepted, wait_seconds: float, org_id: str) -> tuple[Outcome, str]:
    """Return the outcome and how it was found: at once, after a wait, or not at all."""
    if accepted.duplicate:
        earlier = earlier_outcome(accepted.delivery_id)
        if earlier.finished or wait_seconds <= 0:
            return earlier, earlier.state if earlier.finished else "no_wait"
    if accepted.settling:  # held back after an outage until every spool has drained
        return Outcome(DeliveryState.QUEUED), "settling"
    remaining = wait_seconds - (time.perf_counter() - g.get("started", time.perf_counter()))
    if remaining < SHORTEST_WAIT_SECONDS:
        return Outcome(DeliveryState.QUEUED), "no_wait"
    waits = current_answer_waits()
    with waits.slot(org_id) as taken:
        if not taken:
            return Outcome(DeliveryState.QUEUED), "busy"
        found = waits.listener.wait(accepted.delivery_id, remaining)
    if found is not None:
        return found, found.state
    if current_front_door().spool.active:  # released: Redis is away, its record out of reach
        return Outcome(DeliveryState.QUEUED), "spooling"
    return stored_outcome(accepted.delivery_id), "timeout"


def earlier_outcome(delivery_id: str) -> Outcome:
    """Return the outcome of the delivery a repeat matched: its answer, or else its record."""
    published = current_answer_waits().listener.peek(delivery_id)
    return published or stored_outcome(delivery_id)


def stored_outcome(delivery_id: str) -> Outcome:
    """Return the outcome the delivery's record holds (its body cut and redacted)."""
    delivery = current_store().history.load(delivery_id)
    return outcome_of(delivery) if delivery else Outcome(DeliveryState.QUEUED)


def json_object(text: str) -> dict[str, Any] | None:
    """Return text parsed as a JSON object, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def delivered(body: dict[str, Any], accepted: Accepted, outcome: Outcome) -> Response:
    """Answer 200 with DmTracker's own body, whatever 2xx it used, plus the relay's note."""
    return jsonify({**body, "relay": relay_note(accepted, outcome)})


def relay_note(accepted: Accepted, outcome: Outcome) -> dict[str, Any]:
    """Return the `relay` object every stored request's answer carries, for one JSONPath:
    with DmTracker's HTTP status when it answered (201 tells a new contact from a known one)."""
    note: dict[str, Any] = {
        "delivery_id": accepted.delivery_id,
        "state": outcome.state,
        "duplicate": accepted.duplicate,
    }
    if outcome.status is not None:
        note["status"] = outcome.status
    return note


def queued(accepted: Accepted, outcome: Outcome) -> Response:
    """Answer a message stored for delivery, with where it stands."""
    data: dict[str, Any] = {"delivery_id": accepted.delivery_id, "duplicate": accepted.duplicate}
    data["state"] = outcome.state
    if outcome.state == DeliveryState.DEAD:
        data["reason"] = refusal(outcome)
        message = (
            f"Message queued, but DmTracker refused it ({data['reason']}). It is kept in"
            " the relay's dead letters, where it can be fixed and replayed."
        )
    elif outcome.state == DeliveryState.DELIVERED:
        message = "Message delivered."
    elif accepted.duplicate:
        message = "Duplicate of a message already queued."
    else:
        message = "Message queued."
    return jsonify(status="queued", message=message, data=data, relay=relay_note(accepted, outcome))


def refusal(outcome: Outcome) -> str:
    """Say why DmTracker refused a delivery, in its own words when it gave them."""
    reason = outcome.reason or f"DmTracker answered {outcome.status}"
    said = (json_object(outcome.body) or {}).get("message")
    return f"{reason}: {said}" if isinstance(said, str) and said else reason
