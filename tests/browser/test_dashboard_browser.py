"""An operator in a real headless Chromium finds a dead letter on the dashboard and replays it."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from relay.web.admin import tokens
from tests.helpers import DEFAULT_REPLY, ORG_A, SECRET, headers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000

pytestmark = pytest.mark.browser


def require_chromium() -> None:
    """Skip without Debian's chromium, unless the run insists on the browser tests."""
    if CHROMIUM.exists():
        return
    if os.environ.get("DMRELAY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing and DMRELAY_REQUIRE_BROWSER=1")
    pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Launch headless Chromium for one test and close it afterwards."""
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """Open a page in a fresh context that fails the test on any script or CSP error."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        yield opened
    finally:
        context.close()
    assert not problems, f"the browser reported errors: {problems}"


def snap(page: Page, tmp_path: Path, name: str) -> Path:
    """Screenshot the page into tmp_path, and into DMRELAY_SCREENSHOT_DIR when set."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    keep = os.environ.get("DMRELAY_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


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


def sign_in(page: Page, relay_url: str) -> None:
    """Open the dashboard, get sent to sign-in, and sign in with an admin token."""
    page.goto(f"{relay_url}/dashboard/")
    expect(page).to_have_url(f"{relay_url}/dashboard/sign-in?next=/dashboard/")
    page.fill("#token", tokens.mint(SECRET, [tokens.ADMIN], 600))
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{relay_url}/dashboard/")


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
    relay_url: str, sandbox: Any, start_worker: Any, page: Page, tmp_path: Path
) -> None:
    start_worker()
    sandbox.fault(endpoint="contact/default-reply", status=400, count=1)
    delivery_id = post_default_reply(relay_url)
    sign_in(page, relay_url)

    # The live overview picks up the dead letter by polling, without a reload.
    expect(page.locator("#dead-count")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#throughput polyline.line-dead")).to_have_count(1)
    shots = [snap(page, tmp_path, "overview.png")]

    page.click("nav >> text=Dead letters")
    row = page.locator("tr", has=page.locator(f'input[value="{delivery_id}"]'))
    expect(row).to_contain_text("DmTracker answered 400")
    shots.append(snap(page, tmp_path, "dead-letters.png"))

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
    shots.append(snap(page, tmp_path, "delivery.png"))

    page.click("nav >> text=Deliveries")
    expect(page.locator("tbody tr").first).to_contain_text("delivered")
    assert all(shot.exists() and shot.stat().st_size > 0 for shot in shots)
