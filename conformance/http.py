"""The runner's HTTP/1.1 client: every exchange recorded, every answer bounded.

A server under test may be hostile: it may answer one byte every few seconds, or send
a body of gigabytes. So this client (a thin shell over the h11 state machine, the
caller owning the sockets) gives each request a deadline for the whole exchange (not
per read: a slow drip never resets it), never reads more than a body cap, and records
what was sent and received even when the exchange failed. The request target is sent
exactly as the check wrote it (no dot-segment removal, no re-encoding), so checks can
probe how a server parses paths.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import h11

from keyflows.conformance.answers import parse_answer
from keyflows.conformance.options import DEFAULT_REQUEST_DEADLINE_S
from keyflows.conformance.redaction import SECRETS

DEFAULT_BODY_CAP = 1 << 20
"""The least byte limit the cap assumes (before the capabilities advertise any)."""
BODY_CAP_SLACK = 1 << 20
"""Added to the largest advertised byte limit: answers carry some framing around data."""
USER_AGENT = "keyflows-conformance"
_RECV_SIZE = 65536
_MAX_IDLE = 16
MAX_IDLE_REUSE_S = 1.0
"""A kept-alive connection idle longer than this is not reused: servers close idle
connections (after idle_timeout_seconds), and a request racing that close is lost."""
_BODY_METHODS = ("POST", "PUT", "PATCH")
# Characters sent as they are in a request target; anything else is percent-encoded.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7f))


class TransportError(Exception):
    """No usable answer: the target refused, reset, closed early or missed the deadline."""

    def __init__(self, message: str, exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.exchange = exchange


class DeadlineExceeded(TransportError):
    """The whole exchange did not complete before its deadline."""


class RequestNotSent(Exception):
    """The runner could not encode the request a check asked for (the check's fault)."""


class BadAnswer(Exception):
    """The target answered, but not with something a client can accept: a body over the
    cap or bytes that are not HTTP/1.1. The check fails (the server's fault)."""

    def __init__(self, message: str, exchange: Exchange) -> None:
        super().__init__(message)
        self.exchange = exchange


@dataclass
class Exchange:
    """One request and its response, exactly as sent and received."""

    method: str
    url: str
    sent_headers: dict[str, str]
    """Headers the check chose (used for the reproducer); the client adds the usual rest."""
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int = 0
    reason: str = ""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    elapsed_ms: float = 0.0
    started: float = 0.0
    """time.monotonic() when the request was sent (orders exchanges of several parties)."""
    credential_note: str = ""
    """What the bearer token was (whose, valid or not), to reproduce the request."""
    chunked: bool = False
    """The request body was sent with chunked transfer encoding."""
    declared_length: int | None = None
    """A Content-Length larger than the body sent (a withheld-body probe), else None."""
    error: str = ""
    """Why the exchange did not complete, when it did not."""
    body_total: int | None = None
    """The response body's full length when the kept bytes were cut (traces, memory)."""
    party: str = "runner"
    """'runner' for requests the runner sent; 'account-server' for requests the server
    under test sent to the runner's account server."""

    def header(self, name: str) -> str | None:
        """The first response header of that name (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.response_headers:
            if key.lower() == lowered:
                return value
        return None

    @property
    def media_type(self) -> str:
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The response body as JSON; raises ValueError when it is not JSON. Objects and
        arrays come back as mappings and lists whose missing members fail the check with
        a message naming the member, instead of a bare KeyError."""
        return parse_answer(self.response_body, where=self.line)

    @property
    def line(self) -> str:
        """One-line summary: `PUT /v1/... -> 201`."""
        url = self.url if len(self.url) <= 120 else self.url[:117] + "..."
        outcome = str(self.status) if self.status else f"no answer ({self.error or 'none'})"
        return f"{self.method} {url} -> {outcome}"

    def trim(self, keep: int) -> None:
        """Drop body bytes beyond `keep` (after a check: bounded memory over a long run)."""
        if len(self.response_body) > keep:
            if self.body_total is None:
                self.body_total = len(self.response_body)
            self.response_body = self.response_body[:keep]
        if len(self.request_body) > keep:
            self.request_body = self.request_body[:keep]


def learn_secrets(exchange: Exchange) -> None:
    """Teach the redaction registry the credentials this exchange carried."""
    SECRETS.learn_headers(exchange.request_headers)
    request_type = next((v for k, v in exchange.request_headers
                         if k.lower() == "content-type"), "")
    SECRETS.learn_body(exchange.request_body, request_type)
    SECRETS.learn_body(exchange.response_body, exchange.media_type)


def describe_transport_error(url: str, exc: BaseException) -> str:
    """One line naming the URL and the cause, e.g. 'connection refused'."""
    if isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, TimeoutError | socket.timeout):
        reason = "timed out"
    elif isinstance(exc, socket.gaierror):
        reason = "unknown host"
    elif isinstance(exc, ConnectionResetError):
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) \
            else "connection reset"
    else:
        text = str(exc) or type(exc).__name__
        lowered = text.lower()
        if "refused" in lowered or "errno 111" in lowered:
            reason = "connection refused"
        elif "name or service not known" in lowered or "nodename nor servname" in lowered:
            reason = "unknown host"
        else:
            reason = text.splitlines()[0]
    return f"cannot reach {url}: {reason}"


