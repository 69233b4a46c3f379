"""The operator dashboard: server-rendered pages over the shared read model."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from typing import Any
from urllib.parse import urlencode

import redis
from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as Redirect

from relay.config import Org, Settings
from relay.core import defaults
from relay.core.delivery import STATES, Delivery, DeliveryState
from relay.core.endpoints import ENDPOINTS, TOKEN_HEADER
from relay.core.errors import BadRequest, FieldError, HttpError, NotFound
from relay.core.filters import DEAD_LETTER_FILTERS, FILTERS, DeliveryQuery, read_filters
from relay.core.policy import Backoff, schedule_table
from relay.core.redact import redact
from relay.core.times import utc
from relay.notify import Notifier
from relay.storage import deadletter_actions, queries
from relay.storage.server import mebibytes
from relay.web.context import current_front_door, current_settings, current_store
from relay.web.dashboard import connect
from relay.web.dashboard.alerts import install_alert_pages
from relay.web.dashboard.controls import install_controls
from relay.web.dashboard.session import (
    URL_PREFIX,
    can_admin,
    csrf_token,
    install,
    require_admin,
    signed_in,
)
from relay.web.error_handlers import redis_unavailable

PAGE_NUMBER = re.compile(r"[0-9]{1,6}")

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix=URL_PREFIX,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
install(bp)  # sign-in, session cookie, guards: session.py
install_controls(bp)  # pause and resume: controls.py
install_alert_pages(bp)  # alert history and the test button: alerts.py

log = logging.getLogger(__name__)
PAGE_SIZE = 50
PREVIEW_CHARS = 80
POLL_SECONDS = 3
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


# -- page headers and error pages -------------------------------------------------------------
@bp.after_request
def harden(response: Response) -> Response:
    """Add a strict CSP and keep pages out of caches and frames."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HttpError)
def relay_error_page(error: HttpError) -> tuple[str, int]:
    """Render the relay's errors as a dashboard page."""
    return render_template("dashboard/error.html", error=error), error.status


@bp.errorhandler(redis.RedisError)
def redis_error_page(error: redis.RedisError) -> tuple[str, int]:
    """Render a Redis outage as a 503 page."""
    return relay_error_page(redis_unavailable(error))


@bp.errorhandler(HTTPException)
def http_error_page(error: HTTPException) -> tuple[str, int]:
    """Render Werkzeug's errors as a dashboard page."""
    page_error = HttpError(error.description or error.name)
    page_error.status, page_error.title = error.code or 500, error.name
    return render_template("dashboard/error.html", error=page_error), page_error.status


@bp.errorhandler(Exception)
def unexpected_error_page(error: Exception) -> tuple[str, int]:
    """Log an unexpected error and answer with a dashboard page that reveals nothing."""
    log.exception("dashboard error on %s %s", request.method, request.path)
    page_error = HttpError("Something went wrong; the details are in the relay's log.")
    return render_template("dashboard/error.html", error=page_error), page_error.status


# -- template helpers -------------------------------------------------------------------------
@bp.app_template_filter("iso")
def iso_utc(epoch: float | None) -> str:
    """Format an epoch time as ISO 8601 UTC, to the second."""
    moment = utc(epoch)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "—"


@bp.app_template_filter("duration")
def human_duration(seconds: float) -> str:
    """Format seconds as the two largest units (e.g. '2 h 5 m', '0.4 s')."""
    if not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.3g} s"
    parts, rest = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size} {unit}")
            rest %= size
    return " ".join(parts[:2])


@bp.context_processor
def page_context() -> dict[str, Any]:
    """Give every page the session, CSRF token, organizations and choices for filters."""
    settings = current_settings()
    return {
        "csrf_token": csrf_token,
        "signed_in": signed_in(),
        "can_admin": can_admin(),
        "subject": session.get("sub"),
        "session_expires": session.get("exp"),
        # Only ids and page names reach templates, so no template can ever print a token.
        "org_names": {org.id: org.page_name or "" for org in settings.orgs},
        "endpoints": list(ENDPOINTS),
        "states": STATES,
        "filter_docs": {row.name: row.doc for row in FILTERS},
    }


def pretty(text: str, limit_bytes: int = defaults.RESPONSE_BODY_KEEP_BYTES) -> str:
    """Indent JSON text for reading and mask secrets; other text is shown as it is."""
    with contextlib.suppress(ValueError):  # not JSON: show the raw body
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return redact(text, secrets=current_settings().secrets(), limit_bytes=limit_bytes)


