"""Dashboard actions that hold or release an organization's deliveries: pause and resume."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from werkzeug.wrappers import Response as Redirect

from relay.core.errors import NotFound
from relay.web.context import current_settings, current_store
from relay.web.dashboard.session import require_admin


def install_controls(bp: Blueprint) -> None:
    """Add the pause and resume actions to the dashboard."""
    bp.add_url_rule("/organizations/<org_id>/pause", view_func=pause_organization, methods=["POST"])
    bp.add_url_rule(
        "/organizations/<org_id>/resume", view_func=resume_organization, methods=["POST"]
    )


def pause_organization(org_id: str) -> Redirect:
    """Pause an organization from the overview."""
    label = configured(org_id)
    done = current_store().gates.pause(org_id)
    flash(f"Paused {label}." if done else f"{label} was paused already.")
    return redirect(url_for("dashboard.overview"))


def resume_organization(org_id: str) -> Redirect:
    """Resume a paused organization from the overview."""
    label = configured(org_id)
    done = current_store().gates.resume(org_id)
    flash(f"Resumed {label}." if done else f"{label} was not paused.")
    return redirect(url_for("dashboard.overview"))


def configured(org_id: str) -> str:
    """Check the admin scope and the organization; return how to name it."""
    require_admin()
    org = current_settings().org_by_id(org_id)
    if org is None:
        raise NotFound("The relay serves no such organization.")
    return org.page_name or org.id
