"""The admin API's resources and envelopes, as marshmallow schemas.

The same schemas turn the relay's data into answers (`dump`) and describe those answers in
/openapi.json, so what is documented is what is sent. Field names are written in Python's
snake_case and sent in camelCase; every time is sent as ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

import functools
from typing import Any

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from relay.core.delivery import STATES, Delivery
from relay.core.endpoints import ENDPOINTS
from relay.core.filters import DEAD_LETTER_FILTERS, FILTERS
from relay.core.redact import mask, redact_json
from relay.core.schemas import Checked
from relay.core.times import iso_time


def camel(name: str) -> str:
    """Return a snake_case name in camelCase."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class IsoTime(fields.Field[Any]):
    """Epoch seconds, sent as 2026-11-30T10:00:00.000Z."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso_time(value)


class Resource(Schema):
    """An answer of the admin API: camelCase names, every field always present."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field[Any]) -> None:
        """Send the field under its camelCase name, and describe it as always sent."""
        field_obj.data_key = camel(field_obj.data_key or field_name)
        # Dump writes every declared field, so the description lists each one as required.
        field_obj.required = True


def outcome_counts(**kwargs: Any) -> fields.Dict:
    """Return a field holding counts keyed by outcome (delivered, dead, ...)."""
    return fields.Dict(keys=fields.String(), values=fields.Integer(), **kwargs)


# -- deliveries ---------------------------------------------------------------------------------
class Contact(Resource):
    """Who a delivery is about, as ingest received it (null where the body did not say)."""

    username = fields.String(allow_none=True)
    manychat_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)


class AttemptResource(Resource):
    """One call to DmTracker: when, its answer's status and body, how long it took."""

    at = IsoTime()
    http_status = fields.Integer(attribute="status", allow_none=True)
    latency_ms = fields.Float()
    outcome = fields.String()
    body = fields.String(metadata={"description": "DmTracker's answer, cut to 2 KiB."})
    error = fields.String(allow_none=True)


class DeliveryResource(Resource):
    """One accepted request on its way to DmTracker, with its attempt log."""

    id = fields.String()
    org_id = fields.String(metadata={"format": "uuid"})
    endpoint = fields.String(validate=OneOf(list(ENDPOINTS)))
    state = fields.String(validate=OneOf(STATES))
    received_at = IsoTime()
    request_id = fields.String(metadata={"description": "X-Request-Id of the ingest request."})
    idempotency_key = fields.String()
    contact = fields.Nested(Contact)
    payload = fields.Dict(metadata={"description": "The body sent on; credentials masked."})
    received_body = fields.String(
        metadata={"description": "A held request's body as it came, as text; else empty."}
    )
    attempt_count = fields.Integer()
    attempts_used = fields.Integer(
        metadata={"description": "Attempts counted against the budget (429s are not)."}
    )
    attempts_omitted = fields.Integer(
        metadata={"description": "Attempts dropped from the middle of a long log."}
    )
    attempts = fields.List(fields.Nested(AttemptResource))
    next_attempt_at = IsoTime(allow_none=True)
    reason = fields.String(allow_none=True)
    finished_at = IsoTime(allow_none=True)
    replays = fields.Integer()
    summary = fields.Boolean(
        metadata={
            "description": "True when only the summary of a delivered message is kept: its"
            " contact, final attempt and DmTracker's routing fields, no request body."
        }
    )


def delivery_resource(delivery: Delivery, secrets: tuple[str, ...]) -> dict[str, Any]:
    """Return a delivery as the API shows it: no internal keys, credentials masked."""
    payload = delivery.payload
    source = {
        **vars(delivery),
        "payload": redact_json(payload, secrets),
        "received_body": mask(delivery.received_body, secrets),
        "contact": {
            "username": payload.get("username"),
            "manychat_id": payload.get("manychat_id"),
            "contact_id": payload.get("contact_id"),
        },
        "attempt_count": delivery.attempt_count,
        "summary": delivery.is_summary,
    }
    resource: dict[str, Any] = delivery_schema().dump(source)
    return resource


@functools.cache
def delivery_schema() -> DeliveryResource:
    """Return the one DeliveryResource every answer dumps with (building one per delivery
    copies every field: most of the time a page of deliveries took)."""
    return DeliveryResource()


