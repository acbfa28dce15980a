"""Serving the app under uvicorn with the deadlines and limits uvicorn itself lacks.

uvicorn stays the server; two small layers add what a server facing the Internet needs:

- `GuardedHttpProtocol` (the protocol layer): a header deadline, from the moment a
  connection opens (or the first byte of a later request on it) until its request line
  and headers are complete, so idle and slowloris connections are closed; and a
  connection limit, beyond which a new connection is answered 503 and closed; and a
  problem+json 400 for a request the HTTP parser refuses (API-2). The idle deadline
  between requests is uvicorn's own keep-alive timeout.
- `BodyGuard` (the ASGI layer, see limits.py): the body-read deadline, and
  `Connection: close` on any answer given before the request body was read, so a refused
  client cannot keep streaming its body into the connection.

`uvicorn_config(app, settings)` builds the configuration every entry point uses.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keyflows.reference.config import Settings

_REFUSED_TEMPLATE = (b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
                     b"content-length: %d\r\n%sconnection: close\r\n\r\n%s")


def raw_problem(status: int, reason: str, slug: str, title: str, detail: str,
                extra_headers: bytes = b"", **members: str) -> bytes:
    """A whole problem+json response, written by the protocol layer before any app runs."""
    body = json.dumps({"type": f"urn:keyflows:problem:{slug}", "title": title,
                       "status": status, "detail": detail, **members},
                      separators=(",", ":")).encode("ascii")
    return _REFUSED_TEMPLATE % (status, reason.encode("ascii"), len(body), extra_headers, body)


HEADER_TIMEOUT_RESPONSE = raw_problem(
    408, "Request Timeout", "request-timeout", "Request timeout",
    "the request line and headers did not arrive in time")
BUSY_RESPONSE = raw_problem(
    503, "Service Unavailable", "busy", "Server busy",
    "the server has too many open connections", b"retry-after: 1\r\n")

BAD_REQUEST_RESPONSE = raw_problem(
    400, "Bad Request", "malformed", "Malformed request",
    "the request is not valid HTTP/1.1: its request line, a header or its framing (a "
    "Content-Length that is not one decimal number, given twice, ...)",
    failure_class="decode", requirement="API-2")


LINGER_SECONDS = 2.0
HELD_WRITE_MAX = 16 * 1024
"""A write of at most this many bytes may wait for the next one (see LingeringTransport)."""


class LingeringTransport:
    """The connection's transport, whose close() is a lingering close: send what is
    buffered and a FIN, then read and drop whatever the client still sends, until it
    closes or LINGER_SECONDS pass. Closing a socket with unread input makes the kernel
    send a reset, which can destroy the answer before the client reads it: exactly the
    answers given early (401 before the body, 408, 413) would be lost.

    It also joins writes: a small write (a response's status line and headers) is held
    until the next write (its body) or the end of the event loop's current pass,
    whichever comes first, so an answer that is ready at once leaves in one send() rather
    than two. The bytes on the wire and their order are the same."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.lingering = False
        # Bound once: every request calls them, and __getattr__ costs a call each time.
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.get_extra_info = transport.get_extra_info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif 0 < len(data) <= HELD_WRITE_MAX:
            self._held = data
            self._loop.call_soon(self._write_held)
        else:
            self._transport.write(data)

    def _write_held(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self._write_held()
        self.lingering = True
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self._transport.write_eof()  # after the buffered answer
        self._transport.resume_reading()
        self._loop.call_later(LINGER_SECONDS, self._transport.close)

    def close_now(self) -> None:
        self._write_held()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a connection limit and a
    lingering close.

    The header deadline is one timer per connection, not one per request: a request
    records when it began, and the timer, when it fires, either finds the headers
    awaited for header_timeout (the deadline passed), or re-arms itself for the rest of
    the time, or lapses when no headers are awaited (the next request arms it again)."""

    header_timeout: float = 10.0
    max_connections: int = 1024

    _header_timer: asyncio.TimerHandle | None = None
    _headers_awaited_since: float | None = None
    _request_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        lingering = LingeringTransport(transport, self.loop)
        super().connection_made(lingering)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            lingering.write(BUSY_RESPONSE)
            lingering.close()
            return
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if isinstance(self.transport, LingeringTransport) and self.transport.lingering:
            return  # the answer is sent and the connection closing: input is dropped
        super().data_received(data)

    def eof_received(self) -> None:
        if isinstance(self.transport, LingeringTransport) and self.transport.lingering:
            self.transport.close_now()  # the client is done too

    def timeout_keep_alive_handler(self) -> None:
        """An idle kept-alive connection has no unread input: close it at once, so a
        request racing the close meets a closed connection rather than one that drops it."""
        if isinstance(self.transport, LingeringTransport) and not self.transport.is_closing():
            self.transport.close_now()
            return
        super().timeout_keep_alive_handler()

    def shutdown(self) -> None:
        """The server stops: idle connections close at once, without lingering."""
        if isinstance(self.transport, LingeringTransport) and (
                self.cycle is None or self.cycle.response_complete):
            self.transport.close_now()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """The HTTP parser refused the request (a bad or repeated Content-Length, a bad
        header, ...) before any app saw it: the answer is a problem, like every other
        error (API-2), not uvicorn's plain text. An answer already under way is not
        interleaved with another: the connection is just closed."""
        if self.cycle is not None and not self.cycle.response_complete \
                and self.cycle.response_started:
            self.transport.close()
            return
        self.transport.write(BAD_REQUEST_RESPONSE)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        self._await_headers()  # a later request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._request_begun = False
        self._headers_awaited_since = None  # the timer lapses when it next fires
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_awaited_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        """Headers are awaited from now, unless they already were (a connection's first
        request counts from the connection's opening)."""
        if self._headers_awaited_since is None:
            self._headers_awaited_since = self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout,
                                                      self._header_timer_fired)

    def _header_timer_fired(self) -> None:
        self._header_timer = None
        since = self._headers_awaited_since
        if since is None:
            return
        rest = since + self.header_timeout - self.loop.time()
        if rest > 0:
            self._header_timer = self.loop.call_later(rest, self._header_timer_fired)
            return
        self._header_deadline_passed()

    def _header_deadline_passed(self) -> None:
        self._headers_awaited_since = None
        if self.transport.is_closing():
            return
        # A half-sent request is told why; a connection that never sent a byte is just
        # closed (it may be a client's speculative preconnect).
        if self._request_begun and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(HEADER_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class with this server's header deadline and connection limit."""
    return type("KeyflowsHttpProtocol", (GuardedHttpProtocol,),
                {"header_timeout": float(settings.header_timeout),
                 "max_connections": settings.max_connections})


def uvicorn_config(app: Any, settings: Settings, *, port: int | None = None,
                   log_level: str | None = None) -> uvicorn.Config:
    """uvicorn's configuration for the reference app: the guarded protocol, the idle
    (keep-alive) deadline, and no uvicorn-side concurrency limit (ours answers
    problem+json)."""
    return uvicorn.Config(app, host=settings.host, port=settings.port if port is None else port,
                          log_level=log_level or settings.log_level, lifespan="on",
                          http=guarded_protocol(settings),
                          timeout_keep_alive=settings.idle_timeout,
                          backlog=max(2048, settings.max_connections))
