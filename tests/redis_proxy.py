"""A TCP proxy between a Redis client and redis-server that loses or holds a script's reply.

The script still runs on the server: only its reply goes astray, as when Redis restarts or
the network drops just after a command was sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

CHUNK_BYTES = 65536
EMPTY_ARRAY = b"*0\r\n"  # the reply of a take that found every queue empty


@dataclass
class Rule:
    """What to do with the reply of the next runs of one script (by its SHA1)."""

    sha: str
    times: int = 1
    hold_seconds: float = 0.0  # 0: drop the connection instead of delivering the reply
    refuse_seconds: float = 0.0  # after a drop, refuse new connections this long
    skip_empty: bool = False  # let replies that are an empty array through


class RedisProxy:
    """Forward 127.0.0.1:<port> to a redis-server port, applying rules to script replies."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.rules: list[Rule] = []
        self.sent: Counter[str] = Counter()  # how often each watched script was sent
        self.applied: Counter[str] = Counter()  # how often a rule was applied to its reply
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """Return the redis:// URL a client uses to go through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def watch(self, rule: Rule) -> None:
        """Apply a rule to the next replies of its script."""
        with self._lock:
            self.rules.append(rule)
            self.sent.setdefault(rule.sha, 0)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                _close(client)  # Redis "down": the client's retries fail at once
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            pending: list[Rule] = []  # the rule whose script this connection sent last
            threading.Thread(target=self._requests, args=(client, upstream, pending)).start()
            threading.Thread(target=self._replies, args=(upstream, client, pending)).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, pending: list[Rule]
    ) -> None:
        """Forward commands, noting a watched script's run so its reply can be acted on."""
        while data := _recv(client):
            with self._lock:
                for rule in self.rules:
                    if rule.sha.encode() in data:
                        self.sent[rule.sha] += 1
                        if rule.times > 0:
                            pending[:] = [rule]
            if not _send(upstream, data):
                break
        _close(upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket, pending: list[Rule]) -> None:
        """Forward replies; lose or hold the reply of a watched script as its rule says."""
        while data := _recv(upstream):
            with self._lock:
                rule = pending.pop() if pending else None
                if rule and data.startswith(b"-"):  # NOSCRIPT and the like: it did not run
                    rule = None
                if rule and rule.skip_empty and data.startswith(EMPTY_ARRAY):
                    rule = None
                if rule and rule.times > 0:
                    rule.times -= 1
                    self.applied[rule.sha] += 1
                    if not rule.hold_seconds:
                        self._refuse_until = time.monotonic() + rule.refuse_seconds
                else:
                    rule = None
            if rule and not rule.hold_seconds:
                break  # the script ran; its reply never arrives
            if rule:
                time.sleep(rule.hold_seconds)
            if not _send(client, data):
                break
        _close(client)
        _close(upstream)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK_BYTES)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
