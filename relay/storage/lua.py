"""Load the Lua scripts that sit beside this module, each documented in its own file."""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script


def source(*names: str) -> str:
    """Return the concatenated source of scripts (shared helpers first)."""
    folder = resources.files("relay.storage") / "lua"
    return "\n".join((folder / f"{name}.lua").read_text(encoding="utf-8") for name in names)


def register(connection: redis.Redis, *names: str) -> Script:
    """Register a script made of the named files, run later with EVALSHA."""
    return connection.register_script(source(*names))
