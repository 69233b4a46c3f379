"""The Flask application factory."""

from __future__ import annotations

import re
import uuid

import redis
from flask import Flask, Response, g, request

from relay import defaults, ingest, ops
from relay.error_handlers import register_error_handlers
from relay.settings import Settings, load_settings
from relay.store import Store, connect

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """Build the relay's web application from settings and a Redis connection."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=defaults.MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    app.extensions["dmrelay.store"] = Store(connection or connect(settings.redis_url))
    app.before_request(assign_request_id)
    app.after_request(echo_request_id)
    register_error_handlers(app)
    register_blueprints(app)
    return app


def register_blueprints(app: Flask) -> None:
    """Mount every surface of the relay."""
    app.register_blueprint(ingest.bp)
    app.register_blueprint(ops.bp)


def assign_request_id() -> None:
    """Take the caller's X-Request-Id when it is sane, or make one."""
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if REQUEST_ID.match(given) else f"req_{uuid.uuid4().hex}"


def echo_request_id(response: Response) -> Response:
    """Return the request id to the caller."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response
