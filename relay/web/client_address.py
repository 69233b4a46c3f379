"""The address of the client behind the platform's router, for the limits that key on it."""

from __future__ import annotations

from flask import Request


def client_address(request: Request, trusted_proxies: int) -> str:
    """Return the client's address as the nearest of `trusted_proxies` proxies saw it.

    Each proxy appends the address it saw to X-Forwarded-For, so the client is the entry
    `trusted_proxies` from the right. Entries further left are the client's own to write and
    are never believed; with no trusted proxy, or fewer entries than proxies (the request did
    not come through them), the socket's peer is the client.
    """
    peer = request.remote_addr or "unknown"
    if trusted_proxies < 1:
        return peer
    forwarded = ",".join(request.headers.getlist("X-Forwarded-For"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if len(hops) < trusted_proxies:
        return peer
    return hops[-trusted_proxies]
