"""The local spool: accepted requests that Redis could not take, kept on disk until it can.

Each web process appends to a file of its own, `spool-<pid>-<random>.log` in
DMRELAY_SPOOL_DIR: one JSON line per request, fsync'd before the request is answered. The
process holds an exclusive flock on its file while it lives, so a file whose lock is free was
left by a process that is gone: any process may take the lock and drain it. A drain passes
the lines, in order, to a function that stores each in Redis (storing a delivery id already
stored does nothing), and records how far it got in `<file>.offset`, so a drain cut short
and repeated stores every request exactly once.

What survives what: the spool lives on the machine's disk. It survives a Redis outage and a
restart of the web process; it does not survive losing the disk (a Heroku dyno replaced by
a deploy or a daily restart starts with an empty disk).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from relay.core.delivery import Delivery
from relay.core.errors import ServiceUnavailable

log = logging.getLogger("dmrelay.spool")
FILE_PREFIX, FILE_SUFFIX, OFFSET_SUFFIX = "spool-", ".log", ".offset"
REJECTED_NAME = "rejected.log"  # lines a drain could not store, kept for an operator
READ_CHUNK_BYTES = 1024 * 1024
RETRY_SECONDS = 0.5  # how often a drain tries Redis again while it refuses
ORPHAN_SCAN_SECONDS = 5.0  # how often a drainer looks for files of processes that are gone
IDLE_SECONDS = 30.0  # a drainer with nothing to do ends after this; an append restarts it


@dataclass(frozen=True)
class SpoolEntry:
    """One accepted request: the delivery as answered, and its dedup fingerprint."""

    delivery: Delivery
    fingerprint: str

    def to_line(self) -> bytes:
        """Return the entry as one line of JSON."""
        return b'{"fingerprint":%s,"delivery":%s}\n' % (
            json.dumps(self.fingerprint).encode(),
            self.delivery.to_json().encode(),
        )

    @classmethod
    def from_line(cls, line: bytes) -> SpoolEntry:
        """Rebuild an entry from its line; raise ValueError if it is not one."""
        data = json.loads(line)
        delivery = Delivery.from_json(json.dumps(data["delivery"]))
        return cls(delivery, str(data["fingerprint"]))


# Store one entry in Redis: True when stored (or found a duplicate), False when it can never
# be (it is set aside); raise to mean "not now, try again later".
StoreEntry = Callable[[SpoolEntry], bool]


class SpoolFile:
    """One spool file and its offset, locked by the process that appends to or drains it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.offset_path = path.with_suffix(OFFSET_SUFFIX)

    @classmethod
    def create(cls, directory: Path) -> SpoolFile:
        """Create, lock and publish a new file for this process."""
        name = f"{FILE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        temporary = directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Renamed only once locked: a file is never seen unlocked while its process lives.
        path = directory / f"{name}{FILE_SUFFIX}"
        os.rename(temporary, path)
        _fsync_directory(directory)
        return cls(path, fd)

    @classmethod
    def adopt(cls, path: Path) -> SpoolFile | None:
        """Lock a file whose process is gone; None if it is alive, or the file is gone."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != path.stat().st_ino:
                raise FileNotFoundError(path)  # drained and removed by another meanwhile
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        return cls(path, fd)

    def size(self) -> int:
        """Return the file's size in bytes."""
        return os.fstat(self.fd).st_size

    def append(self, line: bytes, size_before: int) -> None:
        """Append a line and make it durable; on failure leave the file as it was."""
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write to the spool")
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, size_before)
            raise

    def read_offset(self) -> int:
        """Return how far a drain got (0 if none did)."""
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def save_offset(self, offset: int) -> None:
        """Record how far the drain got; a repeated drain starts there."""
        temporary = self.offset_path.with_suffix(".offset-tmp")
        temporary.write_text(str(offset))
        os.replace(temporary, self.offset_path)

    def reset(self) -> None:
        """Empty the file once every line is stored."""
        os.ftruncate(self.fd, 0)
        self.offset_path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the file and its offset, then let go of the lock."""
        self.offset_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Let go of the lock."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def ordered_lines(spool_file: SpoolFile, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset after it, line) for each whole line between two offsets, in order."""
    position = start
    while position < end:
        chunk = os.pread(spool_file.fd, min(READ_CHUNK_BYTES, end - position), position)
        cut = chunk.rfind(b"\n")
        if cut < 0:
            if len(chunk) < READ_CHUNK_BYTES:
                return  # an unfinished last line: its request was never answered
            raise ValueError(f"{spool_file.path}: a line longer than {READ_CHUNK_BYTES} bytes")
        for line in chunk[:cut].split(b"\n"):
            position += len(line) + 1
            yield position, line


