"""The local spool: accepted requests that Redis could not take, kept on disk until it can.

One SQLite database per host, `spool.sqlite3` in DMRELAY_SPOOL_DIR, shared by every web process
on it (WAL journal, synchronous=FULL): an append is one transaction, and its request is answered
only once it has committed. One drainer at a time, whichever process holds the lock row (a lease
that lapses when its process dies), moves the rows to Redis in acceptance order (rows
are numbered as they commit) and deletes each only once Redis has it; storing an id Redis already
holds does nothing, so a drain cut short and repeated stores every request once. A row Redis
itself refuses stays, marked rejected with the reason, for an operator.

Nothing in the directory is trusted: it must be the process user's own, mode 0700, and the
database 0600, or start-up stops. docs/spool.md says what survives what.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from relay.core.delivery import Delivery
from relay.core.errors import ConfigError, ServiceUnavailable

log = logging.getLogger("dmrelay.spool")
T = TypeVar("T")
DATABASE_NAME = "spool.sqlite3"
LOCK_NAME = "spool.lock"  # held while a corrupt database is moved aside and a fresh one made
SIDE_FILES = ("-wal", "-shm")
POLL_SECONDS = 0.5  # how often a drainer looks for rows and tries Redis again
LEASE_SECONDS = 10.0  # a drainer that stops renewing its lock (it died) loses it after this
BATCH_ROWS = 16  # rows stored, then deleted in one transaction: little WAL space per step
BUSY_TIMEOUT_MS = 5000  # another process's commit: well within ManyChat's 10 s
# Draining must work on a full disk, though deleting rows writes to the WAL and a checkpoint
# may grow the database: the spool keeps a ballast file of its own, deleted when a drain finds
# the disk full (which frees the room it needs) and made again once the spool is empty. Without
# it appends are refused. A small WAL (checkpointed every few pages) keeps what a checkpoint
# adds to the database well under the ballast's size.
BALLAST_NAME = "spool.ballast"
FULL_BALLAST_NAME = "spool.ballast-full"  # the same file while appends wait for a drain
BALLAST_BYTES = 256 * 1024
WAL_CHECKPOINT_PAGES = 16
FULL_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    delivery TEXT NOT NULL,
    rejected TEXT
);
CREATE TABLE IF NOT EXISTS drainer (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    holder TEXT NOT NULL,
    until REAL NOT NULL
);
"""
CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
FULL_MESSAGE = (
    "The relay cannot store messages right now: its store is unavailable"
    " and its local spool is full."
)
UNWRITABLE_MESSAGE = (
    "The relay cannot store messages right now: its store is unavailable"
    " and its local spool cannot be written."
)


@dataclass(frozen=True)
class SpoolEntry:
    """One accepted request: the delivery as answered, and its dedup fingerprint."""

    delivery: Delivery
    fingerprint: str


@dataclass(frozen=True)
class RejectedEntry:
    """A spooled request Redis refused to store, kept with the reason."""

    delivery_id: str
    org_id: str
    endpoint: str
    reason: str


# Store one entry in Redis: None when stored (or found stored already), else the reason it
# never can be (the row is kept, marked rejected); raise to mean "not now, try again later".
StoreEntry = Callable[[SpoolEntry], str | None]


def prepare_directory(directory: Path) -> Path:
    """Create the spool directory 0700, or check it is ours alone; raise ConfigError if not."""
    try:
        return _prepare(directory)
    except OSError as error:
        raise ConfigError("DMRELAY_SPOOL_DIR", f"{directory}: {error.strerror}") from None


def _prepare(directory: Path) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    found = os.lstat(directory)
    problem = _untrusted(found, stat.S_ISDIR, 0o700)
    if problem:
        raise ConfigError("DMRELAY_SPOOL_DIR", f"{directory} {problem}")
    database = directory / DATABASE_NAME
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    problem = _untrusted(os.lstat(database), stat.S_ISREG, 0o600)
    if problem:
        raise ConfigError("DMRELAY_SPOOL_DIR", f"{database} {problem}")
    return database


def _untrusted(found: os.stat_result, is_kind: Callable[[int], bool], mode: int) -> str:
    """Return what is wrong with a spool path's type, owner or mode, or ''."""
    if not is_kind(found.st_mode):
        return "is not a plain " + ("directory" if mode == 0o700 else "file")
    if found.st_uid != os.geteuid():
        return f"is owned by uid {found.st_uid}, not this process's uid {os.geteuid()}"
    if stat.S_IMODE(found.st_mode) != mode:
        return f"has mode {stat.S_IMODE(found.st_mode):04o}, not {mode:04o}"
    return ""


