"""Admin tokens: HS256 JWTs signed with DMRELAY_SECRET_KEY, carrying scopes and an expiry."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from relay.core.errors import Forbidden, Unauthorized

READ = "relay:read"
ADMIN = "relay:admin"
SCOPES = (READ, ADMIN)
ISSUER = "dmrelay"
MAX_TTL_SECONDS = 365 * 24 * 3600


def mint(secret: str, scopes: list[str], ttl_seconds: int, subject: str = "operator") -> str:
    """Return a signed token with the given scopes, valid for ttl_seconds."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {unknown or 'none'}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError("ttl must be between 1 second and 365 days")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: str, token: str) -> dict[str, Any]:
    """Return the token's claims, or raise Unauthorized (bad, expired, wrong issuer)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "scope"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The admin token has expired.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The admin token is missing or invalid.") from None
    return dict(claims)


def require_scope(claims: dict[str, Any], scope: str) -> None:
    """Raise Forbidden unless the claims grant the scope (admin implies read)."""
    granted = set(str(claims.get("scope", "")).split())
    if scope not in granted and not (scope == READ and ADMIN in granted):
        raise Forbidden(f"This action needs the {scope} scope.")


def parse_ttl(text: str) -> int:
    """Turn '90s', '15m', '1h', '7d' or plain seconds into seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 1h, 7d)") from None