def preview(delivery: Delivery) -> str:
    """Return one short line that says what the message was."""
    payload = delivery.payload
    text = payload.get("message_content") or payload.get("tags") or payload.get("status") or ""
    line = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    line = redact(line, secrets=current_settings().secrets())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def last_response(delivery: Delivery) -> str:
    """Return the last DmTracker reply body on one line, secrets masked, shortened."""
    last = delivery.last_attempt
    if last is None:
        return ""
    line = " ".join(
        redact(last.body or last.error or "", secrets=current_settings().secrets()).split()
    )
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


# -- filters and pagination -------------------------------------------------------------------
# The form fields carry the admin API's filter names, so a dashboard URL reads like an API call.
def filter_values(source: MultiDict[str, str]) -> dict[str, str]:
    """Return the non-empty filter fields of a query string or form, trimmed."""
    values = {row.name: source.get(row.name, "").strip() for row in FILTERS}
    return {name: value for name, value in values.items() if value}


def build_query(values: dict[str, str], *, dead_only: bool = False) -> DeliveryQuery:
    """Turn filter fields into a DeliveryQuery, or raise BadRequest naming the bad field."""
    if dead_only:
        names = {row.name for row in DEAD_LETTER_FILTERS}
        return read_filters({k: v for k, v in values.items() if k in names}, DEAD_LETTER_FILTERS)
    return read_filters(values, FILTERS)


def current_page() -> int:
    """Return the 1-based page number asked for."""
    page = request.args.get("page", "1")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    return max(1, int(page)) if PAGE_NUMBER.fullmatch(page) else 1


def pagination(values: dict[str, str], page: int, total: int) -> dict[str, Any]:
    """Return what the pager shows: range, page count, and links that keep the filters."""
    pages = max(1, math.ceil(total / PAGE_SIZE))

    def link(number: int) -> str:
        return "?" + urlencode({**values, "page": number})

    return {
        "page": page,
        "pages": pages,
        "total": total,
        "first": min(total, (page - 1) * PAGE_SIZE + 1),
        "last": min(total, page * PAGE_SIZE),
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }


# -- overview ---------------------------------------------------------------------------------
@bp.get("/")
def overview() -> str:
    """Show live counts and the last hour's throughput."""
    return render_template(
        "dashboard/overview.html", data=overview_data(), poll_seconds=POLL_SECONDS
    )


@bp.get("/overview.json")
def overview_json() -> Response:
    """Return the overview and the last hour's per-minute series for the polling script."""
    data = overview_data()
    data["series"] = queries.throughput_series(current_store(), 60)
    return jsonify(data)


def overview_data() -> dict[str, Any]:
    """Return the overview, with the requests in this machine's spool: waiting, or refused."""
    data = queries.overview(current_store(), current_settings())
    spool = current_front_door().spool
    entries, size = spool.depth()
    rejected = [
        {
            "delivery_id": row.delivery_id,
            "organization": row.org_id,
            "endpoint": row.endpoint,
            "reason": row.reason,
        }
        for row in spool.rejected()
    ]
    data["spool"] = {"entries": entries, "bytes": size, "rejected": rejected}
    gates = current_store().gates.read()
    data["paused"] = gates.paused
    data["breakers"] = {org_id: vars(breaker) for org_id, breaker in gates.breakers.items()}
    data["failing_channels"] = failing_channels()
    return data


def failing_channels() -> dict[str, str]:
    """Return the configured alert channels whose last send failed, with the error."""
    health = current_store().alerts.channels()
    configured = Notifier(current_settings()).channels
    return {
        n: str(h.get("error", "")) for n, h in health.items() if n in configured and not h["ok"]
    }


