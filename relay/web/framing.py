"""Where an HTTP/1.1 request ends: enough of RFC 9112's framing to know a request is whole.

The buffering worker reads requests in its event loop and asks this whether it has all of
one. Whatever is malformed counts as whole: gunicorn's own parser then answers 400 at once,
so nothing odd keeps a connection in the read buffer.
"""

from __future__ import annotations

import re

HEAD_END = b"\r\n\r\n"
# gunicorn's own bounds on the request line and headers (4094 + 100 x 8190 bytes) fit within it.
MAX_HEAD_BYTES = 832 * 1024
CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.I | re.M)
CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked[ \t]*\r?$", re.I | re.M)
EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue[ \t]*\r?$", re.I | re.M)


class RequestFraming:
    """The bytes read so far of one request, and whether they make a whole request."""

    def __init__(self, max_body_bytes: int, buffer: bytearray | None = None) -> None:
        self.max_body_bytes = max_body_bytes
        self.buffer = buffer if buffer is not None else bytearray()
        self.oversized = False
        self._continued = False

    def feed(self, data: bytes) -> None:
        """Add bytes the client sent."""
        self.buffer += data

    def head_end(self) -> int:
        """Return where the body starts, or -1 while the headers are incomplete."""
        end = self.buffer.find(HEAD_END)
        return end + len(HEAD_END) if end >= 0 else -1

    def complete(self) -> bool:
        """Return True once the request is whole, or can be answered without the rest."""
        start = self.head_end()
        if start < 0:
            return len(self.buffer) > MAX_HEAD_BYTES  # gunicorn answers 431 or 400
        head = bytes(self.buffer[: start - len(HEAD_END)])
        body = self.buffer[start:]
        if CHUNKED.search(head):
            return self._chunked_complete(body)
        return self._length_complete(head, len(body))

    def wants_continue(self) -> bool:
        """Return True once, when the client waits for 100 Continue before sending its body."""
        start = self.head_end()
        if self._continued or start < 0 or len(self.buffer) > start:
            return False
        self._continued = bool(EXPECT_CONTINUE.search(bytes(self.buffer[:start])))
        return self._continued

    def _length_complete(self, head: bytes, body_bytes: int) -> bool:
        found = CONTENT_LENGTH.findall(head)
        if not found:
            return True  # no body
        if len(set(found)) > 1 or not found[0].isdigit():
            return True  # malformed: gunicorn answers 400
        length = int(found[0])
        if length > self.max_body_bytes:
            self.oversized = True  # answered 413 from the headers alone
            return True
        return body_bytes >= length

    def _chunked_complete(self, body: bytearray) -> bool:
        whole, data_bytes = read_chunks(bytes(body))
        if not whole and data_bytes > self.max_body_bytes:
            self.oversized = True  # the app answers 413 from the bytes it has
            return True
        return whole


def read_chunks(body: bytes) -> tuple[bool, int]:
    """Return whether a chunked body is whole (or malformed), and how many data bytes it has."""
    position, data_bytes = 0, 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return False, data_bytes
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True, data_bytes  # malformed: gunicorn answers 400
        if size < 0:
            return True, data_bytes  # malformed: gunicorn answers 400
        if size == 0:
            return body.find(HEAD_END, line_end) >= 0, data_bytes
        data_bytes += min(size, len(body) - line_end - 2)
        position = line_end + 2 + size + 2
        if position > len(body):
            return False, data_bytes
