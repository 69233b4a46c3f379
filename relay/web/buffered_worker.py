"""gunicorn's gthread worker, except that a request reaches a thread only once it is fully read.

gthread (gunicorn 27) waits for a connection's first byte without a thread, then gives the
connection to a thread that reads the headers and the body with blocking calls: one header
line every few seconds holds that thread for as long as the client likes. Here the main loop
reads every request, headers and body, with non-blocking calls into a buffer, and hands it to
a thread only when it is complete; a connection that has not sent a whole request within the
read deadline is answered 408 and closed. A slow client costs a socket and a buffer, never a
thread. docs/budgets.md says why this and not another worker class or a proxy.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from relay.config import load_settings
from relay.core import defaults
from relay.web.framing import RequestFraming

RECV_BYTES = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class BufferedThreadWorker(ThreadWorker):
    """Read each request in the event loop within a deadline, then serve it in a thread."""

    def init_process(self) -> None:
        """Start with no connection being read, and the configured read deadline."""
        self.read_deadline_seconds = load_settings().read_deadline_seconds
        self.reading: dict[Any, float] = {}  # connection -> deadline, in the order read began
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        """Serve a request read in full; read the connection's next request first otherwise."""
        if getattr(conn, "request_read", False):
            conn.request_read = False
            super().enqueue_req(conn)
            return
        self.start_reading(conn)

    def start_reading(self, conn: Any) -> None:
        """Buffer the connection's next request without a thread, from what is already read."""
        already = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.framing = RequestFraming(defaults.MAX_BODY_BYTES, bytearray(already))
        if conn.framing.complete():
            self.dispatch(conn)
            return
        conn.sock.setblocking(False)
        self.reading[conn] = time.monotonic() + self.read_deadline_seconds
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_bytes, conn))

    def on_bytes(self, conn: Any, _sock: socket.socket) -> None:
        """Take what the client sent; serve the request once it is whole."""
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away before finishing its request
            self.stop_reading(conn)
            self.drop(conn)
            return
        conn.framing.feed(data)
        if conn.framing.wants_continue():
            send_quietly(conn.sock, CONTINUE)
        if conn.framing.complete():
            self.stop_reading(conn)
            self.dispatch(conn)

    def stop_reading(self, conn: Any) -> None:
        """Take the connection off the event loop's reading list."""
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):  # closed already
            self.poller.unregister(conn.sock)

    def dispatch(self, conn: Any) -> None:
        """Hand the whole request to a thread, which reads it from the buffer, never the socket."""
        conn.sock.setblocking(True)
        conn.init()  # builds the HTTP/1 parser on a new connection; no I/O without TLS or h2c
        conn.parser.unreader.unread(bytes(conn.framing.buffer))
        conn.oversized = conn.framing.oversized
        conn.framing = None
        conn.data_ready = True
        conn.request_read = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Also answer 408 to, and close, connections past their read deadline."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn, deadline = next(iter(self.reading.items()))
            if deadline > now:
                break  # the deadline is the same length for all: the rest are later
            self.stop_reading(conn)
            if not getattr(conn, "discarding", False):
                send_quietly(conn.sock, TIMED_OUT)
            self.drop(conn)

    def drop(self, conn: Any) -> None:
        """Close a connection no thread holds."""
        self.nr_conns -= 1
        conn.close()

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """Never read the rest of a body too large in a thread: the event loop discards it."""
        if getattr(conn, "oversized", False):
            return False
        return bool(super()._keepalive_after(conn, keepalive))

    def finish_request(self, conn: Any, fs: Any) -> None:
        """After a 413, discard what the client still sends, so it can read the answer."""
        if not getattr(conn, "oversized", False):
            super().finish_request(conn, fs)
            return
        conn.oversized = False
        # Closing with unread bytes makes the kernel reset the connection, and the client
        # may lose the answer already sent; the bytes go nowhere until the deadline.
        conn.sock.setblocking(False)
        conn.discarding = True
        self.reading[conn] = time.monotonic() + self.read_deadline_seconds
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_discard, conn))

    def on_discard(self, conn: Any, _sock: socket.socket) -> None:
        """Read and forget what the client sends after its 413; close when it stops."""
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop_reading(conn)
            self.drop(conn)


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send a short interim or final answer if the socket takes it now; never wait."""
    with contextlib.suppress(OSError):  # the client is gone or not reading: it gets nothing
        sock.send(data)
