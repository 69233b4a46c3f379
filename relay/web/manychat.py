"""ManyChat-native ingest: POST /api/v1/manychat/<action> with ManyChat's Full Contact Data.

The body is mapped onto the DmTracker request of the action (relay.core.manychat), then takes
exactly the plain routes' path: checks, filters, deduplication, queue and answer.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from relay.core import manychat
from relay.core.errors import FieldError
from relay.web.ingest import ingest

bp = Blueprint("manychat", __name__, url_prefix="/api/v1/manychat")
ACTION_RULE = "/<any({}):action>".format(", ".join(f"'{a}'" for a in manychat.ACTIONS))


@bp.post(ACTION_RULE)
def full_contact_data(action: str) -> Response:
    """Accept a ManyChat contact, as Full Contact Data, for one DmTracker action."""

    def to_request(body: Any) -> dict[str, Any]:
        return manychat.to_request(action, body)

    def explain(error: FieldError) -> FieldError:
        return with_source(action, error)

    return ingest(action, to_request, explain)


def with_source(action: str, error: FieldError) -> FieldError:
    """Name the Full Contact Data field a refused DmTracker field was taken from."""
    source = manychat.source_of(action, error.field)
    if source and source != error.field:
        error.message += f" In Full Contact Data it comes from '{source}'."
    return error
