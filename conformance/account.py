"""The runner's account server (seed 004's "Server").

The key server under test asks it `POST /v1/validate {"user_id", "access_token"}` for
every authenticated request, and `GET /v1/secret?sub=<user_id>` -> {"secret": base64url}
for the account server's secret share of a lock-layering user (404 if it holds none).
The runner mints users and tokens on demand, can expire a token (then it answers
valid=false) and can make it answer badly for one token, so the
checks control every authentication outcome on any implementation configured to trust
this server. It runs in a background thread on loopback, in memory only.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

START_TIMEOUT_S = 10.0


class AccountServerError(Exception):
    """The account server could not start (bad address, port in use)."""


@dataclass(frozen=True)
class ValidateCall:
    user_id: object
    access_token: object
    answered_valid: bool


@dataclass
class _Token:
    user_id: str
    expired: bool = False
    bad_answer: bytes | None = None


class AccountStore:
    """Users and tokens in memory, and a log of validate calls (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._calls: list[ValidateCall] = []
        self._shares: dict[str, str] = {}
        self._share_requests: list[str] = []

    def mint(self, user_id: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(user_id=user_id)
        return token

    def expire(self, token: str) -> None:
        with self._lock:
            self._tokens[token].expired = True

    def answer_badly(self, token: str, body: bytes) -> None:
        """Answer validate calls for this token with `body` (status 200) instead."""
        with self._lock:
            self._tokens[token].bad_answer = body

    def describe_token(self, token: str) -> str:
        """What a token is, for reproducer hints: whose, and whether still valid."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return "a token the account server never issued"
        state = "expired" if entry.expired else "valid"
        if entry.bad_answer is not None:
            state = "badly answered"
        return f"a {state} token of user {entry.user_id}"

    def set_share(self, user_id: str, share: str) -> None:
        """Hold `share` (base64url) as the account server's secret share of the user."""
        with self._lock:
            self._shares[user_id] = share

    def share(self, sub: str) -> str | None:
        with self._lock:
            self._share_requests.append(sub)
            return self._shares.get(sub)

    def share_requests(self) -> list[str]:
        """The `sub` of every GET /v1/secret, in order."""
        with self._lock:
            return list(self._share_requests)

    def calls(self) -> list[ValidateCall]:
        with self._lock:
            return list(self._calls)

    def validate(self, user_id: object, access_token: object) -> tuple[bool, bytes | None]:
        with self._lock:
            entry = self._tokens.get(access_token) if isinstance(access_token, str) else None
            bad = entry.bad_answer if entry else None
            valid = bool(entry and not entry.expired and entry.user_id == user_id
                         and bad is None)
            self._calls.append(ValidateCall(user_id, access_token, valid))
        return valid, bad


def create_app(store: AccountStore) -> Starlette:
    async def validate(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        valid, bad_answer = store.validate(body.get("user_id"), body.get("access_token"))
        if bad_answer is not None:
            return Response(bad_answer, media_type="application/json")
        return JSONResponse({"valid": valid})

    async def secret(request: Request) -> Response:
        subs = request.query_params.getlist("sub")
        if len(subs) != 1:
            return JSONResponse({"error": "exactly one sub"}, status_code=400)
        share = store.share(subs[0])
        if share is None:
            return JSONResponse({"error": "no secret for this subject"}, status_code=404)
        return JSONResponse({"secret": share})

    return Starlette(routes=[Route("/v1/validate", validate, methods=["POST"]),
                             Route("/v1/secret", secret, methods=["GET"])])


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise AccountServerError(f"--account-listen must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class AccountServer:
    """Serves the account store over HTTP from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = AccountStore()
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise AccountServerError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}") from exc
        port = sock.getsockname()[1]
        shown_host = f"[{self._host}]" if family == socket.AF_INET6 else self._host
        self.url = f"http://{shown_host}:{port}"
        config = uvicorn.Config(create_app(self.store), log_level="error", lifespan="off",
                                access_log=False)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="keyflows-account-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AccountServerError(f"account server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mint(self, user_id: str) -> str:
        return self.store.mint(user_id)

    def expire(self, token: str) -> None:
        self.store.expire(token)
