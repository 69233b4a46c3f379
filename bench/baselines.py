"""The ingest benchmark's baselines, served by gunicorn exactly as the relay is.

`bench.baselines:bare()` answers the relay's JSON without storing anything; `with_rq()`
stores each request with stock `Queue.enqueue` (JSON serializer), as a relay built on RQ's
public API would; `accept_only()` stores each with the relay's own accept script and nothing
else (no authentication, validation, hooks, log line or metrics): what any design that stores
a request in one Redis round trip costs at least. All read REDIS_URL and answer the relay's
default-reply route.
"""

from __future__ import annotations

import json
import os
import uuid

import redis
from flask import Flask, Response, jsonify, request
from rq import Queue
from rq.serializers import JSONSerializer

from relay.core.delivery import Delivery
from relay.storage.connection import connect
from relay.storage.intake import NO_QUOTAS, fingerprint
from relay.storage.store import Store

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


def accept_only() -> Flask:
    """Return a Flask app that stores each body with the relay's accept script, nothing else."""
    app = Flask(__name__)
    store = Store(connect(os.environ["REDIS_URL"], 4, "accept-only"))
    org_id = json.loads(os.environ["DMRELAY_ORGS"])[0]["id"]

    @app.post(ROUTE)
    def default_reply() -> Response:
        body = request.get_json()
        delivery = Delivery.new(org_id, "default-reply", body)
        same = fingerprint(org_id, "default-reply", json.dumps(body, sort_keys=True))
        accepted = store.intake.accept(delivery, same, window_seconds=300, quotas=NO_QUOTAS)
        return queued(accepted.delivery_id)

    return app


def queued(delivery_id: str) -> Response:
    """Answer with the relay's accepted shape."""
    return jsonify(
        status="queued",
        message="Message queued.",
        data={"delivery_id": delivery_id, "duplicate": False},
    )
