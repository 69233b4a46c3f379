"""Build the OpenAPI 3.1 description from the Flask routes, the table and the schemas.

Nothing here is written per route: paths, methods and path parameters come from the app's
URL map, summaries from the view functions' docstrings, everything else from OPERATIONS
(relay/web/apidoc/operations.py) and the marshmallow schemas it names, through apispec.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.field_converter import FieldConverterMixin
from flask import Flask
from marshmallow import fields
from werkzeug.routing import Rule

from relay.core import defaults
from relay.core.schemas import ACCEPTS, Checked, IngestSchema
from relay.web.admin import api as admin_api
from relay.web.admin.resources import IsoTime
from relay.web.apidoc.operations import (
    ADMIN_SCHEME,
    OPERATIONS,
    SECURITY_SCHEMES,
    TAGS,
    Answer,
    Operation,
)
from relay.web.routing import DELIVERY_ID

# Routes that are not part of the API, and why; every other route must be described.
UNDESCRIBED_BLUEPRINTS = {
    "dashboard": "a browser UI behind a session cookie and CSRF tokens, not an API",
}
# Flask answers these for every route by itself.
AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<arguments>[^)]*)\))?:)?(?P<name>\w+)>")
_QUOTED = re.compile(r"'([^']*)'")
# Path parameters by Flask converter, and what the description says of some by name.
_CONVERTER_TYPES = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "delivery_id": {"type": "string", "pattern": f"^{DELIVERY_ID}$"},
}
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "delivery_id": {
        "description": "A delivery id, as ingest answered it.",
        "example": "dlv_187c0ffee0000001a2b3c4d5e6f7",
    },
}
HEADERS = {
    "X-Request-Id": {
        "description": "The request's id: the caller's X-Request-Id when it is 1-64 of "
        "[A-Za-z0-9._-], else a new one. Logs and admin errors quote it.",
        "required": True,
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "Requests this budget allows a minute (reads 1000, writes 100, bulk 10).",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in this minute's window.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "X-RateLimit-Reset": {
        "description": "Epoch second at which the window starts again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Retry-After": {
        "description": "Seconds until the budget is refilled.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
PARAMETERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "in": "header",
        "name": "X-Request-Id",
        "description": "An id to trace the request by, 1-64 of [A-Za-z0-9._-]; any other value "
        "is replaced by a new id, never refused. The answer's X-Request-Id carries it.",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "in": "header",
        "name": "Idempotency-Key",
        "description": "A repeated key answers the first request's delivery, not a new one.",
        "schema": {"type": "string", "maxLength": defaults.IDEMPOTENCY_KEY_MAX_CHARS},
    },
    "wait": {
        "in": "query",
        "name": "wait",
        "description": "Seconds to wait for DmTracker's answer, 0 to "
        f"{defaults.MAX_ANSWER_WAIT_SECONDS:g}; anything unreadable means the route's default.",
        "schema": {"type": "string", "examples": ["3"]},
    },
    "X-Dmrelay-Wait": {
        "in": "header",
        "name": "X-Dmrelay-Wait",
        "description": "The same as ?wait=, for a flow that cannot change the URL.",
        "schema": {"type": "string"},
    },
}
INFO = {
    "description": "dmrelay answers ManyChat at once with DmTracker's own routes, keeps every "
    "message durably in Redis, and delivers it to DmTracker with retries and rate limiting. "
    "This description is generated from the relay's routes and marshmallow schemas.",
}


def described_rules(app: Flask) -> Iterator[Rule]:
    """Yield the app's routes that the description must cover, in path order."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        blueprint, _, function = rule.endpoint.rpartition(".")
        if function == "static" or blueprint in UNDESCRIBED_BLUEPRINTS:
            continue
        yield rule


def openapi_path(rule: Rule) -> str:
    """Return a Flask rule's path in OpenAPI's template syntax."""
    return _VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule.rule)


def methods_of(rule: Rule) -> list[str]:
    """Return the methods a route is described for, in a stable order."""
    return sorted(set(rule.methods or ()) - AUTOMATIC_METHODS)


