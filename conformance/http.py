"""HTTP client that records every exchange, for traces and curl reproducers.

Printed traces never show credentials or encrypted key material: bearer tokens and the
values of `ciphertext`, `nonce`, `salt` and `access_token` are replaced by a marker that
keeps only their length. (The OpenID conformance suite's users complained that its logs
leak credentials; CI logs are public more often than not.)
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

SECRET_MEMBERS = ("ciphertext", "nonce", "salt", "access_token", "token",
                  "session_token", "capability", "secret", "plaintext", "cek", "wrapped_key")
SECRET_HEADERS = ("secret-share",)
"""Headers whose whole value is secret (lock-layering: the user's share, LOCK-10)."""
_SECRET_VALUE = re.compile(r'"(' + "|".join(SECRET_MEMBERS) + r')"(\s*:\s*)"([^"\\]*)"')
MAX_SHOWN_BODY = 2000
TOKEN_VARIABLE = "KEYFLOWS_TOKEN"


class TransportError(Exception):
    """The target could not be reached or did not answer (no HTTP status at all)."""


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
    credential_note: str = ""
    """What the bearer token was (whose, valid or not), to reproduce the request."""

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
        """The response body as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.response_body)

    @property
    def line(self) -> str:
        """One-line summary: `PUT /v1/... -> 201`."""
        url = self.url if len(self.url) <= 120 else self.url[:117] + "..."
        return f"{self.method} {url} -> {self.status or 'no answer'}"


def redact_text(text: str) -> str:
    """Replace the values of secret JSON members by a length marker."""
    return _SECRET_VALUE.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"<redacted {len(m.group(3))} chars>"', text)


def redact_authorization(value: str) -> str:
    """Keep the scheme (the point of many auth checks), hide the credential."""
    scheme, _, credential = value.partition(" ")
    if not credential.strip():
        return value
    return f"{scheme} <redacted {len(credential)} chars>"


def _show_body(body: bytes) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", errors="backslashreplace")
    text = redact_text(text)
    if len(text) > MAX_SHOWN_BODY:
        text = text[:MAX_SHOWN_BODY] + f"... ({len(body)} bytes in total)"
    return text


def _show_header(name: str, value: str) -> str:
    if name.lower() == "authorization":
        value = redact_authorization(value)
    elif name.lower() in SECRET_HEADERS:
        value = f"<redacted {len(value)} chars>"
    return f"{name}: {value}"


def format_exchange(exchange: Exchange, indent: str = "  ") -> str:
    """A redacted trace of one exchange, request lines prefixed '>' and response '<'."""
    url = exchange.url if len(exchange.url) <= 300 else exchange.url[:297] + "..."
    lines = [f"> {exchange.method} {url}"]
    lines += [f"> {_show_header(k, v)}" for k, v in exchange.request_headers]
    body = _show_body(exchange.request_body)
    if body:
        lines += ["> ", *(f"> {b}" for b in body.splitlines())]
    if exchange.status:
        lines.append(f"< {exchange.status} {exchange.reason}".rstrip())
        lines += [f"< {_show_header(k, v)}" for k, v in exchange.response_headers]
        body = _show_body(exchange.response_body)
        if body:
            lines += ["< ", *(f"< {b}" for b in body.splitlines())]
    else:
        lines.append("< (no answer)")
    lines.append(f"  ({exchange.elapsed_ms:.1f} ms)")
    return "\n".join(indent + line for line in lines)


def curl_reproducer(exchange: Exchange) -> str:
    """A shell command that sends the same request (token and key material redacted)."""
    parts = ["curl", "-sS", "-i", "-X", exchange.method, shlex.quote(exchange.url)]
    for name, value in exchange.sent_headers.items():
        if name.lower() == "authorization":
            scheme, _, credential = value.partition(" ")
            if credential.strip():
                # Double quotes so the shell expands the variable holding a live token.
                parts += ["-H", f'"{name}: {scheme} ${TOKEN_VARIABLE}"']
                continue
        if name.lower() in SECRET_HEADERS:
            parts += ["-H", f'"{name}: ${name.upper().replace("-", "_")}"']
            continue
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    body = exchange.request_body
    if not body:
        return " ".join(parts)
    if len(body) > 4096:
        return " ".join([*parts, "--data-binary", "@body.bin"]) + (
            f"   # body: {len(body)} bytes, not shown")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        printf = "".join(f"\\x{b:02x}" for b in body)
        return f"printf '{printf}' | " + " ".join([*parts, "--data-binary", "@-"])
    return " ".join([*parts, "--data-binary", shlex.quote(redact_text(text))])


class HttpClient:
    """Sends requests to one base URL and returns recorded Exchanges."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, follow_redirects=False,
                                    headers={"user-agent": "keyflows-conformance"})

    def close(self) -> None:
        self._client.close()

    def send(self, method: str, path: str, *, headers: dict[str, str] | None = None,
             content: bytes | None = None, chunks: list[bytes] | None = None) -> Exchange:
        """Send one request; `chunks` sends the body with chunked transfer encoding."""
        sent = dict(headers or {})
        url = self.base_url + path
        body: Any = content
        if chunks is not None:
            body = iter(chunks)
        # latin-1 so a check can send any byte in a header value (HTTP allows obs-text).
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()]
        request = self._client.build_request(method, url, headers=raw_headers, content=body)
        exchange = Exchange(method=method, url=url, sent_headers=sent,
                            request_headers=[(k.decode("latin-1"), v.decode("latin-1"))
                                             for k, v in request.headers.raw],
                            request_body=content if content is not None
                            else b"".join(chunks or []))
        started = time.perf_counter()
        try:
            response = self._client.send(request)
        except httpx.LocalProtocolError as exc:
            raise ValueError(f"the runner could not send {method} {url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(describe_transport_error(url, exc)) from exc
        exchange.elapsed_ms = (time.perf_counter() - started) * 1000
        exchange.status = response.status_code
        exchange.reason = response.reason_phrase
        exchange.response_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                     for k, v in response.headers.raw]
        exchange.response_body = response.content
        return exchange


