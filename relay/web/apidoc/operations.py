"""Every described route, in one table: OPERATIONS, keyed by the route's Flask endpoint.

To describe a new route (tests/integration/test_openapi.py fails until you do):
1. Give its view function a one-line docstring: it becomes the operation's summary.
2. Add a row to OPERATIONS under the route's endpoint name, "<blueprint>.<function>":

       "notes.add": Operation(
           tag=INGEST,
           auth=ORG_SCHEME,
           body=NoteSchema,                  # a marshmallow schema, or None
           answers={200: STORED, **INGEST_ERRORS},
       ),

   or, for a route that takes the plain ingest path, `ingest(NoteSchema)`. The path, its
   methods and its path parameters are read from the Flask route itself; every answer gets
   X-Request-Id, and every admin answer the X-RateLimit-* headers.
3. A request body's fields are described by their converters (`accepts` in
   relay/core/schemas.py) or by marshmallow's own field types; an answer is a marshmallow
   schema whose fields are always sent (see relay/web/apidoc/answers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields
from marshmallow.validate import Range

from relay.core import defaults
from relay.core.schemas import (
    ContactStatusSchema,
    CreateContactSchema,
    DefaultReplySchema,
    UpdateTagsSchema,
)
from relay.web.admin import api as admin_api
from relay.web.admin import controls as admin_controls
from relay.web.admin import resources
from relay.web.apidoc import answers

# Tags, in the order the reference page lists them.
INGEST = "Ingest (ManyChat-facing)"
STATUS = "Delivery status (integrators)"
ADMIN = "Admin API"
OPS = "Operations"
DOCS = "Documentation"
TAGS = {
    INGEST: "DmTracker's own routes, answered at once and delivered durably. Errors are in "
    'DmTracker\'s shape, `{"error", "message"}`.',
    STATUS: "Where one of the organization's deliveries stands, with its own token.",
    ADMIN: "The relay's admin API in the CRM-platform conventions: Bearer JWT with scopes, "
    "`skip`/`take` pagination with `meta`, camelCase names, ISO 8601 UTC times with "
    'milliseconds, errors `{"error": {code, message, requestId}}`, X-RateLimit-* headers '
    "on every answer (reads 1000/min, writes 100/min, bulk operations 10/min, per token).",
    OPS: "Liveness, readiness and Prometheus metrics.",
    DOCS: "This description and its reference page.",
}

# Security schemes, by the name operations use.
ORG_SCHEME = "orgToken"
ADMIN_SCHEME = "adminToken"
SCRAPE_SCHEME = "scrapeToken"
SECURITY_SCHEMES = {
    ORG_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "x-org-auth-token",
        "description": "The organization's DmTracker token, as ManyChat sends it.",
    },
    ADMIN_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An admin token from `dmrelay token`: reads need relay:read, "
        "anything else relay:admin.",
    },
    SCRAPE_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "DMRELAY_METRICS_TOKEN, or an admin token with relay:read.",
    },
}


@dataclass(frozen=True)
class Answer:
    """One documented answer: what it means, its body, and its headers."""

    description: str
    schema: Any = None  # a marshmallow schema, a JSON Schema dict, or None for no body
    media_type: str = "application/json"
    headers: tuple[str, ...] = ()  # names of headers in the components


@dataclass(frozen=True)
class Operation:
    """What the description says about a route beyond what Flask knows."""

    tag: str
    answers: Mapping[int, Answer]
    auth: str | None = None
    body: Any = None  # the JSON request body's marshmallow schema
    query: tuple[type[Schema], ...] = ()  # schemas whose fields are query parameters
    shared_parameters: tuple[str, ...] = ()  # names of parameters in the components
    description: str = ""


def json(description: str, schema: Any, *headers: str) -> Answer:
    """Return a JSON answer."""
    return Answer(description, schema, headers=headers)


def error(description: str) -> Answer:
    """Return an error of the ManyChat-facing surfaces, in DmTracker's shape."""
    return json(description, answers.DmTrackerError)


def admin_error(description: str, *headers: str) -> Answer:
    """Return an error of the admin API, in its envelope."""
    return json(description, resources.ErrorAnswer, *headers)


RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# anyOf, not oneOf: DmTracker's own answer is any object carrying the relay's note.
STORED_OR_SKIPPED = {
    "anyOf": [answers.Queued, answers.Delivered, answers.Spooled, answers.Held, answers.Skipped]
}
REDIS_DOWN = "The relay cannot reach Redis right now; nothing was stored."

