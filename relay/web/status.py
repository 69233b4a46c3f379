"""The integrator-facing delivery status: GET /api/v1/deliveries/<delivery_id:delivery_id>.

Authenticated like ingest, with the organization's x-org-auth-token, and answered in
DmTracker's shape. A delivery of another organization answers 404, exactly as an unknown
one, so a token never learns that another organization's delivery exists.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from relay.core.delivery import DEAD_STATES, Attempt, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS, TOKEN_HEADER
from relay.core.errors import NotFound
from relay.core.times import iso_time
from relay.logs import bind_context
from relay.web.auth import organization_for_token
from relay.web.context import current_settings, current_store

bp = Blueprint("delivery_status", __name__, url_prefix="/api/v1")


@bp.get("/deliveries/<delivery_id>")
def delivery_status(delivery_id: str) -> Response:
    """Tell the organization where one of its deliveries stands."""
    settings = current_settings()
    org = organization_for_token(request.headers.get(TOKEN_HEADER), settings.orgs)
    bind_context(organization=org.id)
    store = current_store()
    delivery = store.history.load(delivery_id)
    if delivery is None or delivery.org_id != org.id:
        raise NotFound("No delivery with this id is kept for this organization.")
    bind_context(delivery_id=delivery.id)
    return jsonify(status="success", data=status_view(delivery))


def status_view(delivery: Delivery) -> dict[str, Any]:
    """Return what an integrator needs to know about a delivery; never internal keys."""
    last, retrying = delivery.last_attempt, delivery.state == DeliveryState.RETRYING
    return {
        "delivery_id": delivery.id,
        "endpoint": ENDPOINTS[delivery.endpoint].path,
        "state": delivery.state,
        "received_at": iso_time(delivery.received_at),
        "attempts": delivery.attempt_count,
        "next_attempt_at": iso_time(delivery.next_attempt_at) if retrying else None,
        "reason": delivery.reason if retrying or delivery.state in DEAD_STATES else None,
        "response": response_view(last) if last else None,
    }


def response_view(attempt: Attempt) -> dict[str, Any]:
    """Return DmTracker's answer to an attempt; a JSON body as JSON, anything else as text."""
    return {"status": attempt.status, "body": parsed_body(attempt.body)}


def parsed_body(body: str) -> Any:
    """Return a stored response body as JSON when it is JSON, else the text (None if empty)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body  # not JSON, or cut at the 2 KiB the relay keeps