class Spool:
    """This process's spool file, the others' files in the folder, and the thread draining."""

    def __init__(self, directory: Path, max_bytes: int, store: StoreEntry) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.store = store
        self._lock = threading.Lock()  # appends, and the drain's end, one at a time
        self._file: SpoolFile | None = None
        self._written = 0  # bytes in our file
        self._drained = 0  # bytes of it stored in Redis
        self._entries = 0  # lines in our file not stored yet
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drainer: threading.Thread | None = None
        self._drain_lock = threading.Lock()  # one drain at a time in this process

    @property
    def active(self) -> bool:
        """Return True while our file holds requests not stored yet (new ones join them)."""
        return self._entries > 0

    def append(self, entry: SpoolEntry) -> None:
        """Keep a request on disk, durably; raise ServiceUnavailable if the spool cannot."""
        line = entry.to_line()
        with self._lock:
            try:
                spool_file = self._own_file()
                if self._folder_bytes() + len(line) > self.max_bytes:
                    raise ServiceUnavailable(
                        "The relay cannot store messages right now: its store is unavailable"
                        " and its local spool is full."
                    )
                spool_file.append(line, self._written)
            except OSError as error:
                log.error("spool not writable: %s", error.strerror or type(error).__name__)
                raise ServiceUnavailable(
                    "The relay cannot store messages right now: its store is unavailable"
                    " and its local spool cannot be written."
                ) from None
            self._written += len(line)
            self._entries += 1
        self.start()

    def _own_file(self) -> SpoolFile:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = SpoolFile.create(self.directory)
        return self._file

    def _folder_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._paths())

    def _paths(self) -> list[Path]:
        try:
            found = sorted(self.directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
        except OSError:
            return []
        return [path for path in found if path.exists()]

    def depth(self) -> tuple[int, int]:
        """Return (requests, bytes) waiting in every spool file of the folder."""
        with self._lock:
            own = self._file.path if self._file else None
            entries, bytes_waiting = self._entries, self._written - self._drained
        for path in self._paths():
            if path != own:  # another process's: counted from its file
                found, size = _waiting_in(path)
                entries, bytes_waiting = entries + found, bytes_waiting + size
        return entries, bytes_waiting

    # -- draining ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the drainer thread if it is not running; wake it if it is."""
        self._wake.set()
        with self._lock:
            if self._drainer is None and not self._stopping.is_set():
                self._drainer = threading.Thread(
                    target=self._run, name="dmrelay-spool", daemon=True
                )
                self._drainer.start()

    def start_if_left_over(self) -> None:
        """Start draining at start-up if a process that is gone left requests behind."""
        if self._paths():
            self.start()

    def _run(self) -> None:
        next_scan = 0.0
        idle_since = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
                    done = self.drain()
                else:
                    with self._drain_lock:
                        done = self._drain_own(None)
            except Exception:  # the drainer must outlive any failure: the lines wait on disk
                log.exception("spool drain failed; trying again")
                done = False
            if not done:
                self._stopping.wait(RETRY_SECONDS)  # Redis still refuses: try again soon
                continue
            with self._lock:
                if self.active:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_SECONDS:
                    self._drainer = None  # decided under the lock start() runs under
                    return
            self._wake.wait(RETRY_SECONDS)

    def drain(self, until: float | None = None) -> bool:
        """Store what processes that are gone left, then our own; True when all is stored."""
        with self._drain_lock:
            for path in self._paths():
                if self._file is not None and path == self._file.path:
                    continue
                adopted = SpoolFile.adopt(path)
                if adopted is not None and not self._drain_adopted(adopted, until):
                    return False
            return self._drain_own(until)

    def _drain_adopted(self, spool_file: SpoolFile, until: float | None) -> bool:
        """Store every line of a file left by a process that is gone, then delete it."""
        end = spool_file.size()
        stored = self._store_lines(spool_file, spool_file.read_offset(), end, until)
        if stored < end:
            spool_file.close()
            return False
        log.info("drained spool file %s left by a process that is gone", spool_file.path.name)
        spool_file.remove()
        return True

    def _drain_own(self, until: float | None) -> bool:
        """Store our own lines; once all are, empty the file unless more came meanwhile."""
        spool_file = self._file
        while spool_file is not None and self.active:
            with self._lock:
                start, end = self._drained, self._written
            if self._store_lines(spool_file, start, end, until, own=True) < end:
                return False
            with self._lock:
                if self._drained == self._written:
                    spool_file.reset()
                    self._written = self._drained = self._entries = 0
        return True

    def _store_lines(
        self, spool_file: SpoolFile, start: int, end: int, until: float | None, own: bool = False
    ) -> int:
        """Store lines in order from start; return the offset reached (end when all are)."""
        reached = start
        for after, line in ordered_lines(spool_file, start, end):
            if until is not None and time.monotonic() > until:
                break
            try:
                self._store_line(line)
            except Exception as error:  # any failure: the line waits for the next try
                log.warning("spool drain paused: %s", type(error).__name__)
                break
            reached = after
            spool_file.save_offset(reached)
            if own:
                with self._lock:
                    self._drained, self._entries = reached, self._entries - 1
        return reached

    def _store_line(self, line: bytes) -> None:
        """Store one line, or set it aside for an operator if it can never be stored."""
        try:
            entry = SpoolEntry.from_line(line)
        except (ValueError, KeyError, TypeError):
            self._set_aside(line, "not a spool entry")
            return
        if not self.store(entry):
            self._set_aside(line, "refused by the store")

    def _set_aside(self, line: bytes, reason: str) -> None:
        log.error("spool line set aside in %s: %s", REJECTED_NAME, reason)
        with (self.directory / REJECTED_NAME).open("ab") as handle:
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def close(self, drain_seconds: float) -> bool:
        """Stop the drainer, store what Redis takes within the time given, let go of our file.

        Returns True when nothing of ours is left on disk.
        """
        self._stopping.set()
        self._wake.set()
        drainer = self._drainer
        if drainer is not None:
            drainer.join(timeout=drain_seconds)
        drained = self.drain(until=time.monotonic() + drain_seconds)
        with self._lock:
            spool_file, self._file = self._file, None
        if spool_file is not None:
            if drained and not self._entries:
                spool_file.remove()
            else:
                log.warning("%d spooled requests left for the next process", self._entries)
                spool_file.close()
        return drained


def _waiting_in(path: Path) -> tuple[int, int]:
    """Return (lines, bytes) of a spool file past the offset its last drain reached."""
    try:
        with path.open("rb") as handle:
            handle.seek(_offset_of(path))
            rest = handle.read()
    except OSError:
        return 0, 0
    return rest.count(b"\n"), len(rest)


def _offset_of(path: Path) -> int:
    try:
        return int(path.with_suffix(OFFSET_SUFFIX).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _fsync_directory(directory: Path) -> None:
    """Make a new file's name durable, not only its content."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
