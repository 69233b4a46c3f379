"""The spool database: torn and corrupt files, a full disk, an untrusted directory, settling.

The apps here run in the test process, on a redis-server of the test's own, so a test can
stop, freeze or restart it, and hold one host's drain back while another host goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from relay.config import Settings
from relay.core.errors import ConfigError
from relay.devtools.localredis import LocalRedis, start_local_redis
from relay.web.app import create_app
from relay.web.spool import DATABASE_NAME, Spool, SpoolEntry, prepare_directory
from tests.formation import ordering_violations, received, spool_entry
from tests.helpers import (
    DEFAULT_REPLY,
    ORG_A,
    RunningWorker,
    Sandbox,
    headers,
    queued_ids,
    wait_until,
    with_settings,
)

URL = "/api/v1/contact/default-reply"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """Start a redis-server of this test's own that keeps its data across a restart."""
    server = start_local_redis(tmp_path / "redis", persist=True)
    yield server
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
def own_settings(settings: Settings, own_redis: LocalRedis) -> Settings:
    return with_settings(
        settings, redis_url=own_redis.url, ingest_redis_deadline_seconds=0.5, settle_seconds=3.0
    )


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    try:
        yield app
    finally:
        app.extensions["dmrelay.front_door"].close(drain_seconds=0)


def post(app: Flask, contact: str, message: str) -> dict[str, Any]:
    body = {**DEFAULT_REPLY, "username": contact, "manychat_id": str(abs(hash(contact)) % 10**6)}
    body["message_content"] = message
    response = app.test_client().post(URL, json=body, headers=headers(ORG_A.token))
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def spool_of(app: Flask) -> Spool:
    return app.extensions["dmrelay.front_door"].spool  # type: ignore[no-any-return]


def restart(server: LocalRedis, data_dir: Path) -> LocalRedis:
    return start_local_redis(data_dir, port=server.port, persist=True)


# -- what a crash leaves ------------------------------------------------------------------------
def crashed_copy(entries: list[SpoolEntry], source: Path, target: Path) -> None:
    """Leave in target what a process killed mid-append leaves: rows, and a torn WAL frame."""
    spool = Spool(source, 1 << 30, lambda entry: "never")
    spool.db.connection().execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the WAL
    for entry in entries:
        spool.append(entry)
    prepare_directory(target)
    for suffix in ("", "-wal"):  # copied while open: the state at the moment of a kill -9
        shutil.copyfile(f"{source / DATABASE_NAME}{suffix}", f"{target / DATABASE_NAME}{suffix}")
    with open(f"{target / DATABASE_NAME}-wal", "ab") as wal:
        wal.write(os.urandom(100))  # the first bytes of the next append's frame
    spool.db.close()


