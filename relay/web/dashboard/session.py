"""The dashboard's sign-in: a signed cookie session from an admin token, guards and CSRF."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask.wrappers import Request
from werkzeug.wrappers import Response as Redirect

from relay.core.errors import BadRequest, HttpError
from relay.web.admin import tokens
from relay.web.context import current_settings

URL_PREFIX = "/dashboard"
SESSION_KEY_LABEL = b"dmrelay dashboard session key v1"
PUBLIC_ENDPOINTS = frozenset({"dashboard.sign_in", "dashboard.sign_in_submit", "dashboard.static"})


def install(bp: Blueprint) -> None:
    """Give the dashboard its cookie session, sign-in pages, sign-in guard and CSRF check."""
    bp.record_once(install_session)
    bp.before_request(require_sign_in)
    bp.before_request(check_csrf)
    bp.add_url_rule("/sign-in", view_func=sign_in, methods=["GET"])
    bp.add_url_rule("/sign-in", view_func=sign_in_submit, methods=["POST"])
    bp.add_url_rule("/sign-out", view_func=sign_out, methods=["POST"])


# -- the cookie -------------------------------------------------------------------------------
class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, scoped to the dashboard and expiring with the admin token."""

    salt = "dmrelay-dashboard-session"

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Read the cookie on the dashboard's paths only: it is never sent to the others."""
        # Flask opens a session for every request; on the ingest routes, building the signing
        # serializer and parsing cookies for nothing cost about 30 us a request.
        if not request.path.startswith(URL_PREFIX):
            return None  # Flask's null session: nothing read, nothing written
        return super().open_session(app, request)

    def get_cookie_name(self, app: Flask) -> str:
        """Name the cookie after the dashboard."""
        return "dmrelay_dashboard"

    def get_cookie_path(self, app: Flask) -> str:
        """Send the cookie to the dashboard only."""
        return URL_PREFIX

    def get_cookie_httponly(self, app: Flask) -> bool:
        """Keep the cookie away from scripts."""
        return True

    def get_cookie_secure(self, app: Flask) -> bool:
        """Mark the cookie Secure whenever the dashboard is served over HTTPS."""
        return request.is_secure

    def get_cookie_samesite(self, app: Flask) -> str:
        """Keep the cookie off cross-site subrequests and POSTs."""
        return "Lax"

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        """Let the cookie die with the token it was made from."""
        exp = session.get("exp")
        return datetime.fromtimestamp(exp, UTC) if exp else None


def session_key(secret_key: str) -> str:
    """Derive the cookie-signing key so the admin secret itself is never reused."""
    return hmac.new(secret_key.encode(), SESSION_KEY_LABEL, hashlib.sha256).hexdigest()


def install_session(state: BlueprintSetupState) -> None:
    """Give the app a derived secret key and the dashboard's cookie session."""
    app = cast(Flask, state.app)
    app.secret_key = session_key(app.config["SETTINGS"].secret_key)
    app.session_interface = DashboardSessionInterface()


def signed_in() -> bool:
    """Return True while the session holds an unexpired sign-in."""
    return "scope" in session and float(session.get("exp", 0)) > time.time()


def claims() -> dict[str, Any]:
    """Return the claims kept from the admin token."""
    return {"sub": session.get("sub"), "scope": session.get("scope"), "exp": session.get("exp")}


def can_admin() -> bool:
    """Return True if the session may replay and purge."""
    return tokens.ADMIN in str(session.get("scope", "")).split()


def csrf_token() -> str:
    """Return the session's CSRF token, making one on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def start_session(token_claims: dict[str, Any]) -> None:
    """Replace the session with a fresh one holding only the claims we need."""
    session.clear()  # keep nothing from before sign-in, the CSRF token included: no fixation
    session.update(
        sub=str(token_claims.get("sub", "")),
        scope=str(token_claims["scope"]),
        exp=int(token_claims["exp"]),
        csrf=secrets.token_urlsafe(32),
    )


# -- request guards ---------------------------------------------------------------------------
def require_sign_in() -> Response | Redirect | None:
    """Send signed-out visitors to the sign-in page (JSON callers get a 401)."""
    if request.endpoint in PUBLIC_ENDPOINTS or signed_in():
        return None
    session.clear()
    if request.endpoint == "dashboard.overview_json":
        return error_json(401, "Sign in again.")
    # Only a page can be returned to after sign-in; a form POST cannot be replayed by a GET.
    back_to = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for(".sign_in", next=back_to))


def check_csrf() -> None:
    """Refuse any POST whose form token is not the session's."""
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token", "")
    expected = str(session.get("csrf", ""))
    if not (expected and hmac.compare_digest(sent.encode(), expected.encode())):
        raise BadRequest("CSRF check failed: reload the page and try again.")


def require_admin() -> None:
    """Raise Forbidden unless the session holds the admin scope."""
    tokens.require_scope(claims(), tokens.ADMIN)


def error_json(status: int, message: str) -> Response:
    """Return a small JSON error for the polling script."""
    response = jsonify(error=message)
    response.status_code = status
    return response


# -- sign-in ----------------------------------------------------------------------------------
def sign_in() -> str | Redirect:
    """Show the sign-in form."""
    if signed_in():
        return redirect(url_for(".overview"))
    return render_template("dashboard/sign_in.html", next=safe_next(request.args.get("next")))


def sign_in_submit() -> tuple[str, int] | Redirect:
    """Check an admin token and start a session holding only its claims."""
    token = request.form.get("token", "").strip()
    try:
        token_claims = tokens.verify(current_settings().secret_key, token)
        tokens.require_scope(token_claims, tokens.READ)
    except HttpError as error:
        page = render_template(
            "dashboard/sign_in.html", error=error.message, next=safe_next(request.form.get("next"))
        )
        return page, error.status
    start_session(token_claims)
    return redirect(safe_next(request.form.get("next")) or url_for(".overview"))


def safe_next(target: str | None) -> str | None:
    """Return a post-sign-in target only if it stays inside the dashboard."""
    if target and target.startswith(URL_PREFIX) and not target.startswith("//"):
        return target
    return None


def sign_out() -> Redirect:
    """End the session."""
    session.clear()
    return redirect(url_for(".sign_in"))
