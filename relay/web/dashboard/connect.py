"""Connect ManyChat: each action's External Request, ready to copy, and a test request.

Every body here works with any of its variables empty, in each form ManyChat sends an empty
one (tests/integration/test_connect_manychat.py sends them so): an empty reply is skipped,
an empty optional field is left out, an empty required one holds the request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app, url_for

from relay.config import Org
from relay.core.endpoints import TOKEN_HEADER

# A ManyChat variable in a body template, with its filters (`|to_json:true`, `|fallback:""`).
VARIABLE = re.compile(r"\{\{(?P<name>[^{}|]+)(?P<filters>(?:\|[^{}|]*)*)\}\}")
TEST_WAIT_SECONDS = 5
# What the test request fills the variables with: a contact made for the test, recognisable
# in DmTracker.
SAMPLE = {
    "subscriber_id": "900000000000001",
    "instagram_username": "dmrelay.test",
    "last_input_text": 'A test from the relay\'s dashboard: "quotes", a line break\nand all.',
}
# The token itself is never shown (nor stored) by the dashboard.
TOKEN_SHOWN = "YOUR_ORG_TOKEN"  # noqa: S105 - what the user replaces, not a secret


@dataclass(frozen=True)
class Action:
    """One ManyChat External Request: where it goes, what it sends, what a flow maps."""

    name: str
    title: str
    method: str
    route: str  # the ingest view
    query: str
    body: str
    mappings: tuple[tuple[str, str], ...]

    def url(self) -> str:
        """Return the relay's URL for this action, as this dashboard is reached."""
        return url_for(self.route, _external=True) + self.query


ACTIONS = (
    Action(
        "default-reply",
        "A subscriber replies",
        "POST",
        "ingest.default_reply",
        "",
        "{\n"
        '  "manychat_id": "{{subscriber_id}}",\n'
        '  "username": "{{instagram_username}}",\n'
        '  "message_content": {{last_input_text|to_json:true}},\n'
        '  "page_name": "{{page_name|fallback:""}}"\n'
        "}",
        (
            ("$.relay.state", "delivered when the fields below are DmTracker's"),
            ("$.data.contact_type", "inbound or outreach: route the flow on it"),
            ("$.data.outreach_reason", "why you reached out, for an outreach contact"),
            ("$.data.outreach_message", "the outreach message you sent"),
            ("$.relay.delivery_id", "the relay's id for this message"),
        ),
    ),
    Action(
        "create-contact",
        "Log an outreach (create or update a contact)",
        "POST",
        "ingest.create_contact",
        "",
        "{\n"
        '  "username": "{{instagram_username}}",\n'
        '  "manychat_id": "{{subscriber_id}}",\n'
        '  "had_outreach": true,\n'
        '  "outreach_reason": "Commented on the giveaway post",\n'
        '  "outreach_text": {{last_input_text|to_json:true}}\n'
        "}",
        (
            ("$.relay.state", "delivered when the fields below are DmTracker's"),
            ("$.relay.status", "201 for a new contact, 200 for one DmTracker knows"),
            ("$.data.id", "DmTracker's contact id: send it as contact_id later"),
            ("$.data.pipeline_stage", "the contact's pipeline stage"),
        ),
    ),
    Action(
        "update-tags",
        "Tag a contact",
        "POST",
        "ingest.update_tags",
        f"?wait={TEST_WAIT_SECONDS}",
        "{\n"
        '  "username": "{{instagram_username}}",\n'
        '  "mode": "add",\n'
        '  "tag_names": ["hot-lead"]\n'
        "}",
        (
            ("$.relay.state", "delivered when the fields below are DmTracker's"),
            ("$.data.tags", "the contact's tags after the change"),
        ),
    ),
    Action(
        "contact-status",
        "Lead status and pipeline stage",
        "PUT",
        "ingest.contact_status",
        "",
        "{\n"
        '  "manychat_id": "{{subscriber_id}}",\n'
        '  "lead_status": "won",\n'
        '  "pipeline_stage": "Closed"\n'
        "}",
        (
            ("$.relay.state", "queued at once; delivered in the background"),
            ("$.relay.delivery_id", "the relay's id: look it up with GET /api/v1/deliveries/<id>"),
        ),
    ),
)
BY_NAME = {action.name: action for action in ACTIONS}


def render(template: str, values: dict[str, str], *, empty: bool = False) -> str:
    """Render a body as ManyChat would: each variable its value, or, when `empty`, the
    template text ManyChat sends for a variable without one."""

    def one(variable: re.Match[str]) -> str:
        name = variable["name"].strip()
        value = None if empty else values.get(name)
        if value is None:
            return variable.group(0)
        return json.dumps(value) if "to_json:true" in variable["filters"] else value

    return VARIABLE.sub(one, template)


def send_test(org: Org, action: Action, *, empty: bool) -> tuple[int, Any, str]:
    """Send one action's body through the relay's own ingest, as ManyChat would send it;
    return the status, the answer and the body sent."""
    values = {**SAMPLE, "page_name": org.page_name or ""}
    body = render(action.body, values, empty=empty)
    path = url_for(action.route) + (action.query or f"?wait={TEST_WAIT_SECONDS}")
    # Through the app itself, so the test meets every check a ManyChat request meets; the
    # token is read here, server-side, and never reaches the page. In an app context of its
    # own: Flask would otherwise share this request's `g` (its log context, its metric labels).
    with current_app.app_context():
        response = current_app.test_client().open(
            path, method=action.method, data=body, headers={TOKEN_HEADER: org.token}
        )
    answer = response.get_json(silent=True)
    return response.status_code, answer if answer is not None else response.get_data(True), body
