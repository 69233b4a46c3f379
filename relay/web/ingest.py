"""The ManyChat-facing surface: DmTracker's own routes, queued durably, answered in time."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from relay.config import Org, Settings
from relay.core import defaults
from relay.core.delivery import Delivery, DeliveryState
from relay.core.endpoints import TOKEN_HEADER
from relay.core.errors import BadRequest, FieldError, Forbidden
from relay.core.hold import Unreadable, dated, held_delivery, rule_of
from relay.core.redact import holds_secret
from relay.core.repair import repair
from relay.core.schemas import to_uuid, validate
from relay.logs import bind_context
from relay.storage.intake import Accepted, fingerprint
from relay.web.answer import answer, current_answer_waits, requested_wait
from relay.web.auth import organization_for_token
from relay.web.context import current_front_door, current_metrics, current_settings

bp = Blueprint("ingest", __name__, url_prefix="/api/v1")
BODY_WITH_CREDENTIAL = (
    "The request body holds one of the relay's secrets; send the organization"
    " token only in the x-org-auth-token header."
)


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


def ingest(
    endpoint: str,
    to_request: Callable[[Any], Any] | None = None,
    explain: Callable[[FieldError], FieldError] | None = None,
) -> Response:
    """Authenticate, check, filter, deduplicate, enqueue and answer one request; hold it when
    it breaks one of DmTracker's rules.

    `to_request` turns another shape of body (ManyChat's Full Contact Data) into DmTracker's,
    and `explain` adds to a broken rule where in that shape the field came from.
    """
    settings = current_settings()
    secrets = settings.secrets()
    g.endpoint = endpoint  # the ingest metric's label
    bind_context(endpoint=endpoint)
    org = organization_for_token(request.headers.get(TOKEN_HEADER), settings.orgs)
    bind_context(organization=org.id)
    candidate: Any = None
    try:
        candidate = read_json_body(secrets, repair_empty_variables=True)
        if to_request:
            candidate = to_request(candidate)
        validated = validate(endpoint, candidate)
    except FieldError as error:
        return hold(endpoint, org, candidate, explain(error) if explain else error)
    except Unreadable as error:
        return hold(endpoint, org, None, error)
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


def hold(endpoint: str, org: Org, candidate: Any, error: FieldError | Unreadable) -> Response:
    """Keep a request that breaks a rule as a held dead letter, and answer 200 "held"."""
    settings = current_settings()
    received_body = request.get_data(cache=True).decode("utf-8", errors="replace")
    if holds_secret(received_body, settings.secrets()):
        raise BadRequest(BODY_WITH_CREDENTIAL)  # stored, it would sit in Redis and the dashboard
    payload = candidate if isinstance(candidate, dict) else {}
    refuse_other_organization(payload, org, settings)
    door = current_front_door()
    door.admit(org.id)
    now = time.time()
    delivery = Delivery.new(
        org.id,
        endpoint,
        payload,
        now,
        request_id=g.get("request_id", ""),
        idempotency_key=idempotency_key(settings.secrets()),
    )
    held_delivery(delivery, error.message, received_body, now)
    bind_context(delivery_id=delivery.id)
    door.hold(delivery)
    g.ingest_result = ("held", error.message)
    door.store.stats.count_later(org.id, endpoint, "held")
    return held(delivery.id, rule_of(endpoint, error), error.message)


def held(delivery_id: str, rule: str, reason: str) -> Response:
    """Answer a request kept, unsent, in the dead letters: the rule in DmTracker's words."""
    state = DeliveryState.HELD
    return jsonify(
        status="held",
        message=rule,
        data={"delivery_id": delivery_id, "state": state, "reason": reason},
        relay={"delivery_id": delivery_id, "state": state, "duplicate": False},
    )


def refuse_other_organization(body: dict[str, Any], org: Org, settings: Settings) -> None:
    """Refuse (403) a held body that names another organization by a well-formed id or page."""
    named = body.get("organization_id")
    try:
        named = to_uuid(named) if named is not None else None
    except ValidationError:
        named = None  # not an organization id at all: held for it, not refused
    bind_organization({**body, "organization_id": named}, org, settings)


def read_json_body(secrets: tuple[str, ...] = (), *, repair_empty_variables: bool = False) -> Any:
    """Return the parsed JSON body whatever its Content-Type, or raise Unreadable.

    With `repair_empty_variables`, a body that does not parse is read again with ManyChat's
    renderings of empty variables repaired (relay/core/repair.py).
    """
    # ManyChat and hand-made flows send JSON as text/plain or with no type at all; DmTracker's
    # docs name no 415, and refusing would lose the lead.
    raw = request.get_data(cache=True)
    try:
        body = parse_json(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, bad UTF-8, NaN/Infinity, 1e400 and integers too long.
        body = _repaired(raw) if repair_empty_variables else NOT_JSON
    if body is NOT_JSON:
        raise Unreadable("The request body is not valid JSON.")
    check_storable(body, secrets)
    return body


NOT_JSON = object()


def parse_json(raw: bytes | str) -> Any:
    """Parse JSON as DmTracker would take it: no NaN, no Infinity, no number beyond a float."""
    return json.loads(raw, parse_constant=_not_json, parse_float=_finite)


def _repaired(raw: bytes) -> Any:
    """Return the body parsed after repairing empty variables, or NOT_JSON."""
    try:
        return parse_json(repair(raw.decode("utf-8")))
    except (ValueError, RecursionError):
        return NOT_JSON


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
            raise Unreadable(
                f"The request body nests deeper than {defaults.MAX_JSON_DEPTH} levels."
            )
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _is_unicode(value):
            raise Unreadable(
                "The request body holds an unpaired surrogate escape (\\ud800-\\udfff)."
            )
        elif isinstance(value, str) and holds_secret(value, secrets):
            # Stored, it would sit in Redis, the dashboard and dead letters.
            raise BadRequest(BODY_WITH_CREDENTIAL)


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


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
    if holds_secret(key, secrets):
        # The key is stored with the delivery, in Redis and in the admin views.
        raise BadRequest(
            "The Idempotency-Key header holds one of the relay's secrets; send the organization"
            " token only in the x-org-auth-token header."
        )
    if len(key) > defaults.IDEMPOTENCY_KEY_MAX_CHARS:
        # Kept for a day with the delivery: a long one is kept by its digest, never refused.
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def skipped(reason: str) -> Response:
    """Answer a message that is filtered out and not queued."""
    return jsonify(
        status="skipped",
        message="Message not forwarded: it carries no reply to track.",
        data={"reason": reason},
        relay={"delivery_id": None, "state": "skipped", "duplicate": False},
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
        relay={"delivery_id": delivery_id, "state": "spooled", "duplicate": False},
    )
