"""The admin JSON API under /api/v1/admin, in the CRM-platform conventions.

Every route needs `Authorization: Bearer <admin JWT>`: reads need relay:read, anything else
relay:admin. Lists answer `{"data": [...], "meta": {total, skip, take, hasMore}}`, single
resources `{"data": {...}}`, errors `{"error": {code, message, requestId}}`. Names are
camelCase and times ISO 8601 UTC with milliseconds (relay/web/admin/resources.py).

Filters (query string on lists, JSON body on bulk replay/purge) come from one table,
relay/core/filters.py. Bulk replay and purge select exactly what `GET /dead-letters` lists for
the same filters; their body must be a JSON object, and `{}` means every dead letter.

Each token may make 1000 reads, 100 writes and 10 bulk operations (bulk replay, bulk purge)
a minute, each budget counted on its own. Every answer under /api/v1/admin carries
X-RateLimit-Limit/-Remaining/-Reset of the budget it was counted against, 401 and 403
included: a request without a valid token is counted against its client address. Only when
Redis, where the budgets live, cannot be reached does a 503 come without them.

Replaying or purging an id that is not a dead letter (unknown, expired, queued or delivered)
answers 404 RESOURCE_NOT_FOUND, as `GET /dead-letters/<id>` does for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from relay.core.delivery import DEAD_STATES, Delivery
from relay.core.errors import (
    BadRequest,
    FieldError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from relay.core.filters import DEAD_LETTER_FILTERS, FILTERS, DeliveryQuery, Filter, read_filters
from relay.core.hold import Unreadable
from relay.storage import deadletter_actions, queries
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.admin.resources import delivery_resource, overview_resource
from relay.web.client_address import client_address
from relay.web.context import current_settings, current_store
from relay.web.error_handlers import ADMIN_PREFIX, is_admin_path
from relay.web.ingest import read_json_body

log = logging.getLogger("dmrelay.admin")
bp = Blueprint("admin_api", __name__, url_prefix=ADMIN_PREFIX)

# The admin API's own limits, per token (subject + jti), in a fixed one-minute window.
READS_PER_MINUTE = 1000
WRITES_PER_MINUTE = 100
BULK_PER_MINUTE = 10
RATE_WINDOW_SECONDS = 60
# Routes that act on every matching dead letter at once: the conventions' bulk operations.
BULK_ENDPOINTS = frozenset({"admin_api.replay_matching", "admin_api.purge_matching"})

DEFAULT_SKIP = 0
MAX_SKIP = 999_999_999
DEFAULT_TAKE = 25
MAX_TAKE = 100
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
# Methods that only read; every other method changes state and needs relay:admin.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# -- authentication and the admin API's own rate limit ---------------------------------------
@bp.before_app_request
def authenticate() -> None:
    """Guard every path under the prefix, unknown ones too: count the request, then check."""
    if not is_admin_path(request.path):
        return
    budget = budget_of_request()
    try:
        claims = bearer_claims()
    except Unauthorized:
        # No token, no token's budget: the client address pays, and the 401 says how much.
        address = client_address(request, current_settings().trusted_proxies)
        charge_rate_limit(f"anonymous:{address}", budget)
        raise
    charge_rate_limit(f"{claims.get('sub', '')}:{claims.get('jti', '')}", budget)
    # Checked after charging, so refused attempts also count and carry the limit headers.
    tokens.require_scope(claims, tokens.READ if request.method in READ_METHODS else tokens.ADMIN)
    g.admin_claims = claims


def budget_of_request() -> str:
    """Return which budget the request spends: bulk, reads or writes."""
    if request.endpoint in BULK_ENDPOINTS:
        return "bulk"
    return "reads" if request.method in READ_METHODS else "writes"


def limit_of(budget: str) -> int:
    """Return the per-minute limit of a budget (read at call time, so tests may lower it)."""
    return {"bulk": BULK_PER_MINUTE, "reads": READS_PER_MINUTE}.get(budget, WRITES_PER_MINUTE)


def bearer_claims() -> dict[str, Any]:
    """Return the verified claims of the Authorization header's bearer token, or raise 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <admin token>.")
    return tokens.verify(current_settings().secret_key, token.strip())