def route_operations(app: Flask) -> set[tuple[str, str]]:
    """Return (path, method) of every route the description must cover."""
    return {(openapi_path(r), m.lower()) for r in described_rules(app) for m in methods_of(r)}


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Return (path, method) of every operation a description holds."""
    return {(path, method) for path, item in spec["paths"].items() for method in item} - {
        (path, "parameters") for path in spec["paths"]
    }


def coverage_gaps(app: Flask, spec: dict[str, Any]) -> list[str]:
    """Name each route the description misses, each operation no route serves, each dead row."""
    endpoints = {
        (openapi_path(rule), method.lower()): rule.endpoint
        for rule in described_rules(app)
        for method in methods_of(rule)
    }
    described = spec_operations(spec)
    gaps = [
        f"{method.upper()} {path} ({endpoint}) is not described: add OPERATIONS[{endpoint!r}]"
        for (path, method), endpoint in sorted(endpoints.items())
        if (path, method) not in described
    ]
    gaps += [
        f"{method.upper()} {path} is described but no route serves it"
        for path, method in sorted(described - set(endpoints))
    ]
    gaps += [
        f"OPERATIONS[{name!r}] names no route"
        for name in sorted(set(OPERATIONS) - set(endpoints.values()))
    ]
    return gaps


def build_spec(app: Flask) -> dict[str, Any]:
    """Return the OpenAPI 3.1 description of every described route of the app."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="dmrelay",
        version=package_version(),
        openapi_version="3.1.0",
        plugins=[plugin],
        info=INFO,
        tags=[{"name": name, "description": text} for name, text in TAGS.items()],
    )
    teach(plugin)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], parameter)
    for rule in described_rules(app):
        operation = OPERATIONS.get(rule.endpoint)
        if operation is None:
            continue  # tests/integration/test_openapi.py names every undescribed route
        methods = methods_of(rule)
        spec.path(
            path=openapi_path(rule),
            parameters=path_parameters(rule),
            operations={
                method.lower(): operation_object(app, rule, method, operation, len(methods) > 1)
                for method in methods
            },
        )
    return spec.to_dict()


def teach(plugin: MarshmallowPlugin) -> None:
    """Tell apispec how the relay's own field types look in JSON."""
    plugin.map_to_openapi_type(IsoTime, "string", "date-time")
    if plugin.converter is None:  # APISpec sets it when it registers the plugin
        raise RuntimeError("register the MarshmallowPlugin with APISpec before teaching it")
    plugin.converter.add_attribute_function(checked_properties)


def checked_properties(
    self: FieldConverterMixin, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Describe a Checked field by what its converter accepts; null where it means absent."""
    if not isinstance(field, Checked):
        return {}
    accepted = {k: v for k, v in ACCEPTS.get(field.convert, {}).items() if k not in ret}
    types = accepted.get("type")
    if types is not None and not field.required and isinstance(field.parent, IngestSchema):
        # Ingest drops an optional field sent as null, as if it were not sent.
        accepted["type"] = [*(types if isinstance(types, list) else [types]), "null"]
    return accepted


def path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """Return the route's path parameters, typed by their Flask converter."""
    parameters = []
    for match in _VARIABLE.finditer(rule.rule):
        name = match.group("name")
        schema: dict[str, Any] = _CONVERTER_TYPES.get(
            match.group("converter") or "", {"type": "string"}
        )
        if match.group("converter") == "any":  # <any('a', 'b'):name>: one of the words
            schema = {"type": "string", "enum": _QUOTED.findall(match.group("arguments"))}
        described = {"in": "path", "required": True, "name": name, "schema": schema}
        parameters.append(described | PATH_PARAMETERS.get(name, {}))
    return parameters


def operation_object(
    app: Flask, rule: Rule, method: str, operation: Operation, several: bool
) -> dict[str, Any]:
    """Return the OpenAPI operation object of one method of one route."""
    view = app.view_functions[rule.endpoint]
    summary, _, more = (view.__doc__ or rule.endpoint).strip().partition("\n")
    described: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": summary,
        "operationId": rule.endpoint.replace(".", "_") + (f"_{method.lower()}" if several else ""),
        "parameters": parameters_of(operation),
        "responses": {str(s): response_object(a) for s, a in operation.answers.items()},
    }
    description = " ".join(part for part in (more.strip(), operation.description) if part)
    if operation.auth == ADMIN_SCHEME:
        description = f"{admin_terms(rule, method)} {description}".strip()
    if description:
        described["description"] = description
    if operation.auth:
        described["security"] = [{operation.auth: []}]
    if operation.body is not None:
        content = {"application/json": {"schema": operation.body}}
        described["requestBody"] = {"required": True, "content": content}
    return described


def admin_terms(rule: Rule, method: str) -> str:
    """Say which scope and which budget an admin route needs."""
    reading = method in admin_api.READ_METHODS
    scope = "relay:read" if reading else "relay:admin"
    if rule.endpoint in admin_api.BULK_ENDPOINTS:
        budget = f"a bulk operation ({admin_api.BULK_PER_MINUTE} a minute per token)"
    elif reading:
        budget = f"a read ({admin_api.READS_PER_MINUTE} a minute per token)"
    else:
        budget = f"a write ({admin_api.WRITES_PER_MINUTE} a minute per token)"
    return f"Needs {scope}; counts as {budget}."


def parameters_of(operation: Operation) -> list[Any]:
    """Return the operation's query and header parameters."""
    shared = ["X-Request-Id", *operation.shared_parameters]
    query = [{"in": "query", "schema": schema} for schema in operation.query]
    return [*query, *shared]


def response_object(answer: Answer) -> dict[str, Any]:
    """Return the OpenAPI response object of one answer."""
    response: dict[str, Any] = {
        "description": answer.description,
        "headers": {name: name for name in ("X-Request-Id", *answer.headers)},
    }
    if answer.schema is not None:
        response["content"] = {answer.media_type: {"schema": answer.schema}}
    return response


def package_version() -> str:
    """Return the installed relay's version."""
    try:
        return version("dmrelay")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"
