"""A small, strict HTTP/1.1 client for the one upstream the key server trusts: the
account server.

Why not a general client: every authenticated request makes one call, so its cost is
the owner routes' cost. This client does only what the account server's two calls need
(a JSON POST, a GET with a query), keeps a bounded pool of kept-alive connections on the
serving event loop, and refuses anything outside a narrow answer shape: a status line,
headers of at most MAX_HEAD_BYTES, a body of at most MAX_BODY_BYTES framed by
Content-Length or chunked encoding. Anything else is an UpstreamError, which the caller
answers as 503 (never as a grant).

A request that fails on a reused connection before any byte of the answer arrived (the
peer closed it while idle) is sent once more on a fresh connection. A connection is
kept for reuse only if it holds no byte beyond the answer.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 32


class UpstreamError(Exception):
    """No clear answer: unreachable, timed out, or an answer outside the accepted shape.
    The message is short and names the cause."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection as an asyncio protocol: bytes are collected as they arrive and the
    waiting request is resolved once a whole answer is in the buffer. (A protocol, not
    asyncio streams: one future per request instead of one per read, which is most of
    this client's cost per request.)"""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self.closed = False
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            if len(self.buffer) > MAX_HEAD_BYTES and self.transport is not None:
                self.transport.close()  # bytes nobody asked for: never reused, not kept
            return
        try:
            complete = parse_answer(self.buffer)
        except UpstreamError as exc:
            self.waiter.set_exception(exc)
            return
        if complete is not None:
            self.waiter.set_result(complete)

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.reused and not self.buffer:
                self.waiter.set_exception(_Stale())
            elif self.buffer:
                self.waiter.set_exception(UpstreamError("the answer was cut short"))
            else:
                self.waiter.set_exception(
                    UpstreamError("the connection closed before an answer"))

    def usable(self) -> bool:
        return not self.closed and self.transport is not None \
            and not self.transport.is_closing() and not self.buffer

    async def exchange(self, request: bytes) -> tuple[Answer, bool]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UpstreamClient:
    """Requests to one origin (scheme, host, port) over pooled HTTP/1.1 connections."""

    def __init__(self, base_url: str, *, timeout: float,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        # base_url is an http(s) base URL checked once, where the operator gives it: the
        # configuration refuses anything else at start-up (config.check_account_server,
        # check_server_url), and a vault base is one of those configured URLs
        # (edv.check_vault_url returns only a trusted base).
        parts = urlsplit(base_url)
        assert parts.hostname is not None, base_url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.timeout = timeout
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._host_line = f"Host: {host_header}\r\n".encode("ascii")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def post_json(self, path: str, body: bytes) -> Answer:
        head = (b"POST " + (self.base_path + path).encode("ascii") + b" HTTP/1.1\r\n"
                + self._host_line + b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode("ascii") + b"\r\n\r\n")
        return await self.send(head + body)

    async def get(self, path_and_query: str) -> Answer:
        return await self.send(b"GET " + (self.base_path + path_and_query).encode("ascii")
                               + b" HTTP/1.1\r\n" + self._host_line + b"\r\n")

    async def send(self, request: bytes) -> Answer:
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                connection = await self._connection()
                try:
                    return await self._exchange(connection, request)
                except _Stale:
                    return await self._exchange(await self._connect(), request)
        except TimeoutError:
            raise UpstreamError(f"no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(type(exc).__name__) from None

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                connection.reused = True
                return connection
            connection.close()
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port,
                                                     ssl=self.ssl)
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        keep = False
        try:
            answer, keep = await connection.exchange(request)
            return answer
        finally:
            if keep and connection.usable():
                self._idle.append(connection)
            else:
                connection.close()


class _Stale(Exception):
    """A reused connection was closed by the peer before it answered."""


def parse_answer(buffer: bytearray) -> tuple[Answer, bool] | None:
    """(answer, keep-alive) once `buffer` holds a whole answer, which is then removed from
    it; None while it is incomplete; UpstreamError for an answer outside the shape."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise UpstreamError(f"answer headers over {MAX_HEAD_BYTES} bytes")
        return None
    if end + 4 > MAX_HEAD_BYTES:
        raise UpstreamError(f"answer headers over {MAX_HEAD_BYTES} bytes")
    status, length, chunked, keep = parse_head(bytes(buffer[:end + 4]))
    start = end + 4
    if chunked:
        parsed = parse_chunked(buffer, start)
        if parsed is None:
            return None
        body, stop = parsed
    else:
        if len(buffer) < start + length:
            return None
        body, stop = bytes(buffer[start:start + length]), start + length
    del buffer[:stop]
    return Answer(status, body), keep


def parse_chunked(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """(body, end offset) of a whole chunked body starting at `at`, None if incomplete."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            if len(buffer) - at > 64:
                raise UpstreamError("a malformed chunk size")
            return None
        size_text = bytes(buffer[at:line_end]).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 8:
            raise UpstreamError("a malformed chunk size")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpstreamError("a malformed chunk size") from None
        at = line_end + 2
        if size == 0:
            while True:  # trailers, up to the empty line
                line_end = buffer.find(b"\r\n", at)
                if line_end < 0:
                    if len(buffer) - at > MAX_HEAD_BYTES:
                        raise UpstreamError(f"answer trailers over {MAX_HEAD_BYTES} bytes")
                    return None
                empty = line_end == at
                at = line_end + 2
                if empty:
                    return bytes(body), at
        if len(body) + size > MAX_BODY_BYTES:
            raise UpstreamError(f"an answer over {MAX_BODY_BYTES} bytes")
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at:at + size]
        if buffer[at + size:at + size + 2] != b"\r\n":
            raise UpstreamError("a malformed chunk")
        at += size + 2


def parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """(status, content length, chunked, keep-alive) of an answer's head, strictly."""
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or status_line[0] not in (b"HTTP/1.1", b"HTTP/1.0") \
            or len(status_line[1]) != 3 or not status_line[1].isdigit():
        raise UpstreamError("not an HTTP/1.x status line")
    length: int | None = None
    chunked = False
    keep = status_line[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError("a malformed header line")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if length is not None or not value.isdigit():
                raise UpstreamError("a bad or repeated Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise UpstreamError("an unsupported Transfer-Encoding")
            chunked = True
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            keep = b"close" not in tokens and (keep or b"keep-alive" in tokens)
    if chunked and length is not None:
        raise UpstreamError("both Content-Length and chunked")
    if status_line[1] in (b"204", b"304"):  # no content, whatever the headers say
        return int(status_line[1]), 0, False, keep
    if not chunked and length is None:
        raise UpstreamError("an answer without Content-Length")
    if length is not None and length > MAX_BODY_BYTES:
        raise UpstreamError(f"an answer over {MAX_BODY_BYTES} bytes")
    return int(status_line[1]), length or 0, chunked, keep