def charge_rate_limit(payer: str, budget: str) -> None:
    """Count one request against the payer's per-minute budget; raise 429 once it is spent."""
    limit = limit_of(budget)
    hits, resets_at = current_store().stats.hit_window(
        f"admin-api:{budget}:{payer}", RATE_WINDOW_SECONDS
    )
    g.rate_limit_headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, limit - hits)),
        "X-RateLimit-Reset": str(resets_at),
    }
    if hits > limit:
        retry_after = max(1, resets_at - int(time.time()))
        raise TooManyRequests(
            f"This token may make {limit} {budget} a minute; try again in {retry_after} s.",
            headers={**g.rate_limit_headers, "Retry-After": str(retry_after)},
        )


@bp.after_app_request
def add_limit_headers(response: Response) -> Response:
    """Tell the caller its remaining budget, and keep admin data out of caches."""
    if is_admin_path(request.path):
        response.headers.update(g.get("rate_limit_headers", {}))
        response.headers["Cache-Control"] = "no-store"
    return response


# -- routes ------------------------------------------------------------------------------------
@bp.get("/overview")
def overview() -> Response:
    """Return depths, totals, rates and latency, with a per-minute throughput series."""
    store = current_store()
    data = queries.overview(store, current_settings())
    return jsonify(data=overview_resource(data, queries.throughput_series(store)))


@bp.get("/deliveries")
def list_deliveries() -> Response:
    """Return one page of deliveries matching the filters, newest first."""
    return page_of(queries.search, FILTERS)


