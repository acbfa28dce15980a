"""The runner's HTTP client against small real servers on loopback: deadlines that a
drip cannot stretch, the body cap, raw request targets, kept-alive connections (and a
retry when the server had closed one), early answers to bodies still being sent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hostile_servers import hostile, read_head, response_head

from keyflows.conformance.http import BadAnswer, DeadlineExceeded, HttpClient, TransportError


@contextmanager
def raw_server(handler: Callable[[socket.socket, list[bytes]], None]
               ) -> Iterator[tuple[str, list[bytes]]]:
    """A one-thread-per-connection server; `handler(sock, seen)` answers each."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handler, args=(sock, seen), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def keep_alive(sock: socket.socket, seen: list[bytes]) -> None:
    """Answers 'ok' to every request on the connection, then closes after the third."""
    with sock:
        for _ in range(3):
            head = read_head(sock)
            if not head:
                return
            seen.append(head)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_drip_cannot_stretch_the_deadline() -> None:
    with hostile("drip", interval=0.05) as url:
        client = HttpClient(url, request_deadline=0.5)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"no complete answer within 0\.5 s") as info:
            client.send("GET", "/v1/capabilities")
        assert time.monotonic() - started < 5.0  # the whole drip takes over 15 s
        assert info.value.exchange is not None and info.value.exchange.status == 0
        client.close()


def test_run_deadline_bounds_every_request() -> None:
    with hostile("drip", interval=0.05) as url:
        client = HttpClient(url, request_deadline=30, run_deadline=time.monotonic() + 0.3)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.send("GET", "/")
        assert time.monotonic() - started < 5.0  # the whole drip takes over 15 s


def test_bodies_over_the_cap_are_cut() -> None:
    with hostile("huge", size=50_000_000) as url:
        client = HttpClient(url, body_cap=100_000)
        with pytest.raises(BadAnswer, match="exceeds the runner's cap of 100000 bytes") as info:
            client.send("GET", "/anything")
        assert len(info.value.exchange.response_body) == 100_000
        assert info.value.exchange.status == 200


def test_targets_are_sent_raw_and_connections_kept_alive() -> None:
    with raw_server(keep_alive) as (url, seen):
        client = HttpClient(url)
        for path in ("/a/../b", "/%2e%2e/c", "/d?x=1&y=%zz"):
            assert client.send("GET", path).status == 200
        # The server closed after three requests: the next one retries on a new connection.
        assert client.send("GET", "/e").status == 200
        client.close()
    targets = [head.split(b" ")[1] for head in seen]
    assert targets == [b"/a/../b", b"/%2e%2e/c", b"/d?x=1&y=%zz", b"/e"]


def test_an_early_answer_to_a_large_body_is_read() -> None:
    def early(sock: socket.socket, seen: list[bytes]) -> None:
        with sock:
            seen.append(read_head(sock))
            body = b'{"status":413}'
            sock.sendall(response_head("413 Content Too Large", len(body)) + body)
            sock.shutdown(socket.SHUT_WR)
            time.sleep(0.2)

    with raw_server(early) as (url, _):
        client = HttpClient(url)
        exchange = client.send("PUT", "/big", content=b"x" * 20_000_000)
        assert exchange.status == 413 and exchange.json() == {"status": 413}


def test_chunked_bodies_and_refused_connections() -> None:
    def echo_chunked(sock: socket.socket, seen: list[bytes]) -> None:
        with sock:
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            seen.append(data)
            sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with raw_server(echo_chunked) as (url, seen):
        exchange = HttpClient(url).send("PUT", "/c", chunks=[b"ab", b"cd"])
        assert exchange.status == 204 and exchange.chunked
    assert b"transfer-encoding: chunked" in seen[0].lower()
    assert seen[0].endswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError, match="connection refused"):
        HttpClient(f"http://127.0.0.1:{port}").send("GET", "/")
