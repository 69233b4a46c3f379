"""Filters on deliveries, read from a query string, a form or a JSON body, into one query."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from relay.core.delivery import STATES
from relay.core.endpoints import ENDPOINTS
from relay.core.errors import BadRequest
from relay.core.schemas import (
    choice,
    to_manychat_id,
    to_natural,
    to_timestamp,
    to_username,
    to_uuid,
)
from relay.storage import queries

_EPOCH_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]+)?")


def to_http_status(value: object) -> int:
    """Return an HTTP status code given as a number or digits."""
    status = to_natural(value)
    if not 100 <= status <= 599:
        raise ValidationError("must be an HTTP status code such as 400.")
    return status


def to_epoch(value: object) -> float:
    """Return epoch seconds given as a number, digits, or an ISO 8601 date-time."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)  # OverflowError on an integer too large for a float
        if isinstance(value, str) and _EPOCH_SECONDS.fullmatch(value.strip()):
            return float(value)
        # to_timestamp checks the shape and normalizes to UTC (naive means UTC).
        normalized = to_timestamp(value).replace("Z", "+00:00")
    except (ValidationError, OverflowError):
        raise ValidationError(
            "must be an ISO 8601 date-time such as 2025-01-31T14:00:00Z, or epoch seconds."
        ) from None
    return datetime.fromisoformat(normalized).timestamp()


# Query or body name -> (DeliveryQuery field, converter that normalizes like ingest does).
LIST_FILTERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "tenantId": ("org_id", to_uuid),
    "username": ("username", to_username),
    "manychat_id": ("manychat_id", to_manychat_id),
    "endpoint": ("endpoint", choice(*ENDPOINTS)),
    "status": ("state", choice(*STATES)),
    "httpStatus": ("status", to_http_status),
    "since": ("since", to_epoch),
    "until": ("until", to_epoch),
}
# Bulk actions act on dead letters only, so every list filter but the delivery state.
BULK_FILTERS = {name: rule for name, rule in LIST_FILTERS.items() if name != "status"}


def read_filters(
    source: Mapping[str, Any],
    accepted: Mapping[str, tuple[str, Callable[[Any], Any]]],
    extra: Iterable[str] = (),
) -> queries.DeliveryQuery:
    """Turn filter values into a DeliveryQuery, or raise 400 naming the bad one."""
    # An unknown name is refused, not ignored: a typo must never widen a bulk replay or purge.
    unknown = sorted(set(source) - set(accepted) - set(extra))
    if unknown:
        raise BadRequest(f"Unknown filter {unknown[0]!r}; use {', '.join(accepted)}.")
    conditions = {}
    for name, (field, convert) in accepted.items():
        value = source.get(name)
        if value not in (None, ""):
            conditions[field] = checked(name, convert, value)
    query = queries.DeliveryQuery(**conditions)
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise BadRequest("The 'since' filter must be earlier than 'until'.")
    return query


def checked(name: str, convert: Callable[[Any], Any], value: Any) -> Any:
    """Return the converted value, or raise 400 with the converter's reason."""
    try:
        return convert(value)
    except ValidationError as error:
        messages = error.messages
        reason = messages[0] if isinstance(messages, list) and messages else str(messages)
        raise BadRequest(f"The '{name}' filter {reason}") from None
