"""Each organization holds at most its share of a process's waiting slots; a wait has its cap."""

from __future__ import annotations

from contextlib import ExitStack

from relay.config import load_settings
from relay.web.answer import AnswerWaits, parse_wait
from tests.helpers import ORG_A, SECRET


def hold(waits: AnswerWaits, stack: ExitStack, org_id: str, count: int) -> list[bool]:
    return [stack.enter_context(waits.slot(org_id)) for _ in range(count)]


def test_alone_an_organization_holds_half_the_slots() -> None:
    waits = AnswerWaits(listener=None, slots=4, share=0.5)  # type: ignore[arg-type]
    with ExitStack() as stack:
        assert hold(waits, stack, "a", 3) == [True, True, False]


def test_organizations_waiting_divide_the_share_at_least_one_each() -> None:
    waits = AnswerWaits(listener=None, slots=4, share=0.5)  # type: ignore[arg-type]
    with ExitStack() as stack:
        assert hold(waits, stack, "a", 2) == [True, True]
        assert hold(waits, stack, "b", 2) == [True, False]  # 2 slots / 2 organizations
        assert hold(waits, stack, "c", 1) == [True]  # at least one
        assert hold(waits, stack, "d", 1) == [False]  # every slot is taken
        assert hold(waits, stack, "a", 1) == [False]  # over its share now


def test_slots_given_back_are_free_again() -> None:
    waits = AnswerWaits(listener=None, slots=2, share=1.0)  # type: ignore[arg-type]
    with ExitStack() as stack:
        assert hold(waits, stack, "a", 2) == [True, True]
    with ExitStack() as stack:
        assert hold(waits, stack, "b", 2) == [True, True]


def test_a_wait_asked_for_is_capped_by_the_endpoints_maximum() -> None:
    assert parse_wait("8", 5.0, cap=2.0) == 2.0
    assert parse_wait(None, 5.0, cap=2.0) == 2.0


def test_the_maximum_wait_is_configured_per_endpoint_and_caps_the_default() -> None:
    env = {
        "REDIS_URL": "redis://localhost:6379/0",
        "DMRELAY_SECRET_KEY": SECRET,
        "DMRELAY_ORGS": f'[{{"id": "{ORG_A.id}", "token": "{ORG_A.token}"}}]',
        "DMRELAY_MAX_ANSWER_WAIT_SECONDS": '{"contact-status": 1, "default-reply": 3}',
    }
    settings = load_settings(env)
    assert settings.max_answer_wait_seconds["contact-status"] == 1.0
    assert settings.max_answer_wait_seconds["update-tags"] == 8.0
    assert settings.answer_wait_seconds["default-reply"] == 3.0  # its default 5, capped
