"""What a request handler needs from the app it runs in, typed, in one place."""

from __future__ import annotations

from flask import current_app

from relay.config import Settings
from relay.storage.metrics import Metrics
from relay.storage.store import Store
from relay.web.frontdoor import FrontDoor


def current_settings() -> Settings:
    """Return the app's settings."""
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def current_store() -> Store:
    """Return the app's Redis adapter."""
    store: Store = current_app.extensions["dmrelay.store"]
    return store


def current_metrics() -> Metrics:
    """Return the app's metrics recorder."""
    metrics: Metrics = current_app.extensions["dmrelay.metrics"]
    return metrics


def current_front_door() -> FrontDoor:
    """Return the app's ingest path: rate limits, Redis within a deadline, the spool."""
    door: FrontDoor = current_app.extensions["dmrelay.front_door"]
    return door