@bp.get("/deliveries/<delivery_id:delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    """Return one delivery with its attempt log."""
    delivery = current_store().history.load(delivery_id)
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id} is kept (it may have expired or been purged).")
    return jsonify(data=delivery_resource(delivery, current_settings().secrets()))


@bp.get("/dead-letters")
def list_dead_letters() -> Response:
    """Return one page of dead letters matching the filters, newest first."""
    return page_of(queries.search_dead_letters, DEAD_LETTER_FILTERS)


@bp.get("/dead-letters/<delivery_id:delivery_id>")
def get_dead_letter(delivery_id: str) -> Response:
    """Return one dead letter with its attempt log."""
    delivery = current_store().history.load(delivery_id)
    if delivery is None or delivery.state not in DEAD_STATES:
        raise no_dead_letter(delivery_id)
    return jsonify(data=delivery_resource(delivery, current_settings().secrets()))


@bp.patch("/dead-letters/<delivery_id:delivery_id>")
def edit_dead_letter(delivery_id: str) -> Response:
    """Replace a held or dead letter's body with `payload`, checked as ingest checks one."""
    body = read_filter_body(EDIT_BODY)
    unknown = sorted(set(body) - {"payload"})
    if unknown or not isinstance(body.get("payload"), dict):
        raise BadRequest(EDIT_BODY)
    editor = str(g.get("admin_claims", {}).get("sub") or "the admin API")
    try:
        edited = deadletter_actions.edit_payload(
            current_store(), delivery_id, body["payload"], editor, current_settings().secrets()
        )
    except FieldError as error:
        raise Unprocessable(error.message) from None
    if edited is None:
        raise no_dead_letter(delivery_id)
    log.info("admin edited dead letter %s", delivery_id, extra={"fields": {"subject": editor}})
    return jsonify(data=delivery_resource(edited, current_settings().secrets()))


@bp.post("/dead-letters/<delivery_id:delivery_id>/replay")
def replay_one(delivery_id: str) -> Response:
    """Send one dead letter again with a fresh attempt budget; a held one once it passes."""
    try:
        replayed = current_store().dead.replay(delivery_id)
    except FieldError as error:
        raise Unprocessable(f"Still held: {error.message} Edit its body first.") from None
    if not replayed:
        raise no_dead_letter(delivery_id)
    return action_response("replayed", [delivery_id])


@bp.delete("/dead-letters/<delivery_id:delivery_id>")
def purge_one(delivery_id: str) -> Response:
    """Forget one dead letter."""
    return apply_to_one(delivery_id, deadletter_actions.purge, "purged")


@bp.post("/dead-letters/replay")
def replay_matching() -> Response:
    """Replay every dead letter the body's filters match."""
    return apply_to_matching(deadletter_actions.replay, "replayed")


@bp.post("/dead-letters/purge")
def purge_matching() -> Response:
    """Forget every dead letter the body's filters match."""
    return apply_to_matching(deadletter_actions.purge, "purged")


# -- actions -----------------------------------------------------------------------------------
Operation = Callable[[Store, Iterable[str]], list[str]]


def apply_to_one(delivery_id: str, operation: Operation, verb: str) -> Response:
    """Replay or purge one dead letter, or raise 404 when there is no such dead letter."""
    done = operation(current_store(), [delivery_id])
    if not done:
        raise no_dead_letter(delivery_id)
    return action_response(verb, done)


def apply_to_matching(operation: Operation, verb: str) -> Response:
    """Replay or purge exactly the dead letters GET /dead-letters lists for the body's filters."""
    query = read_filters(read_filter_body(), DEAD_LETTER_FILTERS)
    store = current_store()
    done = operation(store, deadletter_actions.matching_ids(store, query))
    return action_response(verb, done)


def action_response(verb: str, ids: list[str]) -> Response:
    """Log the admin action and answer the ids it touched."""
    claims = g.get("admin_claims", {})
    log.info(
        "admin %s %d dead letter(s)",
        verb,
        len(ids),
        extra={
            "fields": {
                "action": verb,
                "subject": claims.get("sub"),
                "count": len(ids),
                "delivery_ids": ids,
            }
        },
    )
    return jsonify(data={verb: ids, "count": len(ids)})


def no_dead_letter(delivery_id: str) -> NotFound:
    """Return the 404 for an id that is not (or no longer) a dead letter."""
    return NotFound(f"No dead letter {delivery_id} (unknown, expired, purged or not dead).")


# -- filters and pagination ---------------------------------------------------------------------
PAGE_PARAMETERS = frozenset({"skip", "take"})
Search = Callable[[Store, DeliveryQuery, int, int], tuple[list[Delivery], int]]


EDIT_BODY = 'Send {"payload": {...}}: the whole body to send DmTracker, as a JSON object.'
FILTER_BODY = "Send the filters as a JSON object; {} matches every dead letter."


def read_filter_body(expected: str = FILTER_BODY) -> dict[str, Any]:
    """Return the JSON object a bulk action (or an edit) was sent with."""
    # The CRM-platform conventions name application/json the request format.
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")
    try:
        body = read_json_body()
    except Unreadable as error:
        raise BadRequest(error.message) from None
    if not isinstance(body, dict):
        raise BadRequest(expected)
    return body


def read_page() -> tuple[int, int]:
    """Return skip and take from the query string, checked against the API's bounds."""
    skip = whole_number("skip", DEFAULT_SKIP, minimum=0, maximum=MAX_SKIP)
    take = whole_number("take", DEFAULT_TAKE, minimum=1, maximum=MAX_TAKE)
    return skip, take


def whole_number(name: str, default: int, *, minimum: int, maximum: int) -> int:
    """Return a query parameter as a whole number within bounds, or raise 400."""
    text = request.args.get(name)
    if text is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise BadRequest(
            f"'{name}' must be a whole number from {minimum} to {maximum}; got {text[:40]!r}."
        )
    return int(text)


def page_of(search: Search, accepted: tuple[Filter, ...]) -> Response:
    """Answer the page a search finds for the request's filters, with the conventions' meta."""
    query = read_filters(request.args, accepted, extra=PAGE_PARAMETERS)
    skip, take = read_page()
    found, total = search(current_store(), query, skip, take)
    meta = {"total": total, "skip": skip, "take": take, "hasMore": skip + len(found) < total}
    secrets = current_settings().secrets()
    return jsonify(data=[delivery_resource(d, secrets) for d in found], meta=meta)


# -- app access --------------------------------------------------------------------------------
