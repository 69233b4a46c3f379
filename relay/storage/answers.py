"""DmTracker's answer to a delivery, handed from the worker to the web requests waiting for it.

When a delivery is finished the worker stores its outcome under a short-lived key and
publishes it on one channel. Each web process holds one subscription to that channel, on a
thread of its own, and hands every outcome to the request threads waiting for that delivery:
waiting costs one Redis connection per process however many requests wait, and sends no
command while it waits. The key covers what the channel cannot: an outcome published before
a request started waiting, and a repeat that comes a little later.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import redis

from relay.core import defaults
from relay.core.delivery import Delivery, DeliveryState
from relay.storage.keys import Keys

log = logging.getLogger(__name__)
FINISHED = (DeliveryState.DELIVERED, DeliveryState.DEAD)
# The listener blocks on its socket this long at most, so a dead connection is noticed.
LISTEN_TIMEOUT_SECONDS = 30.0
RECONNECT_SECONDS = 1.0
# How long a waiter gives a (re)connecting subscription before answering without it.
SUBSCRIBE_WAIT_SECONDS = 0.5


@dataclass(frozen=True)
class Outcome:
    """Where a delivery stands, and DmTracker's last answer to it."""

    state: str
    status: int | None = None
    body: str = ""
    reason: str | None = None

    @property
    def finished(self) -> bool:
        """Return True once the delivery is delivered or dead: its answer will not change."""
        return self.state in FINISHED

    def to_json(self) -> str:
        """Serialise to compact JSON."""
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Outcome:
        """Rebuild an outcome from its JSON form."""
        return cls(**json.loads(raw))


def outcome_of(delivery: Delivery, body: str | None = None) -> Outcome:
    """Return a delivery's outcome; the body defaults to the last attempt's (cut, redacted)."""
    last = delivery.last_attempt
    if body is None:
        body = last.body if last else ""
    return Outcome(delivery.state, last.status if last else None, body, delivery.reason)


class Answers:
    """Publish finished deliveries' outcomes, and read one that is still kept."""

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys,
        ttl_seconds: int = defaults.ANSWER_TTL_SECONDS,
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.ttl_seconds = ttl_seconds

    def publish(self, outcome: Outcome, delivery_id: str) -> None:
        """Keep a finished delivery's outcome for a while and tell every web process."""
        with self.redis.pipeline(transaction=False) as pipe:
            # Stored first, so a waiter that checks the key after missing the message finds it.
            pipe.set(self.keys.answer(delivery_id), outcome.to_json(), ex=self.ttl_seconds)
            pipe.publish(self.keys.answers_channel, _message(outcome, delivery_id))
            pipe.execute()

    def script_args(self, outcome: Outcome, delivery_id: str) -> tuple[str, list[str | int]]:
        """Return what publish writes, for a script that publishes in its own step: the key,
        and the stored outcome, its TTL, the channel and the message."""
        args: list[str | int] = [outcome.to_json(), self.ttl_seconds, self.keys.answers_channel]
        return self.keys.answer(delivery_id), [*args, _message(outcome, delivery_id)]

    def peek(self, delivery_id: str) -> Outcome | None:
        """Return the published outcome without waiting, if it is still kept."""
        raw = self.redis.get(self.keys.answer(delivery_id))
        return Outcome.from_json(raw) if raw else None


def _message(outcome: Outcome, delivery_id: str) -> str:
    """Return the message published for a finished delivery."""
    return json.dumps({"id": delivery_id, "outcome": asdict(outcome)}, ensure_ascii=False)


class _Waiter:
    """One request thread waiting for one delivery's outcome."""

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self._given = threading.Event()

    def give(self, outcome: Outcome | None) -> None:
        self.outcome = outcome
        self._given.set()

    def take(self, timeout_seconds: float) -> Outcome | None:
        return self.outcome if self._given.wait(max(0.0, timeout_seconds)) else None


class AnswerListener:
    """A web process's one subscription to published outcomes, shared by its waiting threads."""

    def __init__(self, subscriber: redis.Redis, answers: Answers) -> None:
        self.subscriber = subscriber  # its own connection: a subscription holds it for good
        self.answers = answers
        self._waiters: defaultdict[str, list[_Waiter]] = defaultdict(list)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, delivery_id: str, timeout_seconds: float) -> Outcome | None:
        """Block until the delivery's outcome is published, or return None after the timeout."""
        deadline = time.monotonic() + timeout_seconds
        if timeout_seconds <= 0:
            return None
        if not self._listening(min(timeout_seconds, SUBSCRIBE_WAIT_SECONDS)):
            return None  # no subscription (Redis away): answer now rather than wait blind
        waiter = self._register(delivery_id)
        try:
            # Published before we registered: the message is gone, the key is not.
            return self.answers.peek(delivery_id) or waiter.take(deadline - time.monotonic())
        finally:
            self._unregister(delivery_id, waiter)

    def peek(self, delivery_id: str) -> Outcome | None:
        """Return the published outcome without waiting, if it is still kept."""
        return self.answers.peek(delivery_id)

    def release_all(self) -> None:
        """Wake every waiting thread with no outcome: Redis is away, so none will come soon."""
        with self._lock:
            waiters = [waiter for waiting in self._waiters.values() for waiter in waiting]
        for waiter in waiters:
            waiter.give(None)

    def close(self) -> None:
        """Stop listening, within LISTEN_TIMEOUT_SECONDS (or at once while reconnecting)."""
        self._stopping.set()

    def _listening(self, timeout_seconds: float) -> bool:
        """Start the listener on first use; return True once its subscription is live."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if not running and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="dmrelay-answers", daemon=True
                )
                self._thread.start()
        return self._subscribed.wait(timeout_seconds)

    def _register(self, delivery_id: str) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            self._waiters[delivery_id].append(waiter)
        return waiter

    def _unregister(self, delivery_id: str, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters[delivery_id]
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[delivery_id]

    def _listen(self) -> None:
        """Hand each published outcome to its waiters; resubscribe after a Redis failure."""
        reported = False  # one line per outage, not one per retry
        while not self._stopping.is_set():
            try:
                self._subscribe_and_dispatch()
            except redis.RedisError as error:
                # Meanwhile waiters find no subscription and answer with the queued body.
                reported = reported and not self._subscribed.is_set()
                self._subscribed.clear()
                if not reported and not self._stopping.is_set():
                    log.warning("answer subscription lost (%s); retrying", type(error).__name__)
                    reported = True
                self._stopping.wait(RECONNECT_SECONDS)
        self._subscribed.clear()

    def _subscribe_and_dispatch(self) -> None:
        with self.subscriber.pubsub() as pubsub:
            pubsub.subscribe(self.answers.keys.answers_channel)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=LISTEN_TIMEOUT_SECONDS)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self._subscribed.set()
                elif message["type"] == "message":
                    self._dispatch(message["data"])

    def _dispatch(self, raw: bytes) -> None:
        """Give one published outcome to every thread waiting for that delivery."""
        try:
            published: dict[str, Any] = json.loads(raw)
            delivery_id, outcome = published["id"], Outcome(**published["outcome"])
        except (ValueError, TypeError, KeyError):
            log.warning("unreadable answer message ignored")  # keeps the listener alive
            return
        with self._lock:
            waiters = list(self._waiters.get(delivery_id, ()))
        for waiter in waiters:
            waiter.give(outcome)
