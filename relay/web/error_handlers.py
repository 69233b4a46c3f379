"""Map every error to a response in the shape of the surface that raised it."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from relay.core.errors import HttpError, ServiceUnavailable

log = logging.getLogger(__name__)
ADMIN_PREFIX = "/api/v1/admin"


def is_admin_path(path: str) -> bool:
    """Return True for a path of the admin API, whether a route exists there or not."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def register_error_handlers(app: Flask) -> None:
    """Install one handler for the relay's errors, Werkzeug's, and the unexpected."""
    app.register_error_handler(HttpError, _relay_error)
    app.register_error_handler(HTTPException, _werkzeug_error)
    app.register_error_handler(redis.RedisError, lambda e: _relay_error(redis_unavailable(e)))
    app.register_error_handler(Exception, _unexpected_error)


def redis_unavailable(error: redis.RedisError) -> ServiceUnavailable:
    """Log a Redis failure and return the 503 it means to the caller."""
    # The type only: a message could name the Redis host.
    log.warning(
        "Redis unavailable on %s %s: %s", request.method, request.path, type(error).__name__
    )
    return ServiceUnavailable("The relay cannot reach its store right now; try again shortly.")


def error_response(
    status: int, title: str, code: str, message: str, extra: dict[str, Any] | None = None
) -> Response:
    """Render an error: the admin API's envelope, or DmTracker's shape everywhere else."""
    g.error_code = code.lower()
    body: dict[str, Any]
    if is_admin_path(request.path):
        body = {"error": {"code": code, "message": message, "requestId": g.get("request_id")}}
    else:
        body = {"error": title, "message": message, **(extra or {})}
    response = jsonify(body)
    response.status_code = status
    return response


def _relay_error(error: HttpError) -> Response:
    response = error_response(error.status, error.title, error.code, error.message, error.body)
    response.headers.update(error.headers)
    return response


def _werkzeug_error(error: HTTPException) -> Response:
    status = error.code or 500
    title = error.name
    code = title.upper().replace(" ", "_")
    if status == 404:
        code = "RESOURCE_NOT_FOUND"
    message = {
        404: "No such endpoint.",
        405: f"{request.method} is not allowed on this endpoint.",
        413: "The request body is larger than the relay accepts.",
    }.get(status, error.description or title)
    response = error_response(status, title, code, message)
    if status == 405:
        response.headers["Allow"] = ", ".join(error.valid_methods or [])  # type: ignore[attr-defined]
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "Internal Server Error", "INTERNAL_ERROR", "Something went wrong.")