INGEST_ERRORS = {
    400: error("The body or Idempotency-Key holds one of the relay's secrets; nothing is stored."),
    401: error("Missing or invalid x-org-auth-token."),
    403: error("The token does not belong to the organization the body names."),
    413: error(f"The body is larger than {defaults.MAX_BODY_BYTES // 1024} KiB."),
    429: json(
        "The organization sent more than DMRELAY_INGEST_RATE_PER_ORG requests a second.",
        answers.DmTrackerRateLimit,
        "Retry-After",
    ),
    503: error(
        "Too many messages wait undelivered, for the organization or in all (with Retry-After),"
        " or Redis cannot take the message and the local spool is full or cannot be written."
    ),
}


INGEST_TERMS = (
    "The body DmTracker documents for this route. As ManyChat sends them, an optional field "
    "that is null, blank or an unrendered placeholder ({{first_name}}) counts as not sent, "
    "numbers may come as strings, and unknown fields are forwarded unchanged. A body breaking "
    "one of DmTracker's rules (or not JSON at all, or missing a required field) is held: "
    "answered 200 `held`, kept in the dead letters to fix and replay, never sent. An answer of "
    "200 means the message is stored: it is delivered or ends in the dead letters. Within the wait "
    "(?wait= or X-Dmrelay-Wait, at most 8 s) the answer is DmTracker's own, with `relay` beside "
    "it; after it, the relay's `queued` answer."
)
FULL_CONTACT_TERMS = (
    "ManyChat's Full Contact Data, as the body itself or under contact, subscriber, "
    "full_contact_data, user or data, with the action's DmTracker fields beside it; a "
    "per-channel field (ig_last_interaction) stands in for a null generic one; mapped onto the "
    "action's DmTracker body, then checked and answered as the action's own route."
)
STORED = json(
    "Stored (queued, or DmTracker's own answer), spooled while Redis is away, held, or skipped.",
    STORED_OR_SKIPPED,
)


def ingest(
    body: Any, terms: str = INGEST_TERMS, more: dict[int, Answer] | None = None
) -> Operation:
    """Return the description of an ingest route taking a body, with any answers of its own."""
    return Operation(
        tag=INGEST,
        auth=ORG_SCHEME,
        body=body,
        shared_parameters=("Idempotency-Key", "X-Dmrelay-Wait", "wait"),
        answers={200: STORED} | INGEST_ERRORS | (more or {}),
        description=terms,
    )


def admin(ok: Answer, *errors: int, **details: Any) -> Operation:
    """Return an admin route's description: its answer and errors, all with limit headers."""
    meanings = {
        400: "A filter, page bound or body is malformed; nothing was changed.",
        401: "Missing, invalid or expired bearer token.",
        403: "The token lacks the scope (replay and purge need relay:admin).",
        404: "No such delivery, or it is not a dead letter.",
        413: f"The body is larger than {defaults.MAX_BODY_BYTES // 1024} KiB.",
        415: "The body is not sent as application/json.",
        422: "The edited body breaks one of ingest's rules (the message names it); nothing "
        "was changed.",
    }
    documented = {200: json(ok.description, ok.schema, *RATE_LIMIT_HEADERS)}
    for status in (*errors, 401, 403):
        documented[status] = admin_error(meanings[status], *RATE_LIMIT_HEADERS)
    documented[429] = admin_error(
        "The token's budget for this minute is spent.", *RATE_LIMIT_HEADERS, "Retry-After"
    )
    documented[503] = admin_error(REDIS_DOWN + " The budget is unknown, so no limit headers.")
    return Operation(tag=ADMIN, auth=ADMIN_SCHEME, answers=documented, **details)


class Page(Schema):
    """Pagination, as the conventions have it."""

    skip = fields.Integer(validate=Range(0, admin_api.MAX_SKIP), metadata={"default": 0})
    take = fields.Integer(
        validate=Range(1, admin_api.MAX_TAKE), metadata={"default": admin_api.DEFAULT_TAKE}
    )


def listing(filters: type[Schema]) -> Operation:
    """Return the description of a paginated, filtered admin list."""
    return admin(
        json("One page, newest first.", resources.DeliveryPage), 400, query=(filters, Page)
    )