class _Connection:
    """One socket and its h11 state machine."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.reused = False
        self.idle_since = 0.0
        self.received = 0
        """Bytes received for the current request (0: the server said nothing)."""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _time_left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline")
        return left

    def send(self, event: h11.Event, deadline: float) -> None:
        data = self.h11.send(event)
        if data:
            self.sock.settimeout(self._time_left(deadline))
            self.sock.sendall(data)

    def next_event(self, deadline: float) -> Any:
        """The next h11 event (or PAUSED), reading as needed until the deadline."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.sock.settimeout(self._time_left(deadline))
            data = self.sock.recv(_RECV_SIZE)
            self.received += len(data)
            self.h11.receive_data(data)


class HttpClient:
    """Sends requests to one base URL and returns recorded Exchanges (thread-safe).

    `request_deadline` bounds each whole exchange; `run_deadline` (a time.monotonic()
    value) bounds them all; `body_cap` bounds each response body. The run may raise the
    cap once the capabilities advertise larger limits."""

    def __init__(self, base_url: str, *, request_deadline: float = DEFAULT_REQUEST_DEADLINE_S,
                 body_cap: int = DEFAULT_BODY_CAP + BODY_CAP_SLACK,
                 run_deadline: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self.request_deadline = request_deadline
        self.body_cap = body_cap
        self.run_deadline = run_deadline
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self.max_idle_reuse = MAX_IDLE_REUSE_S

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def deadline(self, seconds: float | None = None) -> float:
        """The time.monotonic() value by which an exchange started now must end."""
        at = time.monotonic() + (self.request_deadline if seconds is None else seconds)
        return min(at, self.run_deadline) if self.run_deadline is not None else at

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- connections ------------------------------------------------------------------

    def _connect(self, deadline: float) -> _Connection:
        left = max(deadline - time.monotonic(), 0.001)
        raw = socket.create_connection((self._host, self._port), timeout=left)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._scheme != "https":
            return _Connection(raw)
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            return _Connection(ssl.create_default_context().wrap_socket(
                raw, server_hostname=self._host))
        except BaseException:
            raw.close()
            raise

    def _checkout(self, deadline: float) -> _Connection:
        """A live kept-alive connection (not idle too long, not closed by the server: a
        closed socket reads as ready), else a new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(deadline)
            if time.monotonic() - conn.idle_since > self.max_idle_reuse or _readable(conn):
                conn.close()
                continue
            conn.reused = True
            return conn

    def _checkin(self, conn: _Connection) -> None:
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
                conn.received = 0
                conn.idle_since = time.monotonic()
            except h11.LocalProtocolError:
                conn.close()
                return
            with self._lock:
                if len(self._idle) < _MAX_IDLE:
                    self._idle.append(conn)
                    return
        conn.close()

    # --- requests ---------------------------------------------------------------------

    def send(self, method: str, path: str, *, headers: dict[str, str] | None = None,
             content: bytes | None = None, chunks: list[bytes] | None = None,
             deadline_s: float | None = None) -> Exchange:
        """Send one request; `chunks` sends the body with chunked transfer encoding.

        Raises TransportError (no answer: refused, reset, deadline) or BadAnswer (an
        answer over the body cap, or not HTTP); both carry the partial exchange."""
        sent = dict(headers or {})
        body = content if content is not None else b"".join(chunks or [])
        head = self._head(method, sent, body, chunked=chunks is not None)
        exchange = Exchange(method=method, url=self.url(path), sent_headers=sent,
                            request_headers=head, request_body=body,
                            chunked=chunks is not None)
        deadline = self.deadline(deadline_s)
        parts = [body] if chunks is None else chunks
        try:
            self._exchange(exchange, path, parts, deadline, complete=True)
        finally:
            learn_secrets(exchange)
        return exchange

    def send_declared_length(self, method: str, path: str, headers: dict[str, str], *,
                             declared: int | None, sent: bytes, deadline_s: float) -> Exchange:
        """Send headers declaring a `declared`-byte body, then only `sent` bytes of it, and
        read the answer. A server that honours Content-Length early answers at once; one
        that waits for the whole body runs out the deadline: status 0, not an error.
        `declared=None`: `sent` goes as a chunked body whose last chunk never comes."""
        head = self._head(method, dict(headers), b"", chunked=declared is None)
        if declared is not None:
            head = [(k, v) for k, v in head if k.lower() != "content-length"]
            head.append(("content-length", str(declared)))
        exchange = Exchange(method=method, url=self.url(path), sent_headers=dict(headers),
                            request_headers=head, request_body=sent,
                            chunked=declared is None, declared_length=declared)
        try:
            self._exchange(exchange, path, [sent], self.deadline(deadline_s), complete=False,
                           fresh=True)
        except DeadlineExceeded:
            pass  # the finding itself: the check reports the missing answer
        finally:
            learn_secrets(exchange)
        return exchange

    def _head(self, method: str, sent: dict[str, str], body: bytes, *,
              chunked: bool) -> list[tuple[str, str]]:
        """The header block as sent: the usual defaults, overridden by the check's own."""
        defaults: dict[str, tuple[str, str]] = {
            "host": ("host", self._netloc), "user-agent": ("user-agent", USER_AGENT),
            "accept": ("accept", "*/*"), "accept-encoding": ("accept-encoding", "identity")}
        if chunked:
            defaults["transfer-encoding"] = ("transfer-encoding", "chunked")
        elif body or method in _BODY_METHODS:
            defaults["content-length"] = ("content-length", str(len(body)))
        chosen = {name.lower() for name in sent}
        head = [pair for key, pair in defaults.items() if key not in chosen]
        return [*head, *sent.items()]

    def _target(self, path: str) -> bytes:
        return quote(self._prefix + path, safe=_TARGET_SAFE).encode("ascii")

    def _exchange(self, exchange: Exchange, path: str, parts: list[bytes], deadline: float,
                  *, complete: bool, fresh: bool = False) -> None:
        exchange.started = time.monotonic()
        try:
            for attempt in range(1 if fresh else 2):
                try:
                    # A retry (after a kept-alive connection turned out closed) always
                    # takes a new connection.
                    conn = self._connect(deadline) if fresh or attempt \
                        else self._checkout(deadline)
                except (OSError, ssl.SSLError) as exc:
                    self._fail(exchange, exc, deadline)
                try:
                    self._run(conn, exchange, path, parts, deadline, complete=complete)
                except _StaleConnection:
                    conn.close()
                    if attempt == 0 and not fresh:
                        continue
                    self._fail(exchange, ConnectionResetError("connection closed"), deadline)
                except h11.LocalProtocolError as exc:
                    conn.close()
                    raise RequestNotSent(f"the runner could not send {exchange.method} "
                                         f"{exchange.url}: {exc}") from exc
                except (OSError, ssl.SSLError) as exc:
                    conn.close()
                    self._fail(exchange, exc, deadline)
                except BaseException:
                    conn.close()
                    raise
                if complete:
                    self._checkin(conn)
                else:
                    conn.close()
                return
        finally:
            exchange.elapsed_ms = (time.monotonic() - exchange.started) * 1000

    def _fail(self, exchange: Exchange, exc: BaseException, deadline: float) -> NoReturn:
        exchange.elapsed_ms = (time.monotonic() - exchange.started) * 1000
        if isinstance(exc, TimeoutError | socket.timeout) or time.monotonic() >= deadline:
            received = len(exchange.response_body)
            got = (f"status {exchange.status} and {received} body bytes" if exchange.status
                   else "no complete status line and headers")
            allowed = max(deadline - exchange.started, 0.0)
            exchange.error = f"deadline of {allowed:.1f} s passed"
            raise DeadlineExceeded(
                f"{exchange.method} {exchange.url}: no complete answer within "
                f"{allowed:.1f} s (got {got})", exchange) from exc
        message = describe_transport_error(exchange.url, exc)
        exchange.error = message.rsplit(": ", 1)[-1]
        raise TransportError(message, exchange) from exc

    def _run(self, conn: _Connection, exchange: Exchange, path: str, parts: list[bytes],
             deadline: float, *, complete: bool) -> None:
        request = h11.Request(method=exchange.method, target=self._target(path),
                              headers=[(k.encode("latin-1"), v.encode("latin-1"))
                                       for k, v in exchange.request_headers])
        try:
            conn.send(request, deadline)
            for part in parts:
                if part:
                    conn.send(h11.Data(data=part), deadline)
            if complete:
                conn.send(h11.EndOfMessage(), deadline)
        except (BrokenPipeError, ConnectionResetError):
            # The server may have answered early (413) and closed: read that answer.
            if conn.reused and not self._answer_pending(conn):
                raise _StaleConnection() from None
        self._receive(conn, exchange, deadline)

    @staticmethod
    def _answer_pending(conn: _Connection) -> bool:
        try:
            conn.sock.settimeout(0.2)
            data = conn.sock.recv(_RECV_SIZE, socket.MSG_PEEK)
        except OSError:
            return False
        return bool(data)

    def _receive(self, conn: _Connection, exchange: Exchange, deadline: float) -> None:
        body = bytearray()
        cap = self.body_cap
        while True:
            try:
                event = conn.next_event(deadline)
            except h11.RemoteProtocolError as exc:
                if not conn.received:
                    if conn.reused:
                        raise _StaleConnection() from None
                    raise ConnectionResetError("the server closed the connection without "
                                               "answering") from None
                exchange.error = "not HTTP/1.1"
                exchange.response_body = bytes(body)
                raise BadAnswer(f"{exchange.method} {exchange.url}: the answer is not valid "
                                f"HTTP/1.1 ({exc})", exchange) from exc
            except (ConnectionResetError, BrokenPipeError):
                if conn.reused and not exchange.status:
                    raise _StaleConnection() from None
                exchange.response_body = bytes(body)
                raise
            except TimeoutError:
                exchange.response_body = bytes(body)
                raise
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                exchange.status = event.status_code
                exchange.reason = event.reason.decode("latin-1")
                exchange.response_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                             for k, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > cap:
                    exchange.response_body = bytes(body[:cap])
                    exchange.body_total = None
                    exchange.error = f"body over {cap} bytes"
                    raise BadAnswer(
                        f"{exchange.method} {exchange.url}: the answer's body exceeds the "
                        f"runner's cap of {cap} bytes (the largest byte limit the server "
                        f"advertises, at least {DEFAULT_BODY_CAP}, plus {BODY_CAP_SLACK}); "
                        f"the runner stopped reading", exchange)
            elif isinstance(event, h11.EndOfMessage):
                exchange.response_body = bytes(body)
                return
            elif isinstance(event, h11.ConnectionClosed):
                if conn.reused and not exchange.status:
                    raise _StaleConnection()
                exchange.response_body = bytes(body)
                raise ConnectionResetError("the connection closed before the answer ended")
            else:  # PAUSED: the other side started something we did not ask for
                exchange.response_body = bytes(body)
                return


def _readable(conn: _Connection) -> bool:
    """An idle connection with something to read has been closed (or spoken on) by the
    server: it cannot carry the next request."""
    try:
        ready, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class _StaleConnection(Exception):
    """A kept-alive connection the server had closed: retry once on a fresh one."""


def json_or_none(body: bytes) -> Any:
    """Plain JSON (no shape tracking), or None when the body is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None
