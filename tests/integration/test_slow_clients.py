"""Slow clients cost a socket, never a thread: `dmrelay web` under gunicorn, under attack."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from relay.devtools.localredis import LocalRedis
from tests.helpers import DEFAULT_REPLY, ORG_A, headers
from tests.webprocess import dmrelay_web

INGEST = "/api/v1/contact/default-reply"
ATTACK_SECONDS = 30
READ_DEADLINE_SECONDS = 5
SOCKETS_EACH = 64


@pytest.fixture(scope="module")
def web_url(redis_server: LocalRedis) -> Iterator[str]:
    """Run `dmrelay web` as production does: 2 processes x 8 threads; answers without waiting."""
    with dmrelay_web(
        redis_server.url,
        [ORG_A],
        "http://127.0.0.1:9/api/v1",
        WEB_CONCURRENCY="2",
        DMRELAY_WEB_THREADS="8",
        DMRELAY_ANSWER_WAIT_SECONDS="0",
        DMRELAY_READ_DEADLINE_SECONDS=str(READ_DEADLINE_SECONDS),
    ) as url:
        yield url


def slow_header_opening(host: str) -> tuple[bytes, Callable[[int], bytes]]:
    """Return a request line and a source of one header line at a time, never ending."""
    start = f"POST {INGEST} HTTP/1.1\r\nHost: {host}\r\n".encode()
    return start, lambda n: f"X-Slow-{n}: {'a' * 10}\r\n".encode()


def slow_body_opening(host: str) -> tuple[bytes, Callable[[int], bytes]]:
    """Return the sign-in form's headers announcing 5000 bytes, then one byte at a time."""
    start = (
        f"POST /dashboard/sign-in HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n"
    ).encode()
    return start, lambda n: b"a"


class Attacker:
    """Keep sockets open that trickle a request that never ends; reopen those the server closes."""

    def __init__(self, url: str, opening: Callable[[str], tuple[bytes, Callable[[int], bytes]]]):
        self.address = url.removeprefix("http://").split(":")
        self.start, self.next_piece = opening(self.address[0])
        self.sockets: list[tuple[socket.socket, float]] = []
        self.lifetimes: list[float] = []  # how long each socket closed by the server lived
        self.stopped = threading.Event()

    def open(self) -> tuple[socket.socket, float]:
        sock = socket.create_connection((self.address[0], int(self.address[1])), timeout=5)
        sock.sendall(self.start)
        sock.setblocking(False)
        return sock, time.monotonic()

    def run(self, count: int) -> None:
        """Open `count` sockets, send each a piece every second until stopped."""
        self.sockets = [self.open() for _ in range(count)]
        tick = 0
        while not self.stopped.wait(1.0):
            tick += 1
            self.sockets = [self.trickle(sock, opened, tick) for sock, opened in self.sockets]
        for sock, _ in self.sockets:
            sock.close()

    def trickle(self, sock: socket.socket, opened: float, tick: int) -> tuple[socket.socket, float]:
        """Send one more piece; if the server has closed the socket, note it and open another."""
        try:
            if sock.recv(65536) == b"":
                raise ConnectionResetError
            return sock, opened  # an interim answer such as 100 Continue
        except BlockingIOError:
            pass
        except OSError:
            return self.replace(sock, opened)
        try:
            sock.send(self.next_piece(tick))
            return sock, opened
        except OSError:
            return self.replace(sock, opened)

    def replace(self, sock: socket.socket, opened: float) -> tuple[socket.socket, float]:
        self.lifetimes.append(time.monotonic() - opened)
        sock.close()
        return self.open()


def send_default_reply(url: str, number: int) -> tuple[int, float]:
    """Send one legitimate default-reply; return its status and how long the answer took."""
    body = {**DEFAULT_REPLY, "manychat_id": f"slow-test-{number}"}
    started = time.monotonic()
    response = requests.post(
        f"{url}{INGEST}", data=json.dumps(body), headers=headers(ORG_A.token), timeout=10
    )
    return response.status_code, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_legitimate_requests_are_answered_within_a_second_while_128_slow_clients_trickle(
    web_url: str,
) -> None:
    attackers = [Attacker(web_url, slow_header_opening), Attacker(web_url, slow_body_opening)]
    threads = [threading.Thread(target=a.run, args=(SOCKETS_EACH,)) for a in attackers]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)  # every slow socket is open and has started its request
        answers = []
        for number in range(20):
            answers.append(send_default_reply(web_url, number))
            time.sleep((ATTACK_SECONDS - 2) / 20)
    finally:
        for attacker in attackers:
            attacker.stopped.set()
        for thread in threads:
            thread.join(timeout=30)
    assert [status for status, _ in answers] == [200] * 20
    slowest = max(seconds for _, seconds in answers)
    assert slowest < 1.0, f"the slowest legitimate answer took {slowest:.2f} s"
    for attacker in attackers:
        # The read deadline closed every slow socket, each well before twice its deadline
        # (the worker checks deadlines every second, the attacker its sockets every second).
        assert len(attacker.lifetimes) >= 2 * SOCKETS_EACH
        assert min(attacker.lifetimes) >= READ_DEADLINE_SECONDS
        assert max(attacker.lifetimes) < 2 * READ_DEADLINE_SECONDS


def test_a_request_sent_in_pieces_within_the_deadline_is_served(web_url: str) -> None:
    host, port = web_url.removeprefix("http://").split(":")
    body = json.dumps({**DEFAULT_REPLY, "manychat_id": "pieces"}).encode()
    head = (
        f"POST {INGEST} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"x-org-auth-token: {ORG_A.token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for piece in (head[:20], head[20:], body[:10], body[10:]):
            sock.sendall(piece)
            time.sleep(0.3)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_request_not_whole_by_the_deadline_is_answered_408_and_closed(web_url: str) -> None:
    host, port = web_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=READ_DEADLINE_SECONDS + 5) as sock:
        sock.sendall(
            f"POST {INGEST} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n".encode()
        )
        answer = sock.recv(65536)
        assert sock.recv(65536) == b""
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert READ_DEADLINE_SECONDS <= time.monotonic() - started < READ_DEADLINE_SECONDS + 3


def test_keep_alive_requests_are_each_read_whole(web_url: str) -> None:
    with requests.Session() as session:
        for number in range(3):
            response = session.post(
                f"{web_url}{INGEST}",
                data=json.dumps({**DEFAULT_REPLY, "manychat_id": f"kept-{number}"}),
                headers={**headers(ORG_A.token), "Expect": "100-continue"},
                timeout=5,
            )
            assert response.status_code == 200
