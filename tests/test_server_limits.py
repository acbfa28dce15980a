"""Abuse resistance of the reference server (API-50 .. API-54), over real sockets.

- 300 connections declaring 1.8 MB bodies on an authenticated route, without valid
  credentials: each is answered 401 before its body is read and closed, and the server's
  memory stays within 50 MB of idle (API-50).
- Idle, slowloris and slow-body connections are closed within the advertised deadlines;
  connections beyond the limit are refused with a problem+json 503 (API-53).
- Rate limits answer 429 with Retry-After and are counted per requester, so a stranger
  cannot lock an owner out of challenges or drain their KeyInits (API-51, API-54).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import AccountServer, RunningServer, start_account_server, start_reference_server

from keyflows.conformance.clients import seal_with_application_key, to_json
from keyflows.spec.limits import Rate

pytestmark = pytest.mark.slow  # a server process, 300 connections, deadlines waited out

DECLARED = 1_800_000  # under the envelope route's limit, so only credentials can refuse it
CONNECTIONS = 300
SENT_BODY = 64 * 1024  # what each client sends before waiting: uvicorn's read buffer size
MEMORY_SLACK_KIB = 50 * 1024


@pytest.fixture(scope="module")
def account() -> Iterator[AccountServer]:
    server = start_account_server()
    yield server
    server.stop()


# --- 300 unauthenticated large bodies --------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def serve_process(tmp_path: Path, account_url: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "keyflows.reference", "--port", "0", "--db",
         str(tmp_path / "keys.sqlite3"), "--account-server", account_url,
         "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            errors = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"server did not start: {errors!r}")
        time.sleep(0.05)
    return process, ready.read_text().strip()


async def declare_big_body(host: str, port: int, index: int) -> tuple[int, bool]:
    """Send headers declaring DECLARED bytes and the first SENT_BODY of them, then wait:
    (status, whether the server closed the connection after answering)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (f"POST /v1/users/victim-{index}/apps/chat/messages HTTP/1.1\r\nHost: k\r\n"
                f"Authorization: Bearer not-a-valid-token-{index}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n")
        writer.write(head.encode() + b"{" + b" " * (SENT_BODY - 1))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 45)
        rest = await asyncio.wait_for(reader.read(), 45)  # b"" once the server closed
        status = int(status_line.split()[1]) if status_line else 0
        return status, rest.endswith(b"}") and b"connection: close" in rest.lower()
    finally:
        writer.close()


def test_unauthenticated_large_bodies_cost_no_memory(tmp_path: Path,
                                                      account: AccountServer) -> None:
    process, url = serve_process(tmp_path, account.url)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
            for i in range(20):  # warm: imports, the account client's pool, the allocator
                client.get("/v1/capabilities")
                client.post(f"/v1/users/warm-{i}/apps/chat/messages", content=b"{}",
                            headers={"Authorization": "Bearer x",
                                     "Content-Type": "application/json"})
        idle = rss_kib(process.pid)
        peak = idle
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_kib(process.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def all_connections() -> list[tuple[int, bool]]:
            return await asyncio.gather(*(declare_big_body(host, int(port), i)
                                          for i in range(CONNECTIONS)))

        started = time.monotonic()
        try:
            results = asyncio.run(all_connections())
        finally:
            stop.set()
            sampler.join()
        elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=15)
    statuses = [status for status, _ in results]
    assert statuses == [401] * CONNECTIONS, sorted(set(statuses))
    assert all(closed for _, closed in results), "a refused connection was kept open"
    print(f"idle RSS {idle // 1024} MB, peak {peak // 1024} MB, {elapsed:.1f} s")
    assert peak - idle < MEMORY_SLACK_KIB, f"RSS grew by {(peak - idle) // 1024} MB"
    assert elapsed < 60


# --- deadlines and the connection limit ----------------------------------------------------------

@pytest.fixture
def fast(tmp_path: Path, account: AccountServer) -> Iterator[RunningServer]:
    """Deadlines short enough to wait out: headers 1 s, body 2 s (then 2048 bytes/s),
    idle 1 s."""
    server = start_reference_server(account.url, tmp_path / "fast.sqlite3", header_timeout=1,
                                    body_timeout=2, body_min_rate=2048, idle_timeout=1,
                                    max_connections=8)
    yield server
    server.stop()


def connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic()
        data += chunk


def test_deadlines_are_advertised(fast: RunningServer) -> None:
    limits = httpx.get(fast.url + "/v1/capabilities").json()["limits"]
    assert (limits["header_timeout_seconds"], limits["body_timeout_seconds"],
            limits["idle_timeout_seconds"]) == (1, 2, 1)
    assert limits["body_min_rate_bytes_per_second"] == 2048


def test_an_idle_connection_is_closed(fast: RunningServer) -> None:
    sock = connect(fast)
    opened = time.monotonic()
    data, closed = read_until_closed(sock)
    assert data == b""  # nothing was asked, nothing is answered
    assert 0.9 <= closed - opened < 4


def test_slowloris_headers_are_cut(fast: RunningServer) -> None:
    sock = connect(fast)
    opened = time.monotonic()
    try:
        for byte in b"GET /v1/capabilities HTTP/1.1\r\nHost: k\r\nX-Slow: ":
            sock.send(bytes([byte]))
            time.sleep(0.1)
    except OSError:
        pass  # the server closed first: what is checked below
    data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data[:60]
    assert b"urn:keyflows:problem:request-timeout" in data
    assert closed - opened < 4


def test_a_later_request_has_its_own_header_deadline(fast: RunningServer) -> None:
    """On a kept-alive connection the header deadline counts from a request's first byte:
    neither from the connection's opening nor from the request before."""
    sock = connect(fast)
    sock.sendall(b"GET /v1/capabilities HTTP/1.1\r\nHost: k\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:60]
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    time.sleep(0.5)  # idle, within the idle deadline (1 s)
    begun = time.monotonic()
    try:
        for byte in b"GET /v1/capabilities HTTP/1.1\r\nHost: k\r\nX-Slow: ":
            sock.send(bytes([byte]))
            time.sleep(0.1)
    except OSError:
        pass  # the server closed first: what is checked below
    data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data[:60]
    assert 0.9 <= closed - begun < 4


def test_a_slow_body_is_cut(fast: RunningServer) -> None:
    sock = connect(fast)
    sock.sendall(b"POST /v1/users/u/apps/a/session-challenges HTTP/1.1\r\nHost: k\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    sent = time.monotonic()
    data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data[:60]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert (body["type"], body["requirement"]) == ("urn:keyflows:problem:request-timeout",
                                                   "API-53")
    assert 1.9 <= closed - sent < 5


CHALLENGE_HEAD = (b"POST /v1/users/u/apps/a/session-challenges HTTP/1.1\r\nHost: k\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n")


def send_paced(sock: socket.socket, body: bytes, *, seconds: float) -> None:
    """Send `body` in 20 pieces spread evenly over `seconds` (stops if the server closes)."""
    started = time.monotonic()
    for i in range(20):
        time.sleep(max(0.0, started + i * seconds / 20 - time.monotonic()))
        try:
            sock.sendall(body[i * len(body) // 20:(i + 1) * len(body) // 20])
        except OSError:
            return


def test_a_large_body_at_an_honest_pace_outlasts_the_body_timeout(fast: RunningServer) -> None:
    """API-53: 3.5 s for a body (body timeout 2 s) at 3x the minimum rate: read, answered."""
    body = b'{"x":"' + b"a" * (3 * 2048 * 7 // 2) + b'"}'
    sock = connect(fast)
    sock.sendall(CHALLENGE_HEAD % len(body))
    sent = time.monotonic()
    send_paced(sock, body, seconds=3.5)
    answer = sock.recv(65536)
    assert time.monotonic() - sent >= 3.2
    assert answer.startswith(b"HTTP/1.1 4") and not answer.startswith(b"HTTP/1.1 408"), \
        answer[:60]


def test_a_body_trickled_below_the_minimum_rate_is_cut(fast: RunningServer) -> None:
    """API-53: at a quarter of the minimum rate the allowance runs out at
    2 + t/4 seconds, i.e. after about 2.7 s, well before the body is complete."""
    body = b'{"x":"' + b"a" * (2048 // 4 * 6) + b'"}'
    sock = connect(fast)
    sock.sendall(CHALLENGE_HEAD % len(body))
    sent = time.monotonic()
    sender = threading.Thread(target=send_paced, args=(sock, body), kwargs={"seconds": 6})
    sender.start()
    data, closed = read_until_closed(sock)
    sender.join()
    assert data.startswith(b"HTTP/1.1 408 "), data[:60]
    assert 2.4 <= closed - sent < 5.5


def test_an_idle_kept_alive_connection_is_closed(fast: RunningServer) -> None:
    sock = connect(fast)
    sock.sendall(b"GET /v1/capabilities HTTP/1.1\r\nHost: k\r\n\r\n")
    first = sock.recv(65536)
    answered = time.monotonic()
    assert first.startswith(b"HTTP/1.1 200 ")
    _, closed = read_until_closed(sock)
    assert 0.9 <= closed - answered < 4


def test_connections_beyond_the_limit_get_503(fast: RunningServer) -> None:
    held = [connect(fast) for _ in range(8)]
    try:
        time.sleep(0.2)  # let the server accept them all
        extra = connect(fast)
        data, _ = read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503 "), data[:60]
        assert b"retry-after: 1" in data.lower()
        assert b"urn:keyflows:problem:busy" in data
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(fast.url + "/v1/capabilities").status_code == 200


# --- rate limits per requester ----------------------------------------------------------------

@pytest.fixture
def limited(tmp_path: Path, account: AccountServer) -> Iterator[RunningServer]:
    rates = {"challenge-create": Rate(4, 60), "keyinit-fetch": Rate(100, 60),
             "keyinit-fetch-identity": Rate(2, 60), "uid-create": Rate(3, 60)}
    server = start_reference_server(account.url, tmp_path / "limited.sqlite3", rates=rates,
                                    challenge_max_attempts=3)
    yield server
    server.stop()


def from_address(address: str) -> dict[str, str]:
    """Requests as if from `address`: uvicorn trusts X-Forwarded-For from loopback."""
    return {"X-Forwarded-For": address}


def test_challenge_creation_is_limited_per_requester(limited: RunningServer,
                                                      account: AccountServer) -> None:
    owner, token = account.mint()
    sealed = seal_with_application_key(owner, "app", 1)
    with httpx.Client(base_url=limited.url, trust_env=False) as client:
        put = client.put(f"/v1/users/{owner}/apps/app/keypair", content=to_json(sealed.record),
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})
        assert put.status_code == 201
        path = f"/v1/users/{owner}/apps/app/session-challenges"
        # The stranger uses up their SC-2 attempts for the owner's user...
        stranger = [client.post(path, headers=from_address("198.51.100.7")) for _ in range(4)]
        assert [r.status_code for r in stranger] == [201, 201, 201, 429]
        assert stranger[-1].json()["requirement"] == "SC-2"
        # ... and then their rate limit, on anybody's user.
        other = client.post("/v1/users/nobody/apps/app/session-challenges",
                            headers=from_address("198.51.100.7"))
        assert other.status_code == 429
        assert other.json()["requirement"] == "API-51"
        assert 1 <= int(other.headers["retry-after"]) <= 15
        # The owner, from elsewhere, is not locked out.
        mine = client.post(path, headers=from_address("203.0.113.9"))
        assert mine.status_code == 201, mine.text


def test_ipv6_requesters_are_counted_by_their_64(limited: RunningServer) -> None:
    with httpx.Client(base_url=limited.url, trust_env=False) as client:
        answers = [client.post("/v1/users/nobody/apps/app/session-challenges",
                               headers=from_address(f"2001:db8:1:2::{i:x}")).status_code
                   for i in range(5)]
        assert answers == [404, 404, 404, 404, 429]
        assert client.post("/v1/users/nobody/apps/app/session-challenges",
                           headers=from_address("2001:db8:1:3::1")).status_code == 404


def test_a_refused_request_leaves_the_bucket_unchanged(limited: RunningServer) -> None:
    """API-51: hammering after a 429 does not push the wait further."""
    with httpx.Client(base_url=limited.url, trust_env=False) as client:
        url = "/v1/users/nobody/apps/app/session-challenges"
        who = from_address("192.0.2.44")
        for _ in range(4):
            assert client.post(url, headers=who).status_code == 404
        waits = [int(client.post(url, headers=who).headers["retry-after"]) for _ in range(5)]
        assert waits == sorted(waits, reverse=True) and waits[0] <= 15
