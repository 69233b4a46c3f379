"""Serve the sandbox over real HTTP: in a background thread for tests, or in the foreground."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from relay.devtools.sandbox.routes import API_PREFIX, create_sandbox_app
from relay.devtools.sandbox.state import SandboxOrg


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without its access log on stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing: serve() prints its own line, and tests want silence."""


def quiet_server(host: str, port: int, app: Flask) -> BaseWSGIServer:
    """Bind a threaded werkzeug server, so one request's latency never holds up another."""
    return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)


class SandboxServer:
    """Serve a sandbox app over real HTTP from a background thread."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = quiet_server(host, port, app)
        self.url = f"http://{host}:{self._server.server_port}{API_PREFIX}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SandboxServer:
        """Start answering requests."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():  # shutdown() would wait forever on a server never started
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def print_request_line(response: Response) -> Response:
    """Print one line per request: method, path, status; never headers, which hold the token."""
    print(f"{request.method} {request.path} {response.status_code}", flush=True)
    return response


def serve(orgs: Iterable[SandboxOrg], host: str, port: int, **options: Any) -> None:
    """Run the sandbox in the foreground until interrupted."""
    app = create_sandbox_app(orgs, **options)
    app.after_request(print_request_line)
    server = quiet_server(host, port, app)
    print(f"DmTracker sandbox on http://{host}:{server.server_port}{API_PREFIX}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
