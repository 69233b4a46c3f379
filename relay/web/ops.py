"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from relay.config import Settings
from relay.core.errors import Unauthorized
from relay.storage import metrics
from relay.web.admin import tokens
from relay.web.context import current_front_door, current_settings, current_store

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Say the process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Say whether Redis takes writes and nothing waits in the spool; 503 with why if not."""
    reason = current_front_door().readiness()
    if reason is None:
        return jsonify(status="ready", redis="ok"), 200
    return jsonify(status="unavailable", redis="unavailable", reason=reason), 503


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    """Expose metrics to a scraper holding the metrics token or an admin token."""
    settings = current_settings()
    authorize_scrape(settings, request.headers.get("Authorization", ""))
    store = current_store()
    spool = current_front_door().spool.depth()
    return Response(metrics.render(store, settings, spool), content_type=CONTENT_TYPE_LATEST)


def authorize_scrape(settings: Settings, header: str) -> None:
    """Accept DMRELAY_METRICS_TOKEN or an admin JWT with relay:read; else 401."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("Send Authorization: Bearer <metrics token or admin token>.")
    expected = settings.metrics_token
    if expected and hmac.compare_digest(credential.encode(), expected.encode()):
        return
    tokens.require_scope(tokens.verify(settings.secret_key, credential), tokens.READ)
