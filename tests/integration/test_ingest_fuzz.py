"""Whatever ManyChat sends, the relay answers in the documented shape and never with a 500."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ORG_A

PATHS = [
    ("POST", "/api/v1/contact/default-reply"),
    ("POST", "/api/v1/organization/create-contact"),
    ("POST", "/api/v1/contact/update-tags-external"),
    ("PUT", "/api/v1/contact/contact-status"),
]
FIELDS = [
    "manychat_id", "username", "organization_id", "message_content", "message_date",
    "page_name", "ig_id", "manychat_data", "had_outreach", "last_response_at",
    "last_message_content", "outreach_reason", "outreach_text", "email", "note", "tags",
    "tag_color", "mode", "tag_names", "contact_id", "lead_status", "lead_status_id",
    "pipeline_stage", "activate_followups",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["{{last_input_text}}", "##{{x}}", "<<y>>", "@John", ORG_A.id, "won", "add"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8),
    VALUES,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(PATHS), body=BODIES)
def test_any_body_gets_a_documented_answer(client, route, body) -> None:  # type: ignore[no-untyped-def]
    method, path = route
    response = client.open(
        path,
        method=method,
        data=json.dumps(body),
        headers={"x-org-auth-token": ORG_A.token, "Content-Type": "application/json"},
    )

    assert response.status_code in (200, 400, 403, 422), response.get_data(as_text=True)
    answer = response.get_json()
    if response.status_code == 200:
        assert answer["status"] in ("queued", "skipped")
    else:
        assert set(answer) == {"error", "message"}
        assert isinstance(answer["message"], str) and answer["message"]
