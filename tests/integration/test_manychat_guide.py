"""docs/manychat.md cannot drift: every body in it goes through the relay to the sandbox.

Each JSON block of the guide carries a marker: `send: METHOD PATH` for a request body, whose
ManyChat variables are rendered as ManyChat would and which is sent through the relay with
a worker delivering to the sandbox; `answer to the request above`, `answer: queued` or
`answer: delivery status` for an example answer, whose fields must be those of the real one.
Every JSONPath a section's mapping table lists must exist in that section's real answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.config import answer_wait_defaults
from relay.core import errors
from relay.web.app import create_app
from tests.helpers import MANYCHAT_CONTACT, ORG_A, headers, wait_until, with_settings

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "manychat.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```json\n(?P<text>.*?)\n```", re.DOTALL)
VARIABLE = re.compile(r"(?:##)?\{\{\s*(?P<name>[\w.]+)\s*(?P<filters>(?:\|[^{}|]*)*)\}\}")
FILTER = re.compile(r"\|\s*(?P<name>\w+)\s*:\s*(?P<value>\"[^\"]*\"|[^|]*)")
# A JSONPath a mapping table tells a flow to map: first cell of a table row.
JSONPATH = re.compile(r"^\| `(\$(?:\.\w+)+)` \|", re.MULTILINE)
ANSWER_MARKERS = (
    "answer to the request above",
    "answer: queued",
    "answer: delivery status",
    "answer: held",
)
# Each form in which ManyChat sends a variable that has no value, given its template text.
EMPTY_FORMS = {
    "unrendered": lambda variable: variable.group(0),
    "prefixed": lambda variable: "##" + variable.group(0).removeprefix("##"),
    "angle brackets": lambda variable: f"<<{variable['name']}>>",
    "empty text": lambda variable: '""' if "to_json" in variable["filters"] else "",
}
# What a kept request may be answered: never a refusal.
KEPT = ("success", "queued", "skipped", "held")

# A contact as ManyChat renders "Full Contact Data", and the variables the guide uses.
CONTACT = {
    **MANYCHAT_CONTACT,
    "profile_pic": None,
    "email": None,
    "ig_username": "maria.lopez.fit",
    "custom_fields": {"lead_source": "reel", "budget": None},
}
RENDERED: dict[str, Any] = {
    "subscriber_id": "1843127460",
    "instagram_username": "maria.lopez.fit",
    # Quotes, a line break and an emoji: what |to_json:true is there for.
    "last_input_text": 'She said "yes!" \u2013 how much is it?\nThanks \U0001f64f',
    "page_name": ORG_A.page_name,
    "full_contact_data": json.dumps(CONTACT),
}


@dataclass(frozen=True)
class Block:
    """One JSON block of the guide: its marker, text, and the section it sits in."""

    marker: str
    text: str
    section: str


def blocks() -> list[Block]:
    """Return every JSON block of the guide, in order."""
    found = []
    for section in GUIDE.split("\n## ")[1:]:
        title = section.splitlines()[0]
        for match in BLOCK.finditer(section):
            found.append(Block((match["marker"] or "").strip(), match["text"], title))
    return found


def render(template: str, values: dict[str, Any]) -> str:
    """Render ManyChat variables as ManyChat would, with their filters."""

    def one(variable: re.Match[str]) -> str:
        name = variable["name"]
        assert name in values, f"the guide uses {{{{{name}}}}}, which this test cannot render"
        given = FILTER.finditer(variable["filters"])
        filters = {f["name"]: f["value"].strip().strip('"') for f in given}
        value = values[name]
        if value is None and "fallback" in filters:
            value = filters["fallback"]
        if value is None:
            return variable.group(0)  # ManyChat sends a variable without value as its text
        return json.dumps(value) if filters.get("to_json") == "true" else str(value)

    return VARIABLE.sub(one, template)


def fields(value: Any) -> Any:
    """Return the field names of a JSON value, nested, without the values."""
    if isinstance(value, dict):
        return {key: fields(item) for key, item in value.items()}
    if isinstance(value, list) and value:
        return [fields(value[0])]
    return None


def resolve(path: str, answer: Any) -> bool:
    """Tell whether a simple JSONPath ($.a.b) exists in an answer."""
    for name in path.removeprefix("$.").split("."):
        if not isinstance(answer, dict) or name not in answer:
            return False
        answer = answer[name]
    return True


def test_every_json_block_is_marked_as_a_request_or_an_answer() -> None:
    found = blocks()
    assert len(found) >= 10
    for block in found:
        assert block.marker.startswith("send: ") or block.marker in ANSWER_MARKERS, block


def test_every_variable_of_the_guide_can_be_rendered() -> None:
    for block in blocks():
        json.loads(render(block.text, RENDERED))


@pytest.fixture
def relay(settings, redis_conn, sandbox, start_worker):  # type: ignore[no-untyped-def]
    """Return a client of a relay with the documented default waits and a running worker."""
    own = with_settings(settings, answer_wait_seconds=answer_wait_defaults())
    start_worker(own)
    return create_app(own, redis_conn).test_client()


def send(relay, marker: str, body: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Send one rendered body as the guide says; return the relay's 200 answer."""
    method, path = marker.removeprefix("send: ").split(" ", 1)
    response = relay.open(path, method=method, data=body, headers=headers(ORG_A.token))
    assert response.status_code == 200, (marker, response.get_json())
    answer: dict[str, Any] = response.get_json()
    assert answer["status"] in ("success", "queued"), (marker, answer)
    return answer


