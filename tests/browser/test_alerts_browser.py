"""An operator in headless Chromium reads the alert history and sends a test alert."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from playwright.sync_api import Page, expect

from relay.alerting import AlertWatch
from relay.notify import Notifier
from relay.storage.store import Store
from relay.web.app import create_app, shut_down
from tests.helpers import ORG_A, served, sign_in_page, store_dead_letter, with_settings
from tests.receivers import WebhookReceiver

pytestmark = pytest.mark.browser


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """Run a webhook receiver for one test."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def test_the_alert_history_and_the_test_button(  # type: ignore[no-untyped-def]
    settings: Any, redis_conn: redis.Redis, webhook: WebhookReceiver, page: Page, snap: Any
) -> None:
    alerting = with_settings(settings, alert_webhook_url=webhook.url)
    store = Store(redis_conn)
    watch = AlertWatch(store, alerting, notifier=Notifier(alerting, tries=1))
    watch.sender.start()
    store_dead_letter(store, ORG_A.id)
    watch.run_checks(time.time())
    watch.sender.stop()  # the dead-letter alert is sent and in the history
    app = create_app(alerting, redis_conn)
    try:
        with served(app) as relay_url:
            sign_in_page(page, relay_url)
            page.click("nav a:has-text('Alerts')")
            expect(page).to_have_url(f"{relay_url}/dashboard/alerts")
            history = page.locator("#alert-history tbody tr")
            expect(history).to_have_count(1)
            expect(history.first).to_contain_text("1 new dead letter")
            expect(history.first).to_contain_text("Page A")
            expect(page.locator("#alert-channels")).to_contain_text("working")

            page.click("#send-test-alert")
            expect(page.locator(".flash")).to_contain_text("Test alert: webhook: sent.")
            expect(history).to_have_count(2)
            expect(page.locator('#alert-history tr[data-kind="test"]')).to_contain_text(
                "test alert"
            )
            snap(page, "alerts.png")
    finally:
        shut_down(app)

    assert [a["kind"] for a in webhook.alerts()] == ["dead_letters", "test"]
