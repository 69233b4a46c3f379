"""Filters on deliveries: one table serves the admin API, the dashboard and the CLI.

Each row of FILTERS names a filter once: the admin API's query or body name (also the
dashboard's form field), the DeliveryQuery field it sets, the converter that normalizes it
exactly as ingest normalizes the same value (so `@John_Doe` finds `john_doe`, an upper-case
organization id finds its deliveries), the CLI option, and the one line of documentation
that the OpenAPI description, the CLI's --help and docs/operations.md show.

To add a filter: add a DeliveryQuery field and its condition in `matches`, then one row here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from relay.core.delivery import STATES, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS
from relay.core.errors import BadRequest
from relay.core.schemas import (
    accepts,
    choice,
    to_manychat_id,
    to_natural,
    to_timestamp,
    to_username,
    to_uuid,
)

_EPOCH_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]+)?")
NOT_TIME = "must be an ISO 8601 date-time such as 2025-01-31T14:00:00Z, or epoch seconds."


@dataclass(frozen=True)
class DeliveryQuery:
    """Conditions on deliveries; empty fields match everything."""

    org_id: str | None = None
    username: str | None = None
    manychat_id: str | None = None
    endpoint: str | None = None
    state: str | None = None
    status: int | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, delivery: Delivery) -> bool:
        """Return True if the delivery passes every given condition."""
        payload, last = delivery.payload, delivery.last_attempt
        return (
            _eq(self.org_id, delivery.org_id)
            and _eq(self.username, payload.get("username"))
            and _eq(self.manychat_id, payload.get("manychat_id"))
            and _eq(self.endpoint, delivery.endpoint)
            and _eq(self.state, delivery.state)
            and (self.status is None or (last is not None and last.status == self.status))
            and (self.since is None or delivery.received_at >= self.since)
            and (self.until is None or delivery.received_at < self.until)
        )


def _eq(wanted: Any, actual: Any) -> bool:
    return wanted is None or wanted == actual


# -- converters the ingest schemas do not already have ---------------------------------------
@accepts({"type": ["integer", "string"], "minimum": 100, "maximum": 599, "examples": [503]})
def to_http_status(value: object) -> int:
    """Return an HTTP status code given as a number or digits."""
    status = to_natural(value)
    if not 100 <= status <= 599:
        raise ValidationError("must be an HTTP status code such as 400.")
    return status


@accepts(
    {
        "type": ["string", "number"],
        "description": "ISO 8601 date-time (naive means UTC) or epoch seconds.",
        "examples": ["2026-11-30T10:00:00.000Z"],
    }
)
def to_epoch(value: object) -> float:
    """Return epoch seconds given as a number, digits, or an ISO 8601 date-time."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            seconds = float(value)  # OverflowError on an integer too large for a float
        elif isinstance(value, str) and _EPOCH_SECONDS.fullmatch(value.strip()):
            seconds = float(value)
        else:
            # to_timestamp checks the shape and normalizes to UTC (naive means UTC).
            normalized = to_timestamp(value).replace("Z", "+00:00")
            seconds = datetime.fromisoformat(normalized).timestamp()
    except (ValidationError, OverflowError, ValueError):
        raise ValidationError(NOT_TIME) from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValidationError(NOT_TIME)  # 1e400 in a JSON body parses as infinity
    return seconds


# -- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    """One filter: its public name, the query field it sets, its converter, CLI option, doc."""

    name: str
    field: str
    convert: Callable[[Any], Any]
    doc: str
    example: str
    flag: str | None = None  # the `dmrelay dead-letters` option, None if not offered there
    on_dead_letters: bool = True  # False: meaningless where every delivery is dead

    def read(self, value: Any) -> Any:
        """Return the converted value, or raise 400 naming the filter and the reason."""
        try:
            return self.convert(value)
        except ValidationError as error:
            raise BadRequest(f"The '{self.name}' filter {reason_of(error)}") from None


def reason_of(error: ValidationError) -> str:
    """Return the first message of a converter's ValidationError."""
    messages = error.messages
    return str(messages[0] if isinstance(messages, list) and messages else messages)


FILTERS: tuple[Filter, ...] = (
    Filter(
        "tenantId",
        "org_id",
        to_uuid,
        "The organization (orgId in the resources); any letter case.",
        "11111111-1111-4111-8111-111111111111",
        flag="--org",
    ),
    Filter(
        "username",
        "username",
        to_username,
        "The contact's Instagram username, normalized as ingest does ('@' and case ignored).",
        "john_doe",
        flag="--username",
    ),
    Filter(
        "manychatId",
        "manychat_id",
        to_manychat_id,
        "The contact's ManyChat subscriber id.",
        "123456",
        flag="--manychat-id",
    ),
    Filter(
        "endpoint",
        "endpoint",
        choice(*ENDPOINTS),
        f"The DmTracker endpoint: {', '.join(ENDPOINTS)}.",
        "create-contact",
        flag="--endpoint",
    ),
    Filter(
        "state",
        "state",
        choice(*STATES),
        f"The delivery's state: {', '.join(STATES)}.",
        DeliveryState.DEAD,
        on_dead_letters=False,
    ),
    Filter(
        "httpStatus",
        "status",
        to_http_status,
        "The HTTP status of DmTracker's answer to the latest attempt.",
        "503",
        flag="--status",
    ),
    Filter(
        "since",
        "since",
        to_epoch,
        "Received at or after: ISO 8601 (naive means UTC) or epoch seconds.",
        "2026-11-30T10:00:00.000Z",
        flag="--since",
    ),
    Filter(
        "until",
        "until",
        to_epoch,
        "Received before: ISO 8601 (naive means UTC) or epoch seconds.",
        "2026-11-30T11:00:00.000Z",
        flag="--until",
    ),
)
# Dead-letter lists, bulk replay and bulk purge take every filter but the delivery state.
DEAD_LETTER_FILTERS = tuple(f for f in FILTERS if f.on_dead_letters)


def read_filters(
    source: Mapping[str, Any], accepted: Iterable[Filter], extra: Iterable[str] = ()
) -> DeliveryQuery:
    """Turn filter values keyed by name into a DeliveryQuery, or raise 400 naming the bad one."""
    accepted = tuple(accepted)
    names = [f.name for f in accepted]
    # An unknown name is refused, not ignored: a typo must never widen a bulk replay or purge.
    unknown = sorted(set(source) - set(names) - set(extra))
    if unknown:
        raise BadRequest(f"Unknown filter {unknown[0][:100]!r}; use {', '.join(names)}.")
    # A name sent blank or null is refused too: an unset variable in a script must not turn
    # "purge this organization's dead letters" into "purge every dead letter".
    return query_of({f.field: f.read(source[f.name]) for f in accepted if f.name in source})


def query_of(conditions: Mapping[str, Any]) -> DeliveryQuery:
    """Return the DeliveryQuery of already converted conditions, checking the time range."""
    query = DeliveryQuery(**conditions)
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise BadRequest("The 'since' filter must be earlier than 'until'.")
    return query
