"""URL converters the relay's routes share."""

from __future__ import annotations

from werkzeug.routing import BaseConverter

# Every id new_delivery_id makes matches, and no word that names a route does.
DELIVERY_ID = r"dlv_[A-Za-z0-9_-]{1,64}"


class DeliveryIdConverter(BaseConverter):
    """A delivery id in a path, so /dead-letters/purge never reads as the dead letter "purge"."""

    regex = DELIVERY_ID


CONVERTERS = {"delivery_id": DeliveryIdConverter}