def bulk(result: type[Schema]) -> Operation:
    """Return the description of a bulk replay or purge."""
    return admin(
        json("What was done.", result),
        400,
        413,
        415,
        body=resources.DeadLetterFilters,
        description="Acts on exactly what GET /dead-letters lists for the same filters; "
        "`{}` means every dead letter. An unknown filter name is refused, never ignored.",
    )


OPERATIONS: dict[str, Operation] = {
    # -- ingest (relay/web/ingest.py) -----------------------------------------------------------
    "ingest.default_reply": ingest(DefaultReplySchema),
    "ingest.create_contact": ingest(CreateContactSchema),
    "ingest.update_tags": ingest(UpdateTagsSchema),
    "ingest.contact_status": ingest(ContactStatusSchema),
    # -- Full Contact Data (relay/web/manychat.py) -----------------------------------------------
    "manychat.full_contact_data": ingest(
        answers.FullContactData,
        FULL_CONTACT_TERMS,
        {404: error("The action is not one of the four: no such route.")},
    ),
    # -- the integrator's delivery status (relay/web/status.py) ----------------------------------
    "delivery_status.delivery_status": Operation(
        tag=STATUS,
        auth=ORG_SCHEME,
        answers={
            200: json("Where the delivery stands.", answers.DeliveryStatusAnswer),
            401: error("Missing or invalid x-org-auth-token."),
            404: error("No such delivery for this organization (or it expired)."),
            503: error(REDIS_DOWN),
        },
    ),
    # -- admin API (relay/web/admin/api.py) ------------------------------------------------------
    "admin_api.overview": admin(json("The overview.", resources.OverviewAnswer)),
    "admin_api.list_deliveries": listing(resources.DeliveryFilters),
    "admin_api.get_delivery": admin(json("The delivery.", resources.DeliveryAnswer), 404),
    "admin_api.list_dead_letters": listing(resources.DeadLetterFilters),
    "admin_api.get_dead_letter": admin(json("The dead letter.", resources.DeliveryAnswer), 404),
    "admin_api.replay_one": admin(
        json("Replayed.", resources.ReplayAnswer),
        404,
        422,
        description="A held dead letter is checked first as ingest checks a body; one that "
        "still breaks a rule stays held (422).",
    ),
    "admin_api.edit_dead_letter": admin(
        json(
            "The dead letter, its body replaced and the edit in its attempt log.",
            resources.DeliveryAnswer,
        ),
        400,
        404,
        413,
        415,
        422,
        body=resources.EditBody,
        description="Replace a held or dead letter's body (the whole body to send DmTracker). "
        "It is checked as ingest checks one, recorded in the attempt log, and sent on replay.",
    ),
    "admin_api.purge_one": admin(json("Purged.", resources.PurgeAnswer), 404),
    "admin_api.replay_matching": bulk(resources.ReplayAnswer),
    "admin_api.purge_matching": bulk(resources.PurgeAnswer),
    "admin_controls.list_organizations": admin(
        json("Every organization.", admin_controls.OrganizationList)
    ),
    "admin_controls.pause": admin(
        json("Paused (or paused already).", admin_controls.OrganizationAnswer), 404
    ),
    "admin_controls.resume": admin(
        json("Resumed (or not paused).", admin_controls.OrganizationAnswer), 404
    ),
    # -- operations (relay/web/ops.py) -----------------------------------------------------------
    "ops.healthz": Operation(tag=OPS, answers={200: json("Up.", answers.Health)}),
    "ops.readyz": Operation(
        tag=OPS,
        answers={
            200: json("Redis takes writes and nothing waits in the spool.", answers.Readiness),
            503: json("Redis refuses writes, or requests wait in the spool.", answers.Readiness),
        },
    ),
    "ops.metrics_endpoint": Operation(
        tag=OPS,
        auth=SCRAPE_SCHEME,
        answers={
            200: Answer("Prometheus text format.", {"type": "string"}, "text/plain"),
            401: error("Missing or wrong token."),
            403: error("An admin token without relay:read."),
            503: error(REDIS_DOWN),
        },
    ),
    # -- this description (relay/web/apidoc/views.py) -------------------------------------------
    "apidoc.openapi_json": Operation(
        tag=DOCS, answers={200: json("This description, OpenAPI 3.1.", {"type": "object"})}
    ),
    "apidoc.reference": Operation(
        tag=DOCS,
        answers={200: Answer("The reference page.", {"type": "string"}, "text/html")},
    ),
}