# -- deliveries -------------------------------------------------------------------------------
@bp.get("/deliveries")
def deliveries() -> str:
    """List deliveries matching the filters, newest first, one page at a time."""
    values = filter_values(request.args)
    page = current_page()
    found, total = queries.search(
        current_store(), build_query(values), (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    return render_template(
        "dashboard/deliveries.html",
        rows=found,
        filters=values,
        paging=pagination(values, page, total),
        preview=preview,
    )


@bp.get("/deliveries/<delivery_id>")
def delivery(delivery_id: str) -> str:
    """Show one delivery: its details, attempt timeline, request and response bodies."""
    store = current_store()
    found = store.history.load(delivery_id)
    if found is None:
        raise NotFound("No delivery with this id is kept (it may have expired or been purged).")
    # A delivered message keeps a summary; its earlier failures may still be in the log.
    failed = store.history.failed_attempts(delivery_id) if found.is_summary else []
    return render_template(
        "dashboard/delivery.html",
        d=found,
        request_body=None
        if found.is_summary
        else pretty(json.dumps(found.payload), defaults.MAX_BODY_BYTES),
        editable_body=editable_body(found),
        response_bodies=[pretty(attempt.body) for attempt in found.attempts],
        failed_attempts=[failed_attempt_view(entry) for entry in failed],
        max_attempts=current_settings().max_attempts,
    )


def editable_body(delivery: Delivery) -> str:
    """Return the body the editor starts from: the payload, else the text as received."""
    if delivery.payload or not delivery.received_body:
        return json.dumps(delivery.payload, indent=2, ensure_ascii=False)
    return delivery.received_body


@bp.post("/dead-letters/<delivery_id>/edit")
def edit_body(delivery_id: str) -> Redirect:
    """Replace a held or dead letter's body, checked as ingest checks one."""
    require_admin()
    back = redirect(url_for(".delivery", delivery_id=delivery_id))
    try:
        payload = json.loads(request.form.get("payload", ""))
    except ValueError as error:
        flash(f"Not saved: the body is not valid JSON ({error}).")
        return back
    if not isinstance(payload, dict):
        flash("Not saved: the body must be a JSON object.")
        return back
    editor = f"{session.get('sub') or 'an operator'} (dashboard)"
    try:
        edited = deadletter_actions.edit_payload(
            current_store(), delivery_id, payload, editor, current_settings().secrets()
        )
    except FieldError as error:
        flash(f"Not saved: {error.message}")
        return back
    if edited is None:
        raise NotFound("No held or dead letter with this id (replayed, purged or expired).")
    flash("Body saved and checked: replay it to send it.")
    return back


def failed_attempt_view(entry: dict[str, Any]) -> dict[str, Any]:
    """Return a logged failed attempt for the page, its bodies indented and secrets masked."""
    return {
        "at": entry.get("at"),
        "status": entry.get("status"),
        "latency_ms": entry.get("latency_ms") or 0.0,
        "error": entry.get("error"),
        "response_body": pretty(str(entry.get("body") or "")),
        "request_body": pretty(json.dumps(entry.get("request")), defaults.MAX_BODY_BYTES),
    }


# -- dead letters -----------------------------------------------------------------------------
@bp.get("/dead-letters")
def dead_letters() -> str:
    """List dead letters matching the filters, with replay and purge."""
    values = filter_values(request.args)
    values.pop("state", None)
    page = current_page()
    found, total = queries.search_dead_letters(
        current_store(), build_query(values, dead_only=True), (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    return render_template(
        "dashboard/dead_letters.html",
        rows=found,
        filters=values,
        paging=pagination(values, page, total),
        preview=preview,
        last_response=last_response,
    )


@bp.post("/dead-letters/replay")
def replay_selected() -> Redirect:
    """Replay the ticked dead letters."""
    require_admin()
    chosen = selected_ids()
    replayed = deadletter_actions.replay(current_store(), chosen)
    flash(f"Replayed {len(replayed)} dead letter(s).")
    still_held = [i for i in chosen if i not in replayed and is_held(i)]
    if still_held:
        flash(f"{len(still_held)} still held: their body breaks a rule; edit it, then replay.")
    return back_to_dead_letters()


def is_held(delivery_id: str) -> bool:
    """Return True when the delivery is (still) held at the door."""
    found = current_store().history.load(delivery_id)
    return found is not None and found.state == DeliveryState.HELD


@bp.post("/dead-letters/replay-matching")
def replay_matching() -> Redirect:
    """Replay every dead letter the current filters match, on every page."""
    require_admin()
    # Unknown fields are refused, as by the API: a stale form must never widen a bulk replay.
    sent = {name: value.strip() for name, value in request.form.items() if name != "csrf_token"}
    query = read_filters({k: v for k, v in sent.items() if v}, DEAD_LETTER_FILTERS)
    store = current_store()
    replayed = deadletter_actions.replay(store, deadletter_actions.matching_ids(store, query))
    flash(f"Replayed {len(replayed)} matching dead letter(s).")
    return back_to_dead_letters()


@bp.post("/dead-letters/purge")
def purge_selected() -> Redirect:
    """Forget the ticked dead letters."""
    require_admin()
    purged = deadletter_actions.purge(current_store(), selected_ids())
    flash(f"Purged {len(purged)} dead letter(s).")
    return back_to_dead_letters()


def selected_ids() -> list[str]:
    """Return the ticked ids, or raise BadRequest when none is ticked."""
    ids = list(dict.fromkeys(request.form.getlist("ids")))
    if not ids:
        raise BadRequest("Tick at least one dead letter first.")
    return ids


def back_to_dead_letters() -> Redirect:
    """Redirect to the dead-letter list with the filters the form carried."""
    values: dict[str, Any] = filter_values(request.form)
    values.pop("state", None)
    return redirect(url_for(".dead_letters", **values))


# -- configuration ----------------------------------------------------------------------------
# -- connect ManyChat --------------------------------------------------------------------------
@bp.get("/connect")
def connect_manychat() -> Redirect:
    """Open the set-up page of the first organization."""
    return redirect(url_for(".connect_org", org_id=current_settings().orgs[0].id))


@bp.get("/connect/<org_id>")
def connect_org(org_id: str) -> str:
    """Show each action's External Request for one organization, ready to copy."""
    return render_connect(org_id)


@bp.post("/connect/<org_id>/test")
def connect_test(org_id: str) -> str:
    """Send one action's body through the relay as ManyChat would, and show the answer."""
    require_admin()
    org = organization(org_id)
    action = connect.BY_NAME.get(request.form.get("action", ""))
    if action is None:
        raise BadRequest("Choose one of the actions on this page.")
    empty = request.form.get("empty") == "1"
    status, answer, sent = connect.send_test(org, action, empty=empty)
    shown = (
        json.dumps(answer, indent=2, ensure_ascii=False) if not isinstance(answer, str) else answer
    )
    tried = {"action": action.name, "empty": empty, "status": status, "answer": shown, "sent": sent}
    return render_connect(org_id, tried)


def render_connect(org_id: str, tried: dict[str, Any] | None = None) -> str:
    """Render the set-up page of one organization, with a test request's answer if any."""
    org = organization(org_id)
    return render_template(
        "dashboard/connect.html",
        org=org,
        orgs=current_settings().orgs,
        actions=connect.ACTIONS,
        token_header=TOKEN_HEADER,
        token_shown=connect.TOKEN_SHOWN,
        tried=tried,
    )


def organization(org_id: str) -> Org:
    """Return the configured organization with this id, or raise 404."""
    found = next((org for org in current_settings().orgs if org.id == org_id), None)
    if found is None:
        raise NotFound("No organization with this id is configured.")
    return found


@bp.get("/config")
def config() -> str:
    """Show what the relay runs with; organizations by id and page name, never tokens."""
    settings = current_settings()
    backoff = Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds)
    return render_template(
        "dashboard/config.html",
        rate_limits={name: settings.rate_limits_per_minute.get(name) for name in ENDPOINTS},
        schedule=schedule_table(settings.max_attempts, backoff),
        limits=configured_limits(settings) + budget_rows(settings),
    )


def budget_rows(settings: Settings) -> list[tuple[str, str]]:
    """Return the memory budgets and what fills them now (docs/budgets.md)."""
    door = current_front_door()
    reading = door.memory.reading()
    history = current_store().history
    budget = history.budget_bytes(settings.history_max_mb)
    cost = history.cost(org.id for org in settings.orgs)
    per_org = door.org_byte_budget(reading)
    return [
        (
            "Delivered history budget",
            f"{mebibytes(cost.total)} of {mebibytes(budget)}: {cost.delivered:,} delivered"
            f" records {mebibytes(cost.records_bytes)}, index {mebibytes(cost.index_bytes)},"
            f" contact links {mebibytes(cost.contacts_bytes)}",
        ),
        (
            "Undelivered bytes per organization",
            mebibytes(per_org) if per_org else "no limit (Redis sets no maxmemory)",
        ),
        ("Redis memory kept free for delivery", f"{settings.redis_headroom:.0%} of maxmemory"),
    ]


def configured_limits(settings: Settings) -> list[tuple[str, str]]:
    """Return the numbers an operator asks about, as (what, value) rows."""
    seconds = human_duration
    return [
        ("Dedup window", seconds(settings.dedup_window_seconds)),
        ("Most undelivered messages kept", f"{settings.max_pending_deliveries:,}"),
        ("Largest request body", f"{defaults.MAX_BODY_BYTES // 1024} KiB"),
        ("Response body kept per attempt", f"{defaults.RESPONSE_BODY_KEEP_BYTES // 1024} KiB"),
        ("Attempts before a dead letter", str(settings.max_attempts)),
        (
            "Backoff base / cap",
            f"{seconds(settings.backoff_base_seconds)} / {seconds(settings.backoff_cap_seconds)}",
        ),
        (
            "HTTP connect / read timeout",
            f"{seconds(settings.http_connect_timeout_seconds)} / "
            f"{seconds(settings.http_read_timeout_seconds)}",
        ),
        ("Worker concurrency", str(settings.worker_concurrency)),
        ("Worker heartbeat TTL", seconds(settings.worker_heartbeat_ttl_seconds)),
        ("Worker shutdown grace", seconds(settings.worker_shutdown_grace_seconds)),
        ("Delivered messages kept", seconds(settings.delivered_retention_seconds)),
        ("Dead letters kept", seconds(settings.dead_letter_retention_seconds)),
        ("DmTracker base URL", settings.dmtracker_base_url),
    ]
