"""How long a page of dead letters takes with many kept: the admin API's
`GET /api/v1/admin/dead-letters?take=N`, through the app in process (no HTTP), on a private
redis-server holding `--count` dead letters (the target: take=25 of 30,000 in under 50 ms).

Run: python -m bench.dead_letter_pages [--count 30000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis
from flask.testing import FlaskClient

from bench.harness import ORG_A, SECRET
from relay.config import Settings
from relay.devtools.deadletters import store_dead_letters
from relay.devtools.localredis import start_local_redis
from relay.storage.store import Store
from relay.web.admin import tokens
from relay.web.app import create_app

PAGE = "/api/v1/admin/dead-letters"
TAKES = (1, 25, 100)


def main() -> None:
    """Build the dead letters, then time pages of each size; print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = start_local_redis(Path(folder))
        try:
            run(server.url, Path(folder) / "spool", args.count, args.rounds)
        finally:
            server.stop()


def run(redis_url: str, spool_dir: Path, count: int, rounds: int) -> None:
    """Print the median and worst time of a page of each size, skipping the newest 1,000."""
    connection = redis.Redis.from_url(redis_url)
    started = time.perf_counter()
    store_dead_letters(Store(connection), ORG_A.id, count)
    print(f"{count} dead letters written in {time.perf_counter() - started:.1f} s")
    settings = Settings(
        redis_url=redis_url, secret_key=SECRET, orgs=(ORG_A,), spool_dir=str(spool_dir)
    )
    app = create_app(settings, connection)
    client = app.test_client()
    read = {"Authorization": f"Bearer {tokens.mint(SECRET, [tokens.READ], 3600)}"}
    for take in TAKES:
        url = f"{PAGE}?take={take}&skip=1000"
        client.get(url, headers=read)  # the first request of a size warms up
        times = [timed_ms(client, url, read) for _ in range(rounds)]
        print(f"take={take}: median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms")
    app.extensions["dmrelay.front_door"].spool.close(drain_seconds=0)


def timed_ms(client: FlaskClient, url: str, headers: dict[str, str]) -> float:
    """Return how long one request took, in milliseconds."""
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.status_code
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