def test_every_body_of_the_guide_goes_through_the_relay(relay, sandbox) -> None:  # type: ignore[no-untyped-def]
    answers: dict[str, list[dict[str, Any]]] = {}
    last: dict[str, Any] = {}
    for block in blocks():
        if block.marker.startswith("send: "):
            last = send(relay, block.marker, render(block.text, RENDERED))
            answers.setdefault(block.section, []).append(last)
        elif block.marker == "answer to the request above":
            assert fields(json.loads(block.text)) == fields(last), block.section

    sent = [block for block in blocks() if block.marker.startswith("send: ")]
    wait_until(lambda: len(sandbox.requests()) >= len(sent), timeout=15)
    assert all(200 <= entry["status"] < 300 for entry in sandbox.requests())
    for section, section_answers in answers.items():
        paths = JSONPATH.findall(section_text(section))
        for path in paths:
            assert any(resolve(path, a) for a in section_answers), (section, path)


def test_optional_variables_without_value_still_go_through(relay) -> None:  # type: ignore[no-untyped-def]
    unset = {**RENDERED, "page_name": None}
    for block in blocks():
        if block.marker.startswith("send: ") and "fallback" in block.text:
            send(relay, block.marker, render(block.text, unset))


def render_empty(template: str, empty: str, form: str) -> str:
    """Render a body with one variable empty, sent in one of ManyChat's forms, the rest set."""

    def one(variable: re.Match[str]) -> str:
        if variable["name"] == empty:
            return str(EMPTY_FORMS[form](variable))
        return render(variable.group(0), RENDERED)

    return VARIABLE.sub(one, template)


def test_every_body_of_the_guide_is_kept_with_any_variable_empty_in_any_form(  # type: ignore[no-untyped-def]
    client, redis_conn
) -> None:
    outcomes: dict[str, int] = {}
    for block in blocks():
        if not block.marker.startswith("send: "):
            continue
        method, path = block.marker.removeprefix("send: ").split(" ", 1)
        for name in dict.fromkeys(v["name"] for v in VARIABLE.finditer(block.text)):
            for form in EMPTY_FORMS:
                body = render_empty(block.text, name, form)
                response = client.open(path, method=method, data=body, headers=headers(ORG_A.token))
                assert response.status_code == 200, (block.marker, name, form, response.get_json())
                answer = response.get_json()
                assert answer["status"] in KEPT, (block.marker, name, form, answer)
                assert answer["relay"]["state"] in ("queued", "skipped", "held"), answer
                outcomes[answer["status"]] = outcomes.get(answer["status"], 0) + 1
                redis_conn.delete(*redis_conn.keys("dmrelay:contacts:*") or ["-"])  # no dedup
    # Each way a lead is kept occurs: delivered later (queued), skipped and held.
    assert set(outcomes) == {"queued", "skipped", "held"}, outcomes


def test_the_held_example_has_the_real_answers_fields(client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"manychat_id": "1", "username": "{{instagram_username}}"})
    held = client.post("/api/v1/contact/default-reply", data=body, headers=headers(ORG_A.token))
    example = next(json.loads(b.text) for b in blocks() if b.marker == "answer: held")

    assert fields(example) == fields(held.get_json())
    assert example["message"] == held.get_json()["message"]
    assert example["data"]["reason"] == held.get_json()["data"]["reason"]


def test_the_example_answers_have_the_real_answers_fields(relay, sandbox) -> None:  # type: ignore[no-untyped-def]
    body = {"manychat_id": "1843127460", "lead_status": "won"}
    queued = send(relay, "send: POST /api/v1/contact/contact-status", json.dumps(body))
    delivery_id = queued["relay"]["delivery_id"]
    status_url = f"/api/v1/deliveries/{delivery_id}"
    delivered = wait_until(
        lambda: (
            (a := relay.get(status_url, headers=headers(ORG_A.token)).get_json())["data"]["state"]
            in ("delivered", "dead")
            and a
        )
    )
    examples = {b.marker: json.loads(b.text) for b in blocks() if b.marker.startswith("answer:")}

    assert fields(examples["answer: queued"]) == fields(queued)
    assert fields(examples["answer: delivery status"])["data"].keys() == delivered["data"].keys()


def section_text(title: str) -> str:
    """Return the text of one section of the guide."""
    return next(s for s in GUIDE.split("\n## ")[1:] if s.splitlines()[0] == title)


def test_the_troubleshooting_table_names_every_answer_of_the_relay() -> None:
    table = section_text("Troubleshooting: every answer of the relay")
    first_cells = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ")]
    statuses = {cls.status for cls in vars(errors).values() if _is_http_error(cls)}
    statuses |= {404, 405, 413, 500}  # Werkzeug's, and the one that must never happen
    for status in sorted(statuses):
        assert any(cell.startswith(f"| {status} ") for cell in first_cells), status
    for word in ("success", "queued", "duplicate", "dead", "skipped", "spooled", "held"):
        assert any(f'"{word}"' in cell or f"`{word}`" in cell for cell in first_cells), word


def _is_http_error(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, errors.HttpError) and value.status != 500


def test_the_readme_links_the_guide_on_its_first_screen() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:25])
    assert "(docs/manychat.md)" in first_screen