# -- overview -----------------------------------------------------------------------------------
class Totals(Resource):
    """Deliveries in each condition right now."""

    pending = fields.Integer()
    parked = fields.Integer()
    dead_letters = fields.Integer()
    in_flight = fields.Integer()
    workers = fields.Integer()


class Depth(Resource):
    """One organization's queue: waiting now, and waiting for a retry."""

    queued = fields.Integer()
    scheduled = fields.Integer()


class Window(Resource):
    """Outcomes over a recent span, in all and per minute, by endpoint and organization."""

    seconds = fields.Integer()
    counts = outcome_counts()
    per_minute = fields.Dict(keys=fields.String(), values=fields.Float())
    by_endpoint = fields.Dict(keys=fields.String(), values=outcome_counts())
    by_organization = fields.Dict(keys=fields.String(), values=outcome_counts())


class Windows(Resource):
    """The last minute, hour and day."""

    minute = fields.Nested(Window)
    hour = fields.Nested(Window)
    day = fields.Nested(Window)


class Latency(Resource):
    """DmTracker's latency percentiles in milliseconds (null without samples)."""

    p50 = fields.Float(allow_none=True)
    p90 = fields.Float(allow_none=True)
    p99 = fields.Float(allow_none=True)


class SeriesPoint(Resource):
    """One minute of throughput, counts by outcome."""

    minute = IsoTime()
    counts = outcome_counts()


class Overview(Resource):
    """Depths, totals, rates, latency and the last hour's throughput."""

    generated_at = IsoTime()
    totals = fields.Nested(Totals)
    queued = fields.Integer()
    scheduled_retries = fields.Integer()
    organizations = fields.Dict(keys=fields.String(), values=fields.Nested(Depth))
    windows = fields.Nested(Windows)
    latency_ms = fields.Nested(Latency)
    series = fields.List(fields.Nested(SeriesPoint))


def overview_resource(data: dict[str, Any], series: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the read model's overview and per-minute series as the API shows them."""
    points = [
        {"minute": point["minute"], "counts": {k: v for k, v in point.items() if k != "minute"}}
        for point in series
    ]
    resource: dict[str, Any] = Overview().dump({**data, "series": points})
    return resource


# -- envelopes ----------------------------------------------------------------------------------
class PageMeta(Resource):
    """Where a page sits in the whole list."""

    total = fields.Integer()
    skip = fields.Integer()
    take = fields.Integer()
    has_more = fields.Boolean()


class DeliveryPage(Resource):
    """One page of deliveries, newest first."""

    data = fields.List(fields.Nested(DeliveryResource))
    meta = fields.Nested(PageMeta)


class DeliveryAnswer(Resource):
    """One delivery."""

    data = fields.Nested(DeliveryResource)


class OverviewAnswer(Resource):
    """The overview."""

    data = fields.Nested(Overview)


class Replayed(Resource):
    """The dead letters sent again."""

    replayed = fields.List(fields.String())
    count = fields.Integer()


class ReplayAnswer(Resource):
    """What a replay did."""

    data = fields.Nested(Replayed)


class Purged(Resource):
    """The dead letters forgotten."""

    purged = fields.List(fields.String())
    count = fields.Integer()


class PurgeAnswer(Resource):
    """What a purge did."""

    data = fields.Nested(Purged)


class ErrorDetail(Resource):
    """What went wrong, with the request id to quote."""

    code = fields.String(metadata={"examples": ["RESOURCE_NOT_FOUND"]})
    message = fields.String()
    request_id = fields.String(allow_none=True)


class ErrorAnswer(Resource):
    """The admin API's error envelope."""

    error = fields.Nested(ErrorDetail)


# -- filters, as the description shows them ------------------------------------------------------
def filter_fields(rows: tuple[Any, ...]) -> dict[str, fields.Field[Any]]:
    """Return one field per filter, described by its converter and documentation line."""
    return {
        row.name: Checked(row.convert, metadata={"description": row.doc, "examples": [row.example]})
        for row in rows
    }


DeliveryFilters = Schema.from_dict(filter_fields(FILTERS), name="DeliveryFilters")
DeadLetterFilters = Schema.from_dict(filter_fields(DEAD_LETTER_FILTERS), name="DeadLetterFilters")


class EditBody(Schema):
    """PATCH /dead-letters/<id>: the new body of a held or dead letter."""

    payload = fields.Dict(
        required=True,
        metadata={"description": "The whole body to send DmTracker, as ingest would take it."},
    )
