"""The four DmTracker endpoints the relay accepts and forwards."""

from dataclasses import dataclass

TOKEN_HEADER = "x-org-auth-token"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True)
class Endpoint:
    """One DmTracker endpoint: short name, path, forwarding method, and its defaults."""

    name: str
    path: str
    method: str
    rate_limited_per_minute: int | None = None
    # How long ingest waits for DmTracker's answer by default: the endpoints whose answer a
    # ManyChat flow routes on (contact_type, the contact's id) wait; the others answer at once.
    answer_wait_seconds: float = 0.0


DEFAULT_REPLY = Endpoint("default-reply", "contact/default-reply", "POST", answer_wait_seconds=5)
CREATE_CONTACT = Endpoint(
    "create-contact", "organization/create-contact", "POST", 60, answer_wait_seconds=5
)
UPDATE_TAGS = Endpoint("update-tags", "contact/update-tags-external", "POST")
CONTACT_STATUS = Endpoint("contact-status", "contact/contact-status", "PATCH")

ENDPOINTS: dict[str, Endpoint] = {
    e.name: e for e in (DEFAULT_REPLY, CREATE_CONTACT, UPDATE_TAGS, CONTACT_STATUS)
}
