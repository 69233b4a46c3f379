"""The ingest benchmark's baselines, served by gunicorn exactly as the relay is.

`bench.baselines:bare()` answers the relay's JSON without storing anything; `with_rq()`
stores each request with stock `Queue.enqueue` (JSON serializer), as a relay built on RQ's
public API would. Both read REDIS_URL and answer the relay's default-reply route.
"""

from __future__ import annotations

import os
import uuid

import redis
from flask import Flask, Response, jsonify, request
from rq import Queue
from rq.serializers import JSONSerializer

ROUTE = "/api/v1/contact/default-reply"
TASK = "bench.stock_task.deliver"  # named, never run here


def bare() -> Flask:
    """Return a Flask app that parses the body and answers as the relay does."""
    app = Flask(__name__)

    @app.post(ROUTE)
    def default_reply() -> Response:
        request.get_json()
        return queued(f"dlv_{uuid.uuid4().hex}")

    return app


def with_rq() -> Flask:
    """Return a Flask app that enqueues each body with stock Queue.enqueue."""
    app = Flask(__name__)
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    queue = Queue("bench-baseline", connection=connection, serializer=JSONSerializer)

    @app.post(ROUTE)
    def default_reply() -> Response:
        job = queue.enqueue(TASK, request.get_json())
        return queued(job.id)

    return app


def queued(delivery_id: str) -> Response:
    """Answer with the relay's accepted shape."""
    return jsonify(
        status="queued",
        message="Message queued.",
        data={"delivery_id": delivery_id, "duplicate": False},
    )
