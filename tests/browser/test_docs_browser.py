"""A reader in headless Chromium opens /docs: every operation renders, offline, under the CSP."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from relay.web.apidoc.spec import spec_operations

pytestmark = pytest.mark.browser
WAIT_MS = 20_000


def test_the_reference_shows_every_operation_from_the_relay_alone(
    relay_url: str, page: Page, snap: Any
) -> None:
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    described = requests.get(f"{relay_url}/openapi.json", timeout=5).json()

    page.goto(f"{relay_url}/docs")

    operations = page.locator(".opblock")
    expect(operations).to_have_count(len(spec_operations(described)), timeout=WAIT_MS)
    purge = page.locator(".opblock", has_text="/api/v1/admin/dead-letters/purge")
    purge.locator(".opblock-summary").click()
    expect(purge).to_contain_text("counts as a bulk operation")
    expect(purge.locator(".responses-table").first).to_contain_text("429")
    snap(page, "docs.png")
    # The page, its script and styles, and the description: nothing from anywhere else.
    assert fetched and all(url.startswith(relay_url) for url in fetched), fetched
