"""The shared rate limiter against a real Redis."""

from __future__ import annotations

import itertools
import threading

from relay.storage.keys import Keys
from relay.storage.ratelimit import RateLimiter

ORG = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"


def test_grants_up_to_the_limit_then_reserves_spaced_slots(redis_conn) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(redis_conn, Keys("dmrelay"))
    granted = [limiter.acquire(ORG, "create-contact", 60) for _ in range(60)]
    waits = [limiter.acquire(ORG, "create-contact", 60) for _ in range(5)]

    assert granted == [0.0] * 60
    # The window (a minute and a second of margin for latency) is full; waiters get slots
    # a window/limit apart, not all at once.
    assert 60 < waits[0] <= 61.1
    gaps = [round(later - earlier, 2) for earlier, later in itertools.pairwise(waits)]
    assert all(0.99 <= gap <= 1.05 for gap in gaps), gaps


def test_another_organization_is_not_affected(redis_conn) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(redis_conn, Keys("dmrelay"))
    for _ in range(61):
        limiter.acquire(ORG, "create-contact", 60)
    assert limiter.acquire(OTHER, "create-contact", 60) == 0.0
    assert limiter.acquire(ORG, "default-reply", 60) == 0.0


def test_never_more_than_the_limit_across_concurrent_callers(redis_conn) -> None:  # type: ignore[no-untyped-def]
    limiters = [RateLimiter(redis_conn, Keys("dmrelay")) for _ in range(4)]
    granted: list[float] = []
    lock = threading.Lock()

    def hammer(limiter: RateLimiter) -> None:
        for _ in range(50):
            wait = limiter.acquire(ORG, "create-contact", 30)
            with lock:
                granted.append(wait)

    threads = [threading.Thread(target=hammer, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for wait in granted if wait == 0.0) == 30
    assert len(granted) == 200


def test_a_reserved_caller_is_let_through_ahead_of_newcomers(redis_conn) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(redis_conn, Keys("dmrelay"))
    redis_conn.set(f"dmrelay:rl:{ORG}:create-contact:cursor", "9999999999")
    # A newcomer must queue behind the reserved slots; a caller holding a slot may go.
    assert limiter.acquire(ORG, "create-contact", 60) > 0
    assert limiter.acquire(ORG, "create-contact", 60, reserved=True) == 0.0
