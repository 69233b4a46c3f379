"""Headless Chromium for the browser tests: fixtures that fail a test on any page error."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

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


@pytest.fixture
def snap(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Return a function that screenshots a page into tmp_path (and DMRELAY_SCREENSHOT_DIR)."""

    def take(page: Page, name: str) -> Path:
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        keep = os.environ.get("DMRELAY_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / name)
        return path

    return take