def test_rows_before_a_torn_append_are_all_drained(settings, redis_conn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    entries = [spool_entry(i) for i in range(4)]
    target = tmp_path / "host"
    crashed_copy(entries, tmp_path / "crashed", target)

    with running(with_settings(settings, spool_dir=str(target))) as app:
        wait_until(lambda: queued_ids(redis_conn) == [e.delivery.id for e in entries])
        wait_until(lambda: spool_of(app).depth() == (0, 0))
        assert post(app, "after_the_crash", "hello")["status"] == "queued"


def test_a_corrupt_database_is_moved_aside_and_a_fresh_one_started(  # type: ignore[no-untyped-def]
    settings, redis_conn, tmp_path, caplog
) -> None:
    directory = tmp_path / "host"
    database = prepare_directory(directory)
    database.write_bytes(b"this is not a SQLite database" * 200)
    caplog.set_level(logging.ERROR, logger="dmrelay.spool")

    cut_off = with_settings(settings, spool_dir=str(directory), redis_url="redis://127.0.0.1:1/0")
    with running(cut_off) as app:
        assert post(app, "lead_x", "kept")["status"] == "spooled"
    (aside,) = directory.glob(f"{DATABASE_NAME}.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a SQLite database")
    assert f"spool database {database} is corrupt: moved aside to {aside}" in caplog.text
    with running(with_settings(settings, spool_dir=str(directory))) as app:
        wait_until(lambda: len(queued_ids(redis_conn)) == 1)


# -- a full disk --------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Mount a 512 KiB tmpfs for the spool (root only)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not mount or not umount:
        pytest.skip("mounting a small tmpfs needs root")
    options = ["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount_point)]
    if subprocess.run([mount, *options], capture_output=True, check=False).returncode != 0:
        pytest.skip("this machine does not let the tests mount a tmpfs")
    yield mount_point
    subprocess.run([umount, "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    """Take every byte left on the disk, as another program's logs would."""
    fd = os.open(directory / "junk", os.O_CREAT | os.O_WRONLY, 0o600)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"j" * 512)
    os.close(fd)


def test_on_a_full_disk_the_spool_refuses_new_rows_and_still_drains(  # type: ignore[no-untyped-def]
    own_settings, own_redis, tmp_path, small_disk
) -> None:
    with running(with_settings(own_settings, spool_dir=str(small_disk / "spool"))) as app:
        own_redis.stop()
        answers = [
            app.test_client().post(URL, json=body_of(n), headers=headers(ORG_A.token))
            for n in range(400)
        ]
        statuses = [a.status_code for a in answers]
        spooled = [a.get_json()["data"]["delivery_id"] for a in answers if a.status_code == 200]
        fill(small_disk)
        restarted = restart(own_redis, tmp_path / "redis")
        try:
            wait_until(lambda: spool_of(app).depth() == (0, 0), timeout=30)
            connection = redis.Redis.from_url(restarted.url)
            assert queued_ids(connection) == spooled  # each once, in order
            assert post(app, "after_the_outage", "hello")["status"] == "queued"
            assert app.test_client().get("/readyz").status_code == 200
        finally:
            restarted.stop()

    assert statuses[0] == 200 and 503 in statuses
    assert statuses == sorted(statuses)  # refused once full, not in between
    assert answers[-1].get_json() == {
        "error": "Service Unavailable",
        "message": "The relay cannot store messages right now: its store is unavailable"
        " and its local spool is full.",
    }


def body_of(number: int) -> dict[str, Any]:
    return {**DEFAULT_REPLY, "username": f"lead_{number}", "manychat_id": str(7000 + number)}


# -- trust ---------------------------------------------------------------------------------------
def test_a_directory_others_can_read_or_that_is_not_ours_stops_start_up(  # type: ignore[no-untyped-def]
    settings, redis_conn, tmp_path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ConfigError, match=r"has mode 0755, not 0700"):
        create_app(with_settings(settings, spool_dir=str(shared)), redis_conn)
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 4242, 4242)
    with pytest.raises(ConfigError, match=r"is owned by uid 4242"):
        create_app(with_settings(settings, spool_dir=str(foreign)), redis_conn)
    loose = tmp_path / "loose"
    prepare_directory(loose).chmod(0o644)
    with pytest.raises(ConfigError, match=r"spool.sqlite3 has mode 0644, not 0600"):
        create_app(with_settings(settings, spool_dir=str(loose)), redis_conn)


def test_a_new_spool_directory_is_0700_and_its_database_0600(  # type: ignore[no-untyped-def]
    settings, redis_conn, tmp_path
) -> None:
    directory = tmp_path / "new" / "spool"
    with running(with_settings(settings, spool_dir=str(directory))):
        assert oct(directory.stat().st_mode & 0o777) == "0o700"
        assert oct((directory / DATABASE_NAME).stat().st_mode & 0o777) == "0o600"


# -- ordering across hosts ----------------------------------------------------------------------
def test_a_newer_message_stored_directly_waits_for_the_older_one_in_another_host_s_spool(  # type: ignore[no-untyped-def]
    own_settings, own_redis, sandbox: Sandbox, tmp_path
) -> None:
    first_host = with_settings(own_settings, spool_dir=str(tmp_path / "first"))
    second_host = with_settings(own_settings, spool_dir=str(tmp_path / "second"))
    worker = RunningWorker(own_settings, redis.Redis.from_url(own_redis.url)).start()
    try:
        with running(first_host) as first, running(second_host) as second:
            held_back = threading.Event()
            store = spool_of(first).store

            def slow_drain(entry: SpoolEntry) -> str | None:
                if not held_back.is_set():
                    raise redis.ConnectionError("this host's drain is slow")
                return store(entry)

            spool_of(first).store = slow_drain
            # The hosts have been pulsing Redis (a Redis that never heard of them starts no settle).
            connection = redis.Redis.from_url(own_redis.url)
            wait_until(lambda: connection.exists("dmrelay:settle:at"))
            os.kill(own_redis.process.pid, signal.SIGSTOP)  # longer than the outage gap
            try:
                assert post(first, "lead_order", "message 1")["status"] == "spooled"
                time.sleep(1.5)
            finally:
                os.kill(own_redis.process.pid, signal.SIGCONT)
            assert post(second, "lead_order", "message 2")["status"] == "queued"
            time.sleep(1.5)  # a worker would have sent message 2 by now, were it not settling
            assert received(sandbox.requests()) == []
            held_back.set()
            wait_until(lambda: len(received(sandbox.requests())) == 2, timeout=15)
    finally:
        worker.stop()
    arrivals = received(sandbox.requests())
    assert arrivals == [("lead_order", "message 1"), ("lead_order", "message 2")]
    assert ordering_violations(arrivals) == []


def test_a_spool_directory_that_cannot_be_made_stops_start_up_with_one_line(  # type: ignore[no-untyped-def]
    settings, redis_conn, tmp_path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"a-file/spool: "):
        create_app(with_settings(settings, spool_dir=str(blocker / "spool")), redis_conn)


def test_a_request_accepted_while_deliveries_settle_does_not_wait_for_an_answer(  # type: ignore[no-untyped-def]
    own_settings, own_redis
) -> None:
    waits = dict.fromkeys(own_settings.answer_wait_seconds, 5.0)
    with running(with_settings(own_settings, answer_wait_seconds=waits)) as app:
        connection = redis.Redis.from_url(own_redis.url)
        wait_until(lambda: connection.exists("dmrelay:settle:at"))
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        time.sleep(1.5)  # a silence longer than the outage gap: no web process reaches Redis
        os.kill(own_redis.process.pid, signal.SIGCONT)
        started = time.monotonic()
        answer = post(app, "lead_after", "hello")  # no worker runs: a wait would last 5 s

    assert answer["status"] == "queued"
    assert time.monotonic() - started < 2
