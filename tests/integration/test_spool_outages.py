"""Redis outages under gunicorn: every request answered 200 reaches DmTracker, in order.

Each test runs `dmrelay web` (gunicorn, two processes) and `dmrelay worker` as production does,
with a redis-server of its own that keeps its data, and reads what the sandbox received.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.formation import (
    SETTLE_SECONDS,
    Formation,
    new_root,
    ordering_violations,
    received,
    send,
)
from tests.helpers import Sandbox, wait_until


@pytest.fixture
def formation(sandbox: Sandbox) -> Iterator[Formation]:
    """Return a formation on a Redis of its own; every process is stopped at the end."""
    running = Formation(new_root(), sandbox.url)
    yield running
    running.stop()


def delivered(sandbox: Sandbox) -> set[tuple[str, str]]:
    return set(received(sandbox.requests()))


def test_a_web_restarted_during_the_outage_drains_what_the_killed_one_spooled(
    formation: Formation, sandbox: Sandbox
) -> None:
    formation.add_worker()
    web = formation.add_web()
    formation.pause_redis()
    answers = [send(web.url, contact, 1) for contact in range(4)]
    web.kill()  # master and workers, -9
    web.start()  # while Redis is still paused
    time.sleep(1)
    formation.resume_redis()

    assert answers == ["spooled"] * 4
    sent = {(f"lead_{contact}", "message 1") for contact in range(4)}
    wait_until(lambda: sent <= delivered(sandbox), timeout=30)
    wait_until(lambda: web.answers("/readyz"), timeout=10)


def test_a_kill_9_of_every_web_process_mid_burst_loses_no_request_answered_200(
    formation: Formation, sandbox: Sandbox
) -> None:
    formation.add_worker()
    web = formation.add_web()
    formation.pause_redis()
    answered: list[tuple[str, str]] = []

    def burst(sender: int) -> None:
        for number in range(40):
            contact = sender * 100 + number
            if send(web.url, contact, number, timeout=5) == "spooled":
                answered.append((f"lead_{contact}", f"message {number}"))

    senders = [threading.Thread(target=burst, args=(n,)) for n in range(6)]
    for sender in senders:
        sender.start()
    wait_until(lambda: len(answered) >= 30, timeout=30)
    web.kill()  # in the middle of the burst: some requests are cut off unanswered
    for sender in senders:
        sender.join(timeout=60)
    web.start()
    formation.resume_redis()

    assert 30 <= len(answered) < 240
    wait_until(lambda: set(answered) <= delivered(sandbox), timeout=60)
    wait_until(lambda: web.answers("/readyz"), timeout=10)


def test_one_contact_s_messages_spooled_on_two_hosts_arrive_in_acceptance_order(
    formation: Formation, sandbox: Sandbox
) -> None:
    formation.add_worker()
    first, second = formation.add_web(), formation.add_web()
    formation.pause_redis()
    # Message 1 goes to one host's spool, 2 and 3 to the other's, 4 to the first again.
    answers = [send(host.url, 7, n) for n, host in enumerate((first, second, second, first), 1)]
    time.sleep(1.5)
    formation.resume_redis()
    answers.append(send(second.url, 7, 5))  # stored directly, or behind 2 and 3 in a spool

    assert answers[:4] == ["spooled"] * 4
    assert answers[4] in ("queued", "spooled")
    wait_until(lambda: len(delivered(sandbox)) == 5, timeout=SETTLE_SECONDS + 30)
    arrivals = received(sandbox.requests())
    assert ordering_violations(arrivals) == []
    assert [message for _, message in arrivals][:5] == [f"message {n}" for n in range(1, 6)]
    for host in (first, second):
        wait_until(lambda host=host: host.answers("/readyz"), timeout=10)
