"""Load the Lua scripts that sit beside this module, each documented in its own file."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from relay.storage.connection import refuses_writes

PATIENCE_PAUSE_SECONDS = 1.0


def source(*names: str) -> str:
    """Return the concatenated source of scripts (shared helpers first)."""
    folder = resources.files("relay.storage") / "lua"
    return "\n".join((folder / f"{name}.lua").read_text(encoding="utf-8") for name in names)


def register(connection: redis.Redis, *names: str) -> Script:
    """Register a script made of the named files, run later with EVALSHA."""
    return connection.register_script(source(*names))


def run_patiently(script: Script, keys: Sequence[Any], args: Sequence[Any], seconds: float) -> Any:
    """Run a script that is safe to run twice; while Redis is unreachable or refuses writes,
    run it again, with the same arguments, for up to `seconds` (then raise the last error)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as error:
            if not refuses_writes(error) or time.monotonic() + PATIENCE_PAUSE_SECONDS > deadline:
                raise
            time.sleep(PATIENCE_PAUSE_SECONDS)
