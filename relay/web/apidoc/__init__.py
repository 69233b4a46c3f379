"""The relay's OpenAPI 3.1 description (/openapi.json) and reference page (/docs).

The description is generated, never written by hand: apispec reads the Flask routes (paths,
methods, path parameters), the view docstrings (summaries), the table OPERATIONS in
operations.py (who may call, which body, which answers) and the marshmallow schemas it names
(the ingest schemas in relay/core/schemas.py, the admin resources in
relay/web/admin/resources.py, the other answers in answers.py).

Every route must be described, except the dashboard's pages and static files (spec.py says
why). tests/integration/test_openapi.py fails when a route is not described or a description
names no route; to describe a new route, add one row to OPERATIONS (operations.py shows how).
"""
