"""Admin API routes that hold or release an organization's deliveries: pause, resume, and
the organizations' gates (paused, circuit breaker), in the CRM-platform conventions.

Authentication, scopes and rate limits come from relay/web/admin/api.py, which guards every
path under the admin prefix.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify
from marshmallow import fields

from relay.config import Settings
from relay.core.errors import NotFound
from relay.core.gates import Gates
from relay.web.admin.resources import IsoTime, Resource
from relay.web.context import current_settings, current_store
from relay.web.error_handlers import ADMIN_PREFIX

log = logging.getLogger("dmrelay.admin")
bp = Blueprint("admin_controls", __name__, url_prefix=ADMIN_PREFIX)


class BreakerResource(Resource):
    """An open circuit breaker: why, since when, and when the next probe may go."""

    reason = fields.String(metadata={"enum": ["transient", "auth"]})
    opened_at = IsoTime()
    next_probe_at = IsoTime()
    probes = fields.Integer()


class OrganizationResource(Resource):
    """One organization the relay serves (never its token) and what holds its deliveries."""

    id = fields.String()
    page_name = fields.String(allow_none=True)
    paused = fields.Boolean()
    paused_at = IsoTime(allow_none=True)
    breaker = fields.Nested(BreakerResource, allow_none=True)


class OrganizationAnswer(Resource):
    """One organization."""

    data = fields.Nested(OrganizationResource)


class Meta(Resource):
    """The conventions' list metadata."""

    total = fields.Integer()
    skip = fields.Integer()
    take = fields.Integer()
    has_more = fields.Boolean()


class OrganizationList(Resource):
    """Every organization the relay serves."""

    data = fields.List(fields.Nested(OrganizationResource))
    meta = fields.Nested(Meta)


@bp.get("/organizations")
def list_organizations() -> Response:
    """Return every organization with its pause and circuit breaker state."""
    settings, gates = current_settings(), current_store().gates.read()
    rows = [organization(settings, org.id, gates) for org in settings.orgs]
    meta = {"total": len(rows), "skip": 0, "take": len(rows), "has_more": False}
    return jsonify(OrganizationList().dump({"data": rows, "meta": meta}))


@bp.post("/organizations/<org_id>/pause")
def pause(org_id: str) -> Response:
    """Pause an organization: it keeps accepting, and delivers nothing until resumed."""
    settings = known(org_id)
    if current_store().gates.pause(org_id, time.time()):
        audit("paused", org_id)
    return answer(settings, org_id)


@bp.post("/organizations/<org_id>/resume")
def resume(org_id: str) -> Response:
    """Resume an organization: its deliveries go again, in their order, at the rate limits."""
    settings = known(org_id)
    if current_store().gates.resume(org_id):
        audit("resumed", org_id)
    return answer(settings, org_id)


def known(org_id: str) -> Settings:
    """Return the settings, or raise 404 when the relay does not serve this organization."""
    settings = current_settings()
    if settings.org_by_id(org_id) is None:
        raise NotFound(f"The relay serves no organization {org_id}.")
    return settings


def answer(settings: Settings, org_id: str) -> Response:
    """Answer one organization's state as it is now."""
    row = organization(settings, org_id, current_store().gates.read())
    return jsonify(OrganizationAnswer().dump({"data": row}))


def organization(settings: Settings, org_id: str, gates: Gates) -> dict[str, Any]:
    """Return what the API says about one organization."""
    org = settings.org_by_id(org_id)
    breaker = gates.breakers.get(org_id)
    return {
        "id": org_id,
        "page_name": org.page_name if org else None,
        "paused": org_id in gates.paused,
        "paused_at": gates.paused.get(org_id),
        "breaker": breaker and vars(breaker),
    }


def audit(action: str, org_id: str) -> None:
    """Log who paused or resumed which organization."""
    subject = g.get("admin_claims", {}).get("sub")
    log.info(
        "admin %s organization %s",
        action,
        org_id,
        extra={"fields": {"action": action, "subject": subject, "organization": org_id}},
    )
