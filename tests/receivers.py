"""Alert channels' far ends, started by the tests: a webhook receiver and a small SMTP server.

The SMTP server speaks just enough of RFC 5321 for smtplib (EHLO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT, AUTH PLAIN) and keeps each message it is given; it offers no STARTTLS.
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Keep every JSON body POSTed to it; answer `status` (200 unless told otherwise)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/hook-secret-part"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        """Start listening."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> list[dict[str, Any]]:
        """Return the structured alert of every body received."""
        return [body["alert"] for body in self.bodies]


class SmtpReceiver:
    """Keep every message delivered to it over SMTP."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []  # the AUTH PLAIN credentials, base64
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.reply("220 localhost test SMTP")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    command = line.decode("ascii", "replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-localhost" if verb == "EHLO" else "250 localhost")
                        if verb == "EHLO":
                            self.reply("250-AUTH PLAIN")
                            self.reply("250 8BITMIME")
                    elif verb == "AUTH":
                        receiver.logins.append(command.split(" ", 2)[-1])
                        self.reply("235 Authentication successful")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        receiver.keep(self.read_data(), sender, recipients)
                        self.reply("250 OK: queued")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:  # RSET, NOOP and the rest
                        self.reply("250 OK")

            def read_data(self) -> bytes:
                lines = []
                while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)
                return b"".join(lines)

            def reply(self, text: str) -> None:
                self.wfile.write(f"{text}\r\n".encode())

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.url = f"smtp://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def keep(self, data: bytes, sender: str, recipients: list[str]) -> None:
        """Keep one message as received."""
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.envelopes.append((sender, recipients))

    def start(self) -> SmtpReceiver:
        """Start listening."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        """Return the subject and body of every message, as one text each."""
        return [f"{m['Subject']}\n{m.get_content()}" for m in self.messages]
