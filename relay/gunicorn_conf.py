"""gunicorn settings for the web process: threaded workers bound to $PORT."""

import os
import sys
from pathlib import Path
from typing import Any

from relay.config import read_setting
from relay.core.errors import ConfigError


def _setting(name: str) -> Any:
    """Return one of the relay's settings; stop with one clear line when it is wrong."""
    try:
        return read_setting(name, os.environ)
    except ConfigError as error:
        print(f"dmrelay: configuration error: {error}", file=sys.stderr)
        sys.exit(2)


bind = f"0.0.0.0:{_setting('port')}"
workers = _setting("web_processes")
# A thin I/O-bound receiver: threads are cheap concurrency. gthread, except that a request
# reaches a thread only once read in full, within DMRELAY_READ_DEADLINE_SECONDS (docs/budgets.md).
worker_class = "relay.web.buffered_worker.BufferedThreadWorker"
threads = _setting("web_threads")
timeout = 30
graceful_timeout = 25
keepalive = 5
# gunicorn bounds the request line and headers (its defaults: 4094 bytes, 100 fields of
# 8190 bytes) but not the body: the app answers 413 past 64 KiB, chunked bodies included
# (relay/web/app.py, refuse_streamed_body_over_limit).
# Heroku and Render end TLS at their routers and say so in X-Forwarded-Proto; trusting it
# lets the dashboard mark its cookie Secure. Narrow it with FORWARDED_ALLOW_IPS elsewhere.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
accesslog = None
errorlog = "-"


def on_starting(server: object) -> None:
    """Stop with one clear line when the configuration is wrong."""
    from relay.config import load_settings
    from relay.logs import configure_logging

    configure_logging()
    from relay.web.spool import prepare_directory

    try:
        prepare_directory(Path(load_settings().spool_dir))
    except ConfigError as error:
        print(f"dmrelay: configuration error: {error}", file=sys.stderr)
        sys.exit(2)


def worker_exit(server: object, worker: object) -> None:
    """On SIGTERM, after the last request: drain the spool into Redis while the grace allows."""
    from relay.web.app import shut_down

    app = getattr(worker, "wsgi", None)
    if app is not None:
        shut_down(app)
