"""In a real headless Chromium: an operator copies ManyChat's set-up, sends test requests, and
fixes a held request in the dead letter's JSON editor."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from relay.web.admin import tokens
from tests.helpers import ORG_A, SECRET

WAIT_MS = 20_000

pytestmark = pytest.mark.browser


def reload_until_delivered(page: Page, url: str) -> None:
    """Reload a delivery page until it shows the delivered badge."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        page.goto(url)
        if page.locator("h1 .badge-delivered").count():
            return
        assert time.monotonic() < deadline, "the replayed delivery never showed as delivered"
        page.wait_for_timeout(250)


def sign_in(page: Page, relay_url: str) -> None:
    """Sign in to the dashboard with an admin token."""
    page.goto(f"{relay_url}/dashboard/sign-in")
    page.fill("#token", tokens.mint(SECRET, [tokens.ADMIN], 600, "browser-test"))
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{relay_url}/dashboard/")


def test_connect_manychat_shows_the_set_up_and_sends_test_requests(
    relay_url: str, sandbox: Any, start_worker: Any, page: Page, snap: Any
) -> None:
    start_worker()
    sign_in(page, relay_url)
    page.on("dialog", lambda dialog: dialog.accept())  # "send a real request?" confirmations

    page.click("nav a:has-text('Connect ManyChat')")
    expect(page).to_have_url(f"{relay_url}/dashboard/connect/{ORG_A.id}")
    expect(page.locator("#url-default-reply")).to_have_text(
        f"{relay_url}/api/v1/contact/default-reply"
    )
    expect(page.locator("#method-contact-status")).to_have_text("PUT")
    expect(page.locator("#header-default-reply")).to_have_text("x-org-auth-token: YOUR_ORG_TOKEN")
    expect(page.locator("#body-default-reply")).to_contain_text(
        '"message_content": {{last_input_text|to_json:true}}'
    )
    expect(page.locator("#action-create-contact")).to_contain_text("$.relay.status")
    assert ORG_A.token not in page.content()

    page.click("#test-default-reply")
    expect(page.locator("#answer-status-default-reply")).to_have_text("200", timeout=WAIT_MS)
    answer = page.locator("#answer-body-default-reply")
    expect(answer).to_contain_text('"state": "delivered"')
    expect(answer).to_contain_text('"contact_type"')
    snap(page, "connect-manychat-test.png")

    # Every variable empty, the username too: kept as held, never refused.
    page.click("#test-empty-default-reply")
    expect(page.locator("#answer-status-default-reply")).to_have_text("200", timeout=WAIT_MS)
    expect(page.locator("#answer-body-default-reply")).to_contain_text('"status": "held"')
    assert ORG_A.token not in page.content()


def test_an_operator_fixes_a_held_request_in_the_json_editor_and_replays_it(
    relay_url: str, sandbox: Any, start_worker: Any, page: Page, snap: Any
) -> None:
    start_worker()
    sign_in(page, relay_url)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{relay_url}/dashboard/connect/{ORG_A.id}")
    page.click("#test-empty-create-contact")  # held: its username was an empty variable
    held = page.locator("#answer-body-create-contact")
    expect(held).to_contain_text('"status": "held"', timeout=WAIT_MS)
    delivery_id = held.inner_text().split('"delivery_id": "', 1)[1].split('"', 1)[0]

    page.click("nav a:has-text('Dead letters')")
    page.click(f"a[href='/dashboard/deliveries/{delivery_id}']")
    expect(page.locator("h1 .badge-held")).to_be_visible()
    editor = page.locator("#payload-editor")
    editor.fill('{"username": "broken",')
    expect(page.locator("#payload-status")).to_contain_text("Not valid JSON")
    expect(page.locator("#save-body")).to_be_disabled()
    editor.fill(
        '{"username": "dmrelay.test", "had_outreach": true,'
        ' "outreach_reason": "Giveaway", "outreach_text": "Hi!"}'
    )
    expect(page.locator("#payload-status")).to_have_text("Valid JSON object.")
    page.click("#save-body")
    expect(page.locator(".flash")).to_contain_text("Body saved and checked")
    expect(page.locator(".timeline")).to_contain_text("edited")
    snap(page, "held-edited.png")

    page.click("button:has-text('Replay')")
    expect(page.locator(".flash")).to_contain_text("Replayed 1 dead letter(s).")
    reload_until_delivered(page, f"{relay_url}/dashboard/deliveries/{delivery_id}")
    assert sandbox.requests()[-1]["body"]["username"] == "dmrelay.test"
