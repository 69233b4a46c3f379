"""The four DmTracker endpoints the relay accepts and forwards."""

from dataclasses import dataclass

TOKEN_HEADER = "x-org-auth-token"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True)
class Endpoint:
    """One DmTracker endpoint: short name, path under the API base, forwarding method."""

    name: str
    path: str
    method: str
    rate_limited_per_minute: int | None = None


DEFAULT_REPLY = Endpoint("default-reply", "contact/default-reply", "POST")
CREATE_CONTACT = Endpoint("create-contact", "organization/create-contact", "POST", 60)
UPDATE_TAGS = Endpoint("update-tags", "contact/update-tags-external", "POST")
CONTACT_STATUS = Endpoint("contact-status", "contact/contact-status", "PATCH")

ENDPOINTS: dict[str, Endpoint] = {
    e.name: e for e in (DEFAULT_REPLY, CREATE_CONTACT, UPDATE_TAGS, CONTACT_STATUS)
}
