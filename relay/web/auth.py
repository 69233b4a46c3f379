"""Organization authentication by x-org-auth-token, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from relay.config import Org
from relay.core.errors import Unauthorized


def organization_for_token(token: str | None, orgs: Iterable[Org]) -> Org:
    """Return the organization a token belongs to, or raise Unauthorized."""
    found = None
    presented = (token or "").encode()
    for org in orgs:
        # Compare with every org so the time taken does not reveal which one matched.
        if hmac.compare_digest(presented, org.token.encode()) and token:
            found = org
    if found is None:
        raise Unauthorized("Missing or invalid x-org-auth-token header.")
    return found
