"""Test helpers that start real servers on loopback (a plain module, not a conftest).

- `start_account_server()`: an in-memory account server (seed 004's "Server") answering
  `POST /v1/validate` as the contract describes; it mints users and tokens on demand.
- `start_reference_server(...)`: the reference key server (`create_app`) under uvicorn in a
  background thread on 127.0.0.1 with an ephemeral port.

Other test modules (the conformance runner's included) import these; keep the API stable.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from keyflows.reference.app import create_app
from keyflows.reference.config import DEFAULT_MAX_BODY_BYTES, Settings
from keyflows.reference.server_lock import ServerLockSettings
from keyflows.reference.serving import uvicorn_config

ASGIApp = Callable[..., Any]

# Answers of a misbehaving account server, each 200 unless the mode says otherwise; a
# lenient client would read several of them as a grant.
BAD_ANSWERS: dict[str, bytes] = {
    "bad-json": b'{"valid": tru',
    "no-valid-member": b'{"ok": true}',
    "duplicate-valid": b'{"valid": false, "valid": true}',
    "valid-not-bool": b'{"valid": 1}',
    "valid-string": b'{"valid": "true"}',
    "nan-member": b'{"valid": true, "x": NaN}',
    "not-utf8": b'{"valid": true, "x": "\xff"}',
    "array": b'[{"valid": true}]',
    "oversized": b'{"valid": true, "pad": "' + b"a" * 70_000 + b'"}',
}
FAILURE_MODES = (None, "status-500", *BAD_ANSWERS)


@dataclass
class _Token:
    user_id: str
    expired: bool = False


@dataclass
class AccountServer:
    """An in-memory account server running in a thread.

    `failure_mode` makes every answer go wrong (to test the key server's 503):
    "status-500", "bad-json" or "no-valid-member"; None answers normally.
    `validations` records every (user_id, access_token) asked, in order.
    """

    url: str
    _httpd: ThreadingHTTPServer
    _thread: threading.Thread
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    validations: list[tuple[str, str]] = field(default_factory=list)
    failure_mode: str | None = None
    shares: dict[str, str] = field(default_factory=dict)
    """lock-layering: the account server's secret share per user (GET /v1/secret)."""

    def mint(self, user_id: str | None = None) -> tuple[str, str]:
        """A fresh token for `user_id` (a new random user when None)."""
        user = user_id if user_id is not None else "user-" + secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(user)
        return user, token

    def expire(self, token: str) -> None:
        """From now on the account server answers valid=false for this token."""
        with self._lock:
            self._tokens[token].expired = True

    def is_valid(self, user_id: object, token: object) -> bool:
        with self._lock:
            entry = self._tokens.get(token) if isinstance(token, str) else None
            return entry is not None and not entry.expired and entry.user_id == user_id

    def record(self, user_id: object, token: object) -> None:
        with self._lock:
            self.validations.append((str(user_id), str(token)))

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _account_handler(server: list[AccountServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # silence test output
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            """GET /v1/secret?sub=<user_id> -> {"secret": base64url}, 404 if none."""
            path, _, query = self.path.partition("?")
            subs = parse_qs(query).get("sub", [])
            if path != "/v1/secret" or len(subs) != 1:
                self._answer(404, b'{"error":"not found"}')
                return
            with server[0]._lock:
                share = server[0].shares.get(subs[0])
            if share is None:
                self._answer(404, b'{"error":"no secret for this subject"}')
                return
            self._answer(200, json.dumps({"secret": share}).encode())

        def do_POST(self) -> None:
            account = server[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v1/validate":
                self._answer(404, b'{"error":"not found"}')
                return
            try:
                request = json.loads(raw)
                user_id, token = request["user_id"], request["access_token"]
            except (ValueError, KeyError, TypeError):
                self._answer(400, b'{"error":"bad request"}')
                return
            account.record(user_id, token)
            mode = account.failure_mode
            if mode == "status-500":
                self._answer(500, b'{"error":"boom"}')
            elif mode in BAD_ANSWERS:
                self._answer(200, BAD_ANSWERS[mode])
            else:
                answer = {"valid": account.is_valid(user_id, token)}
                self._answer(200, json.dumps(answer).encode())

    return Handler


class _AccountHTTPServer(ThreadingHTTPServer):
    request_queue_size = 1024  # a key server under load may open many connections at once


def start_account_server() -> AccountServer:
    holder: list[AccountServer] = []
    httpd = _AccountHTTPServer(("127.0.0.1", 0), _account_handler(holder))
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="account-server", daemon=True)
    account = AccountServer(url=f"http://127.0.0.1:{port}", _httpd=httpd, _thread=thread)
    holder.append(account)
    thread.start()
    return account


@dataclass
class RunningServer:
    url: str
    settings: Settings
    _server: uvicorn.Server
    _thread: threading.Thread
    app_state: Any = None
    """The reference app's state (its stores), for tests that look inside."""

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise RuntimeError("reference server did not stop")


TEST_LIMITS: dict[str, Any] = {"header_timeout": 2, "body_timeout": 2, "idle_timeout": 2,
                               "quotas": {"queue-per-device": 30, "queue-per-sender": 12}}
"""Test values of the limits (as the embedded server uses): deadlines the runner waits out
in seconds and quotas it fills with a few envelopes. `defaults=True` keeps the real ones."""


def start_reference_server(account_url: str, db_path: str | Path, *,
                           app_wrapper: Callable[[ASGIApp], ASGIApp] | None = None,
                           max_body_bytes: int | None = None,
                           server_lock: ServerLockSettings | None = None,
                           defaults: bool = False, **fields: Any) -> RunningServer:
    """Run create_app under uvicorn in a thread; returns once it accepts connections.
    Extra keyword arguments are Settings fields (limits, deadlines), over TEST_LIMITS
    unless `defaults`."""
    fields = {**({} if defaults else TEST_LIMITS), **fields}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = Settings(
        host="127.0.0.1", port=port, db_path=Path(db_path), account_server=account_url,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes,
        server_lock=server_lock, **fields,
    )
    try:
        starlette_app = create_app(settings)
        app_state = starlette_app.state
        app: ASGIApp = starlette_app if app_wrapper is None else app_wrapper(starlette_app)
    except BaseException:
        sock.close()
        raise
    config = uvicorn_config(app, settings, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"reference-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("reference server failed to start")
        time.sleep(0.01)
    return RunningServer(url=f"http://127.0.0.1:{port}", settings=settings, _server=server,
                         _thread=thread, app_state=app_state)