def describe_transport_error(url: str, exc: Exception) -> str:
    """One line naming the URL and the cause, e.g. 'connection refused'."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered or "errno 111" in lowered:
        reason = "connection refused"
    elif isinstance(exc, httpx.TimeoutException):
        reason = "timed out"
    elif "name or service not known" in lowered or "nodename nor servname" in lowered:
        reason = "unknown host"
    else:
        reason = text.splitlines()[0]
    return f"cannot reach {url}: {reason}"


def send_declared_length(base_url: str, method: str, path: str, headers: dict[str, str], *,
                         declared: int, sent: bytes, timeout: float) -> Exchange:
    """Send headers declaring a `declared`-byte body, then only `sent` bytes of it, and
    read the answer. A server that honours Content-Length early answers at once; one that
    waits for the whole body times out (reported as status 0)."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    url = base_url.rstrip("/") + path
    host_header = parts.netloc
    head_headers = [("Host", host_header), *headers.items(),
                    ("Content-Length", str(declared)), ("Connection", "close")]
    head = f"{method} {parts.path.rstrip('/')}{path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in head_headers) + "\r\n"
    exchange = Exchange(method=method, url=url, sent_headers=dict(headers),
                        request_headers=head_headers, request_body=sent)
    started = time.perf_counter()
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TransportError(describe_transport_error(url, exc)) from exc
    sock: socket.socket = raw
    if parts.scheme == "https":
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
    received = b""
    try:
        sock.sendall(head.encode("latin-1") + sent)
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head_end = received.find(b"\r\n\r\n")
        if head_end >= 0:
            # Read what else arrives quickly (the problem body), without waiting long.
            sock.settimeout(0.5)
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                pass
    except OSError:
        pass  # a timeout or reset: whatever arrived is the answer
    finally:
        sock.close()
    exchange.elapsed_ms = (time.perf_counter() - started) * 1000
    _parse_raw_response(exchange, received)
    return exchange


def _parse_raw_response(exchange: Exchange, received: bytes) -> None:
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        return
    exchange.status = int(status_line[1])
    exchange.reason = status_line[2] if len(status_line) > 2 else ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        exchange.response_headers.append((name.strip(), value.strip()))
    length = exchange.header("content-length")
    if length and length.isdigit():
        body = body[: int(length)]
    elif (exchange.header("transfer-encoding") or "").lower() == "chunked":
        body = _dechunk(body)
    exchange.response_body = body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, sep, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if not sep or size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out
