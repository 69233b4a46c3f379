"""An operator in a real headless Chromium finds a dead letter on the dashboard and replays it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.helpers import DEFAULT_REPLY, ORG_A, headers, sign_in_page

WAIT_MS = 20_000

pytestmark = pytest.mark.browser


def post_default_reply(relay_url: str) -> str:
    """Send ManyChat's default reply to the relay; return the delivery id."""
    response = requests.post(
        f"{relay_url}/api/v1/contact/default-reply",
        json=DEFAULT_REPLY,
        headers=headers(ORG_A.token),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["delivery_id"])


def reload_until_delivered(page: Page, url: str) -> None:
    """Reload the delivery page until it shows the delivered badge."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        page.goto(url)
        if page.locator("h1 .badge-delivered").count():
            return
        page.wait_for_timeout(250)
    raise AssertionError("the replayed delivery never showed as delivered")


def test_an_operator_replays_a_dead_letter_to_delivery(
    relay_url: str, sandbox: Any, start_worker: Any, page: Page, snap: Any
) -> None:
    start_worker()
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1)
    delivery_id = post_default_reply(relay_url)
    sign_in_page(page, relay_url)

    # The live overview picks up the dead letter by polling, without a reload.
    expect(page.locator("#dead-count")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#throughput polyline.line-dead")).to_have_count(1)
    shots = [snap(page, "overview.png")]

    page.click("nav >> text=Dead letters")
    row = page.locator("tr", has=page.locator(f'input[value="{delivery_id}"]'))
    expect(row).to_contain_text("DmTracker answered 400")
    shots.append(snap(page, "dead-letters.png"))

    row.locator("a").first.click()
    expect(page.locator("#reason")).to_have_text("DmTracker answered 400")
    expect(page.locator(".timeline .attempt")).to_have_count(1)

    page.go_back()
    page.check(f'input[name="ids"][value="{delivery_id}"]')
    page.click("#replay-selected")
    expect(page.locator(".flash")).to_have_text("Replayed 1 dead letter(s).")
    expect(page.locator("td.empty")).to_have_text("No dead letters match.")

    reload_until_delivered(page, f"{relay_url}/dashboard/deliveries/{delivery_id}")
    expect(page.locator(".timeline .attempt")).to_have_count(2)
    shots.append(snap(page, "delivery.png"))

    page.click("nav >> text=Deliveries")
    expect(page.locator("tbody tr").first).to_contain_text("delivered")
    assert all(shot.exists() and shot.stat().st_size > 0 for shot in shots)
