"""The ManyChat-facing surface: DmTracker's own routes, queued durably, answered in time."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from relay.config import Org, Settings
from relay.core import defaults
from relay.core.delivery import Delivery
from relay.core.endpoints import TOKEN_HEADER
from relay.core.errors import BadRequest, FieldError, Forbidden
from relay.core.record import reception_timestamp
from relay.core.redact import holds_secret
from relay.core.schemas import validate
from relay.logs import bind_context
from relay.storage.intake import Accepted, fingerprint
from relay.web.answer import answer, current_answer_waits, requested_wait
from relay.web.auth import organization_for_token
from relay.web.context import current_front_door, current_metrics, current_settings

bp = Blueprint("ingest", __name__, url_prefix="/api/v1")


@bp.post("/contact/default-reply")
def default_reply() -> Response:
    """Accept a ManyChat default reply."""
    return ingest("default-reply")


@bp.post("/organization/create-contact")
def create_contact() -> Response:
    """Accept a contact to create or update."""
    return ingest("create-contact")


@bp.post("/contact/update-tags-external")
def update_tags() -> Response:
    """Accept a tag update."""
    return ingest("update-tags")


# ManyChat cannot send PATCH, so POST and PUT are accepted too; the worker always PATCHes.
@bp.route("/contact/contact-status", methods=["PATCH", "POST", "PUT"])
def contact_status() -> Response:
    """Accept a lead status or pipeline stage change."""
    return ingest("contact-status")


def ingest(endpoint: str, to_request: Callable[[Any], Any] | None = None) -> Response:
    """Authenticate, validate, filter, deduplicate, enqueue and answer one request.

    `to_request` turns another shape of body (ManyChat's Full Contact Data) into DmTracker's.
    """
    settings = current_settings()
    secrets = settings.secrets()
    g.endpoint = endpoint  # the ingest metric's label
    bind_context(endpoint=endpoint)
    org = organization_for_token(request.headers.get(TOKEN_HEADER), settings.orgs)
    bind_context(organization=org.id)
    received = read_json_body(secrets)
    validated = validate(endpoint, to_request(received) if to_request else received)
    body = bind_organization(validated.body, org, settings)
    if validated.skip_reason:
        g.ingest_result = ("skipped", validated.skip_reason)
        return skipped(validated.skip_reason)
    door = current_front_door()
    door.admit(org.id)
    same_request = fingerprint(org.id, endpoint, json.dumps(body, sort_keys=True))
    received_at = time.time()
    delivery = Delivery.new(
        org.id,
        endpoint,
        dated(endpoint, body, received_at),
        received_at,
        request_id=g.get("request_id", ""),
        idempotency_key=idempotency_key(secrets),
    )
    bind_context(delivery_id=delivery.id)  # so a line logged while storing it names it
    started = time.perf_counter()
    accepted = door.accept(delivery, same_request)
    metrics = current_metrics()
    metrics.observe("dmrelay_enqueue_seconds", time.perf_counter() - started, endpoint=endpoint)
    if accepted.delivery_id != delivery.id:
        bind_context(delivery_id=accepted.delivery_id)  # a duplicate's is the first one's
    g.ingest_result = (result_of(accepted), "")
    if not accepted.duplicate:
        door.store.stats.count_later(org.id, endpoint, "accepted")
    if accepted.spooled:
        # Redis is away: no answer can come before it is back, so nobody waits for one.
        current_answer_waits().listener.release_all()
        return spooled(accepted.delivery_id)
    return answer(accepted, requested_wait(endpoint, settings), org.id)


def read_json_body(secrets: tuple[str, ...] = ()) -> Any:
    """Return the parsed JSON body whatever its Content-Type, or raise 400."""
    # ManyChat and hand-made flows send JSON as text/plain or with no type at all; DmTracker's
    # docs name no 415, and refusing would lose the lead.
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, bad UTF-8, NaN/Infinity, 1e400 and integers too long.
        raise BadRequest("The request body is not valid JSON.") from None
    check_storable(body, secrets)
    return body


def _not_json(constant: str) -> None:
    """Refuse NaN and Infinity, which Python's parser takes but DmTracker's would not."""
    raise ValueError(constant)


def _finite(text: str) -> float:
    """Refuse a number too large for a float: 1e400 would be stored, then never sendable."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def check_storable(body: Any, secrets: tuple[str, ...]) -> None:
    """Refuse JSON the relay must not store: too deep, lone surrogates, or a secret in it."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > defaults.MAX_JSON_DEPTH:
            raise BadRequest(
                f"The request body nests deeper than {defaults.MAX_JSON_DEPTH} levels."
            )
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _is_unicode(value):
            raise BadRequest(
                "The request body holds an unpaired surrogate escape (\\ud800-\\udfff)."
            )
        elif isinstance(value, str) and holds_secret(value, secrets):
            # Stored, it would sit in Redis, the dashboard and dead letters.
            raise BadRequest(
                "The request body holds one of the relay's secrets; send the organization"
                " token only in the x-org-auth-token header."
            )


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def dated(endpoint: str, body: dict[str, Any], received_at: float) -> dict[str, Any]:
    """Give a reply without message_date the time it reached the relay, not of its delivery."""
    # DmTracker takes "now" when it is missing, which after a retry could be hours late. The
    # stored record leaves this date out and puts it back from its reception time.
    if endpoint != "default-reply" or body.get("message_date"):
        return body
    return {**body, "message_date": reception_timestamp(received_at)}


def bind_organization(body: dict[str, Any], org: Org, settings: Settings) -> dict[str, Any]:
    """Check the body names the token's organization and fill it in when omitted."""
    named = body.get("organization_id")
    if named is not None and named != org.id:
        raise Forbidden("The token does not belong to the organization in 'organization_id'.")
    page_name = body.get("page_name")
    if named is None and page_name and _page_belongs_elsewhere(page_name, org, settings):
        raise Forbidden("The token does not belong to the organization of 'page_name'.")
    return {**body, "organization_id": org.id}


def _page_belongs_elsewhere(page_name: str, org: Org, settings: Settings) -> bool:
    return any(other.page_name == page_name and other.id != org.id for other in settings.orgs)


def idempotency_key(secrets: tuple[str, ...] = ()) -> str:
    """Return the Idempotency-Key header, bounded in length and free of secrets."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > defaults.IDEMPOTENCY_KEY_MAX_CHARS:
        raise FieldError(
            "Idempotency-Key", f"must be at most {defaults.IDEMPOTENCY_KEY_MAX_CHARS} characters."
        )
    if holds_secret(key, secrets):
        # The key is stored with the delivery, in Redis and in the admin views.
        raise BadRequest(
            "The Idempotency-Key header holds one of the relay's secrets; send the organization"
            " token only in the x-org-auth-token header."
        )
    return key


def skipped(reason: str) -> Response:
    """Answer a message that is filtered out and not queued."""
    return jsonify(
        status="skipped",
        message="Message not forwarded: it carries no reply to track.",
        data={"reason": reason},
    )


def result_of(accepted: Accepted) -> str:
    """Name what became of an accepted request, for the log line and metrics."""
    if accepted.spooled:
        return "spooled"
    return "duplicate" if accepted.duplicate else "accepted"


def spooled(delivery_id: str) -> Response:
    """Answer a message kept in the local spool until Redis takes it."""
    return jsonify(
        status="spooled",
        message="Message accepted; it will be queued as soon as the relay's store is back.",
        data={"delivery_id": delivery_id},
    )
