"""The Flask application factory."""

from __future__ import annotations

import logging
import re
import time
import uuid

import redis
from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from relay.alerting import AlertWatch, start_watch
from relay.config import Settings, load_settings
from relay.core import defaults
from relay.core.redact import holds_secret
from relay.logs import close_context, open_context
from relay.sentry import init_sentry
from relay.storage import server
from relay.storage.connection import connect
from relay.storage.metrics import Metrics
from relay.storage.settle import SettleTimes
from relay.storage.store import Store
from relay.web import ingest, manychat, ops
from relay.web.admin import api as admin_api
from relay.web.admin import controls as admin_controls
from relay.web.answer import build_answer_waits
from relay.web.apidoc import views as apidoc
from relay.web.context import current_metrics, current_settings
from relay.web.dashboard import views as dashboard
from relay.web.error_handlers import register_error_handlers
from relay.web.frontdoor import FrontDoor
from relay.web.routing import CONVERTERS
from relay.web.status import bp as delivery_status_bp

log = logging.getLogger("dmrelay.web")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Metric labels must come from a closed set, or one odd request adds a series forever.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
INGEST_BLUEPRINTS = frozenset({ingest.bp.name, manychat.bp.name})


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """Build the relay's web application from settings and a Redis connection."""
    settings = settings or load_settings()
    init_sentry(settings.sentry_dsn, "web", settings.secrets())
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=defaults.MAX_BODY_BYTES,
    )
    store = Store(
        connection
        or connect(
            settings.redis_url,
            settings.web_redis_connections,
            "dmrelay-web",
            settings.redis_ca_cert,
            # Every call ends within the ingest deadline: ManyChat is answered from the spool
            # rather than kept waiting on Redis.
            deadline_seconds=settings.ingest_redis_deadline_seconds,
        ),
        settle=SettleTimes(settings.settle_seconds, settings.clock_skew_seconds),
    )
    server.log_warnings(store.redis, log)
    app.extensions["dmrelay.store"] = store
    app.extensions["dmrelay.metrics"] = Metrics(store)
    app.extensions["dmrelay.answer_waits"] = build_answer_waits(store.redis, settings, store.keys)
    app.extensions["dmrelay.front_door"] = front_door(settings, store)
    app.extensions["dmrelay.alert_watch"] = alert_watch(settings, store, app)
    app.before_request(start_request)
    app.before_request(refuse_streamed_body_over_limit)
    app.after_request(finish_request)
    app.teardown_request(end_request)
    register_error_handlers(app)
    register_blueprints(app)
    return app


def front_door(settings: Settings, store: Store) -> FrontDoor:
    """Build the ingest path: Redis within the deadline, else the spool."""
    door = FrontDoor(settings, store)
    door.start()  # drains what any process left, pulses Redis for the settling after outages
    return door


def alert_watch(settings: Settings, store: Store, app: Flask) -> AlertWatch | None:
    """Watch for alerts from this process too: "no live worker" and its own spool."""
    door: FrontDoor = app.extensions["dmrelay.front_door"]
    return start_watch(store, settings, spool_depth=lambda: door.spool.depth()[0])


def shut_down(app: Flask) -> None:
    """Before the process exits: write pending metrics, drain the spool while time allows."""
    watch = app.extensions.get("dmrelay.alert_watch")
    if isinstance(watch, AlertWatch):
        watch.stop()
    door = app.extensions.get("dmrelay.front_door")
    if isinstance(door, FrontDoor):
        door.close()


def register_blueprints(app: Flask) -> None:
    """Mount every surface of the relay, with the URL converters their routes use."""
    app.url_map.converters.update(CONVERTERS)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(manychat.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(admin_controls.bp)
    app.register_blueprint(delivery_status_bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(apidoc.bp)


def start_request() -> None:
    """Note the start time, take a sane X-Request-Id or make one, and open the log context."""
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if is_usable_request_id(given) else f"req_{uuid.uuid4().hex[:16]}"
    g.log_context = open_context(request_id=g.request_id)


def is_usable_request_id(given: str) -> bool:
    """Return True for a short plain id that holds none of the relay's secrets."""
    # fullmatch: with match and "$", "abc\n" passed, and a newline in a header is a 500.
    if not REQUEST_ID.fullmatch(given):
        return False
    # The id is logged, stored and forwarded to DmTracker; replacing it loses no lead.
    if holds_secret(given, current_settings().secrets()):
        log.warning("X-Request-Id holds one of the relay's secrets; a new id is used instead")
        return False
    return True


def refuse_streamed_body_over_limit() -> None:
    """Answer 413 once a body sent without Content-Length (chunked) passes the limit."""
    # Werkzeug stops reading such a stream at MAX_CONTENT_LENGTH without an error, so a longer
    # body would be cut silently. A byte left on the stream after the limit tells them apart.
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return
    body = request.get_data(cache=True)  # cached: the handler and form parsing read it again
    if len(body) >= defaults.MAX_BODY_BYTES and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()  # what Werkzeug raises for a Content-Length too large


def end_request(error: BaseException | None) -> None:
    """Close the request's log context, so the thread's next request starts with none."""
    token = g.pop("log_context", None)
    if token is not None:
        close_context(token)


def finish_request(response: Response) -> Response:
    """Return the request id, count the request, and write its one log line."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule else "unmatched"
    record_request(route, response.status_code)
    log.info(
        "%s %s %s",
        request.method,
        route,
        response.status_code,
        extra={  # the ids come from the request's log context
            "fields": {
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "latency_ms": round(seconds * 1000, 2),
                "result": g.get("ingest_result"),
                "answer": g.get("answer_result"),
            }
        },
    )
    return response


def known_method() -> str:
    """Return the request's method, or OTHER: any token is a valid method to gunicorn."""
    return request.method if request.method in KNOWN_METHODS else "OTHER"


def record_request(route: str, status: int) -> None:
    """Count the request and, on ingest routes, the decision taken."""
    metrics = current_metrics()
    metrics.count("dmrelay_http_requests", route=route, method=known_method(), status=str(status))
    if request.blueprint in INGEST_BLUEPRINTS:
        result, reason = g.get("ingest_result") or ("rejected", g.get("error_code", str(status)))
        metrics.count(
            "dmrelay_ingest", endpoint=g.get("endpoint", route), result=result, reason=reason
        )
