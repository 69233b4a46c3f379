"""A local DmTracker stand-in: the documented routes, rules and errors, with state in memory.

state.py holds the in-memory DmTracker, rules.py its four documented endpoints, routes.py the
Flask app (DmTracker's routes and the control API tests drive), server.py the HTTP server.
"""

from relay.devtools.sandbox.routes import API_PREFIX, CONTROL_PREFIX, create_sandbox_app
from relay.devtools.sandbox.server import SandboxServer, print_request_line, serve
from relay.devtools.sandbox.state import SandboxOrg

__all__ = [
    "API_PREFIX",
    "CONTROL_PREFIX",
    "SandboxOrg",
    "SandboxServer",
    "create_sandbox_app",
    "print_request_line",
    "serve",
]
