"""A formation under faults: two web instances, two workers, steady load, a fault at a time.

Faults in turn: a web instance's SIGTERM (as a deploy), a worker's SIGKILL, a Redis restart (it
keeps its data), a Redis SIGSTOP. Each contact sends its messages one after the other, as
ManyChat does, to either instance. At the end every message answered 200 has reached the
sandbox, each contact's messages arrived in the order they were sent, and no delivery was ever
called twice at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.formation import (
    SETTLE_SECONDS,
    Formation,
    concurrent_calls,
    new_root,
    ordering_violations,
    received,
    send,
)
from tests.helpers import Sandbox, wait_until

CONTACTS = 24
SENDERS = 8  # each owns CONTACTS / SENDERS contacts
PAUSE_SECONDS = 0.3  # between one sender's messages: about 25 requests/s in all
FAULT_EVERY_SECONDS = 14
REDIS_PAUSE_SECONDS = 4


@pytest.fixture
def formation(sandbox: Sandbox) -> Iterator[Formation]:
    running = Formation(new_root(), sandbox.url)
    yield running
    running.stop()


class Load:
    """Senders that keep each contact's messages in order, to one instance or the other."""

    def __init__(self, formation: Formation) -> None:
        self.formation = formation
        self.answered: list[tuple[str, str]] = []
        self.statuses: list[str | None] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(n,)) for n in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _send(self, sender: int) -> None:
        chooser = random.Random(sender)
        contacts = list(range(sender, CONTACTS, SENDERS))
        numbers = dict.fromkeys(contacts, 0)
        while not self.stopping.is_set():
            contact = chooser.choice(contacts)
            numbers[contact] += 1
            web = chooser.choice(self.formation.webs)
            status = send(web.url, contact, numbers[contact], timeout=10)
            self.statuses.append(status)
            if status is not None:
                self.answered.append((f"lead_{contact}", f"message {numbers[contact]}"))
            time.sleep(PAUSE_SECONDS)


def faults(formation: Formation) -> list[tuple[str, Callable[[], None]]]:
    def web_sigterm() -> None:
        web = formation.webs[0]
        web.terminate()
        web.start()

    def worker_sigkill() -> None:
        worker = formation.workers[0]
        worker.kill()
        worker.start()

    def redis_restart() -> None:
        formation.restart_redis()

    def redis_sigstop() -> None:
        formation.pause_redis()
        time.sleep(REDIS_PAUSE_SECONDS)
        formation.resume_redis()

    return [
        ("web SIGTERM", web_sigterm),
        ("worker SIGKILL", worker_sigkill),
        ("Redis restart", redis_restart),
        ("Redis SIGSTOP", redis_sigstop),
    ]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_formation_under_faults_loses_nothing_and_keeps_each_contact_s_order(
    formation: Formation, sandbox: Sandbox
) -> None:
    for _ in range(2):
        formation.add_web()
        formation.add_worker()
    load = Load(formation)
    load.start()
    try:
        for _ in range(2):
            for _name, fault in faults(formation):
                time.sleep(FAULT_EVERY_SECONDS / 2)
                fault()
                time.sleep(FAULT_EVERY_SECONDS / 2)
    finally:
        load.stop()

    answered = set(load.answered)
    assert len(answered) > 1000
    assert load.statuses.count("spooled") > 0  # the outages did send requests to the spools
    wait_until(
        lambda: answered <= set(received(sandbox.requests())),
        timeout=SETTLE_SECONDS + 120,
        interval=1.0,
    )
    journal = sandbox.requests()
    arrivals = received(journal)
    violations = ordering_violations(arrivals)
    overlaps = concurrent_calls(journal)
    print(  # the figures for a report, with -s
        f"answered 200: {len(answered)} ({load.statuses.count('spooled')} spooled),"
        f" not answered: {load.statuses.count(None)}, arrivals: {len(arrivals)},"
        f" lost: {len(answered - set(arrivals))}, ordering violations: {len(violations)},"
        f" calls: {len(journal)}, concurrent resends: {len(overlaps)}"
    )
    assert not answered - set(arrivals)  # 0 lost
    assert violations == []
    assert not overlaps, "a delivery was called again while its call still ran:\n" + "\n".join(
        overlaps[:20]
    )
    for web in formation.webs:
        wait_until(lambda web=web: web.answers("/readyz"), timeout=30)
