"""The dashboard's alerts page: channels and their health, what is firing, the history, and a
button that sends a test alert."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from werkzeug.wrappers import Response as Redirect

from relay.alerting import send_test_alert
from relay.notify import Notifier
from relay.web.context import current_settings, current_store
from relay.web.dashboard.session import require_admin

HISTORY_SHOWN = 100


def install_alert_pages(bp: Blueprint) -> None:
    """Add the alerts page and its test button to the dashboard."""
    bp.add_url_rule("/alerts", view_func=alerts_page, methods=["GET"])
    bp.add_url_rule("/alerts/test", view_func=send_test, methods=["POST"])


def alerts_page() -> str:
    """Show the channels, the conditions firing now and the latest alerts."""
    store, settings = current_store(), current_settings()
    health = store.alerts.channels()
    configured = Notifier(settings).channels
    return render_template(
        "dashboard/alerts.html",
        channels=[(name, health.get(name)) for name in configured],
        active=store.alerts.active(),
        history=store.alerts.history(HISTORY_SHOWN),
        email_to=settings.alert_email_to,
    )


def send_test() -> Redirect:
    """Send a test alert to every channel now and say how each took it."""
    require_admin()
    notifier = Notifier(current_settings())
    if not notifier.channels:
        flash("No alert channel is configured (DMRELAY_ALERT_WEBHOOK_URL, DMRELAY_ALERT_SMTP_URL).")
        return redirect(url_for("dashboard.alerts_page"))
    results = send_test_alert(current_store(), notifier, str(session.get("sub") or "an operator"))
    said = ", ".join(
        f"{r['channel']}: {'sent' if r['ok'] else 'failed (' + r['error'] + ')'}" for r in results
    )
    flash(f"Test alert: {said}.")
    return redirect(url_for("dashboard.alerts_page"))