def is_full(error: sqlite3.Error) -> bool:
    """Say whether SQLite failed for want of disk space (or of room to grow its shared memory)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in FULL_CODES


def is_corrupt(error: sqlite3.Error) -> bool:
    """Say whether SQLite found the database file damaged or not a database at all."""
    return getattr(error, "sqlite_errorcode", None) in CORRUPT_CODES


class SpoolDatabase:
    """The host's spool file: one connection per thread, reopened if the file was replaced."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = prepare_directory(directory)
        self._local = threading.local()
        self._open(self.path).close()  # creates the tables, and finds a corrupt file at start

    def _open(self, path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            connection.close()
            if not is_corrupt(error):
                raise
            self.move_aside(os.stat(path).st_ino)
            return self._open(path)
        return connection

    def connection(self) -> sqlite3.Connection:
        """Return this thread's connection to the current database file."""
        inode = os.stat(self.path).st_ino
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == inode:
            return held[1]
        if held is not None:
            held[1].close()  # the file was moved aside: its rows are an operator's now
        connection = self._open(self.path)
        self._local.held = (os.stat(self.path).st_ino, connection)
        return connection

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements as one write transaction, committed on leaving, else rolled back."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def move_aside(self, inode: int) -> None:
        """Rename a corrupt database out of the way (once, whoever finds it) and start afresh."""
        lock = os.open(self.directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino != inode:
                    return  # another process moved it and made a fresh one already
                aside = self.path.with_name(f"{DATABASE_NAME}.corrupt-{time.time_ns()}")
                for suffix in SIDE_FILES:
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
                os.rename(self.path, aside)
                log.error("spool database %s is corrupt: moved aside to %s", self.path, aside)
            prepare_directory(self.directory)
        finally:
            os.close(lock)

    def disk_bytes(self) -> int:
        """Return the bytes the database and its WAL take on disk."""
        total = 0
        for name in (str(self.path), f"{self.path}-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(name).st_size
        return total

    def has_ballast(self) -> bool:
        """Say whether the room a drain may need on a full disk is kept (appends may go on)."""
        return (self.directory / BALLAST_NAME).exists()

    def mark_full(self) -> None:
        """Stop every process's appends until the spool has drained: the disk is full."""
        # A rename needs no new space; the ballast keeps its room for the drain.
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.directory / BALLAST_NAME, self.directory / FULL_BALLAST_NAME)

    def make_ballast(self) -> bool:
        """Keep the room a drain may need, if the disk has it; True once it is kept."""
        if self.has_ballast():
            return True
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.directory / FULL_BALLAST_NAME, self.directory / BALLAST_NAME)
            return True
        temporary = self.directory / f".{BALLAST_NAME}.{os.getpid()}"
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            try:
                os.write(fd, bytes(BALLAST_BYTES))  # real blocks, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, self.directory / BALLAST_NAME)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return False
        return True

    def drop_ballast(self) -> bool:
        """Give the ballast's room to a drain; False if there was none to give."""
        dropped = False
        for name in (BALLAST_NAME, FULL_BALLAST_NAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / name)
                dropped = True
        if dropped:
            log.warning("spool: the disk is full; its ballast is released so the drain goes on")
        return dropped

    def close(self) -> None:
        """Close this thread's connection."""
        held = getattr(self._local, "held", None)
        if held is not None:
            held[1].close()
            self._local.held = None


class _Pending:
    """One row waiting to be committed, and what became of it."""

    def __init__(self, row: tuple[str, str, str]) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Commit the rows this process's threads append together: one transaction, one fsync.

    The first thread to arrive commits every row waiting at that moment, the others wait for
    that commit; rows arriving meanwhile go in the next one. Each row is answered only once the
    transaction holding it has committed, or fails with it.
    """

    def __init__(self, db: SpoolDatabase) -> None:
        self.db = db
        self._turn = threading.Condition()
        self._waiting: list[_Pending] = []
        self._committing = False

    def commit(self, row: tuple[str, str, str]) -> None:
        """Insert a row durably; raise the database's error if its transaction failed."""
        mine = _Pending(row)
        with self._turn:
            self._waiting.append(mine)
            while self._committing and not mine.done:
                self._turn.wait()
            if not mine.done:
                self._committing = True
                batch, self._waiting = self._waiting, []
        if not mine.done:
            self._commit(batch)
        if mine.error is not None:
            raise mine.error

    def _commit(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            with self.db.transaction() as connection:
                connection.executemany(
                    "INSERT INTO entries (delivery_id, fingerprint, delivery) VALUES (?, ?, ?)",
                    [pending.row for pending in batch],
                )
        except (sqlite3.Error, OSError) as failure:
            error = failure
        finally:
            with self._turn:
                for pending in batch:
                    pending.done, pending.error = True, error
                self._committing = False
                self._turn.notify_all()


class Spool:
    """The host's spool database, appended to by this process, drained by one process at a time."""

    def __init__(self, directory: Path, max_bytes: int, store: StoreEntry) -> None:
        self.max_bytes = max_bytes
        self.store = store
        self.db = SpoolDatabase(directory)
        if not (directory / FULL_BALLAST_NAME).exists():  # else the drainer restores it
            self.db.make_ballast()
        self.holder = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_lock = threading.Lock()  # one drain at a time in this process
        self._drainer: threading.Thread | None = None
        self._paused = False  # the last try to store a row failed
        self._commits = GroupCommit(self.db)

    @property
    def active(self) -> bool:
        """Return True while rows wait in the host's spool: new requests join them there."""
        return self._guarded(self._waiting_row_exists, False)

    def _waiting_row_exists(self) -> bool:
        found = self.db.connection().execute("SELECT 1 FROM entries WHERE rejected IS NULL LIMIT 1")
        return found.fetchone() is not None

    def append(self, entry: SpoolEntry) -> None:
        """Keep a request on disk, durably; raise ServiceUnavailable if the spool cannot."""
        row = (entry.delivery.id, entry.fingerprint, entry.delivery.to_json())
        try:
            self._refuse_if_full(len(row[2]))
            self._commits.commit(row)
        except (sqlite3.Error, OSError) as error:
            self._note_failure(error)
            log.error("spool not writable: %s", _why(error))
            full = isinstance(error, sqlite3.Error) and is_full(error)
            if full:
                self.db.mark_full()
            raise ServiceUnavailable(FULL_MESSAGE if full else UNWRITABLE_MESSAGE) from None
        self._wake.set()

    def _refuse_if_full(self, size: int) -> None:
        """Raise 503 when the spool is at its limit, or the room to drain it is not kept."""
        if self.db.disk_bytes() + size > self.max_bytes or not self.db.has_ballast():
            raise ServiceUnavailable(FULL_MESSAGE)

    def _note_failure(self, error: BaseException) -> None:
        """Move a corrupt database aside, so the next append starts a fresh one."""
        if isinstance(error, sqlite3.DatabaseError) and is_corrupt(error):
            self.db.move_aside(os.stat(self.db.path).st_ino)

    def _guarded(self, read: Callable[[], bool], otherwise: bool) -> bool:
        try:
            return read()
        except (sqlite3.Error, OSError) as error:
            self._note_failure(error)
            log.error("spool not readable: %s", _why(error))
            return otherwise

    def depth(self) -> tuple[int, int]:
        """Return (requests, bytes) waiting in the host's spool."""
        try:
            found = self.db.connection().execute(
                "SELECT count(*), coalesce(sum(length(delivery)), 0) FROM entries"
                " WHERE rejected IS NULL"
            )
            entries, size = found.fetchone()
        except (sqlite3.Error, OSError) as error:
            self._note_failure(error)
            return 0, 0
        return int(entries), int(size)

    def rejected(self, limit: int = 50) -> list[RejectedEntry]:
        """Return the requests Redis refused, oldest first, with the reason."""
        try:
            rows = self.db.connection().execute(
                "SELECT delivery_id, delivery, rejected FROM entries WHERE rejected IS NOT NULL"
                " ORDER BY delivery_id LIMIT ?",
                (limit,),
            )
            found = rows.fetchall()
        except (sqlite3.Error, OSError) as error:
            self._note_failure(error)
            return []
        return [_rejected_entry(*row) for row in found]

    # -- draining ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start this process's drainer thread: it looks for rows until the process stops."""
        if self._drainer is None:
            self._drainer = threading.Thread(target=self._run, name="dmrelay-spool", daemon=True)
            self._drainer.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if self.drain():
                    self.db.make_ballast()  # the spool is empty: keep room for the next drain
            except Exception:  # the drainer must outlive any failure: the rows wait on disk
                log.exception("spool drain failed; trying again")
            self._wake.wait(POLL_SECONDS)

    def drain(self, until: float | None = None) -> bool:
        """Store every waiting row in Redis, in acceptance order; True when none is left."""
        with self._drain_lock:
            if not self._on_full_disk(self._waiting_row_exists):
                return True
            if not self._on_full_disk(self._hold_lock):
                return False  # another process drains
            try:
                return self._drain_held(until)
            finally:
                self._let_go_of_lock()

    def _on_full_disk(self, step: Callable[[], T]) -> T:
        """Run a step of the drain; if the disk is full, release the ballast and run it again."""
        try:
            return step()
        except sqlite3.OperationalError as error:
            if not (is_full(error) and self.db.drop_ballast()):
                raise
        self.db.close()  # a connection that failed to map its shared memory opens afresh
        return step()

    def _drain_held(self, until: float | None) -> bool:
        while True:
            batch = self._next_batch()
            if not batch:
                return True
            stored, rejected, finished = self._store_batch(batch, until)
            self._on_full_disk(functools.partial(self._settle_rows, stored, rejected))
            if not finished:
                return False
            if not self._on_full_disk(self._hold_lock):
                return False

    def _next_batch(self) -> list[tuple[str, str, str]]:
        return self._on_full_disk(self._read_batch)

    def _read_batch(self) -> list[tuple[str, str, str]]:
        rows = self.db.connection().execute(
            "SELECT delivery_id, fingerprint, delivery FROM entries WHERE rejected IS NULL"
            " ORDER BY seq LIMIT ?",
            (BATCH_ROWS,),
        )
        return [(str(a), str(b), str(c)) for a, b, c in rows.fetchall()]

    def _store_batch(
        self, batch: list[tuple[str, str, str]], until: float | None
    ) -> tuple[list[str], list[tuple[str, str]], bool]:
        """Store rows in order; return those stored, those refused, and whether all were seen."""
        stored: list[str] = []
        rejected: list[tuple[str, str]] = []
        for delivery_id, fingerprint, body in batch:
            if until is not None and time.monotonic() > until:
                return stored, rejected, False
            try:
                entry = SpoolEntry(Delivery.from_json(body), fingerprint)
            except (ValueError, KeyError, TypeError):
                rejected.append((delivery_id, "not a spooled delivery"))
                continue
            try:
                reason = self.store(entry)
            except Exception as error:  # any failure: the row waits for the next try
                self._note_pause(error)
                return stored, rejected, False
            self._paused = False
            if reason is None:
                stored.append(delivery_id)
            else:
                log.error("spooled delivery %s refused by Redis: %s", delivery_id, reason)
                rejected.append((delivery_id, reason))
        return stored, rejected, True

    def _note_pause(self, error: Exception) -> None:
        """Say once per outage that draining waits for Redis, not every half second."""
        if not self._paused:
            log.warning("spool drain paused: %s; trying again", type(error).__name__)
        self._paused = True

    def _settle_rows(self, stored: list[str], rejected: list[tuple[str, str]]) -> None:
        """Delete the rows Redis has, and mark those it refused, in one transaction."""
        if not stored and not rejected:
            return
        with self.db.transaction() as connection:
            connection.executemany(
                "DELETE FROM entries WHERE delivery_id = ?", [(i,) for i in stored]
            )
            connection.executemany(
                "UPDATE entries SET rejected = ? WHERE delivery_id = ?",
                [(reason, i) for i, reason in rejected],
            )

    def _hold_lock(self) -> bool:
        """Take or renew the drainer's lock row; False while another live drainer holds it."""
        now = time.time()
        with self.db.transaction() as connection:
            row = connection.execute("SELECT holder, until FROM drainer").fetchone()
            if row is not None and row[0] != self.holder and row[1] > now:
                return False
            connection.execute(
                "INSERT OR REPLACE INTO drainer (one, holder, until) VALUES (1, ?, ?)",
                (self.holder, now + LEASE_SECONDS),
            )
        return True

    def _let_go_of_lock(self) -> None:
        # If this fails, the lock lapses by itself.
        with contextlib.suppress(sqlite3.Error, OSError), self.db.transaction() as connection:
            connection.execute("DELETE FROM drainer WHERE holder = ?", (self.holder,))

    def close(self, drain_seconds: float) -> bool:
        """Stop the drainer and store what Redis takes within the time given.

        Returns True when nothing is left waiting on disk.
        """
        self._stopping.set()
        self._wake.set()
        drainer = self._drainer
        if drainer is not None:
            drainer.join(timeout=drain_seconds)
        try:
            drained = self.drain(until=time.monotonic() + drain_seconds)
        except (sqlite3.Error, OSError) as error:
            log.error("spool drain at exit failed: %s", _why(error))
            drained = False
        if not drained:
            log.warning("%d spooled requests left for the next process", self.depth()[0])
        self.db.close()
        return drained


def _rejected_entry(delivery_id: str, body: str, reason: str) -> RejectedEntry:
    try:
        delivery = Delivery.from_json(body)
    except (ValueError, KeyError, TypeError):
        return RejectedEntry(delivery_id, "", "", reason)
    return RejectedEntry(delivery_id, delivery.org_id, delivery.endpoint, reason)


def _why(error: BaseException) -> str:
    """Return an error's cause in words that never hold a request's content."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return getattr(error, "sqlite_errorname", None) or type(error).__name__
