"""The runner's account server (seed 004's "Server").

The key server under test asks it `POST /v1/validate {"user_id", "access_token"}` for
every authenticated request, and `GET /v1/secret?sub=<user_id>` -> {"secret": base64url}
for the account server's secret share of a lock-layering user (404 if it holds none).
The runner mints users and tokens on demand, can expire a token (then it answers
valid=false) and can make it answer badly for one token, so the
checks control every authentication outcome on any implementation configured to trust
this server. It runs in a background thread on loopback, in memory only, and records
every exchange the server under test has with it (the run's traces show them).

`python -m keyflows.conformance.account --listen HOST:PORT --state FILE` serves the
tokens and shares a run saved (--save-exchanges), so a replayed request carries a token
the server under test can still validate.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyflows.conformance.edv import RunnerVaults, vault_routes
from keyflows.conformance.parties import ASGIApp, ExchangeLog, Message, Scope, recording
from keyflows.conformance.redaction import remember_secret
from keyflows.conformance.witness import WITNESS_PATH, RunnerWitness

START_TIMEOUT_S = 10.0
ACCOUNT_PARTY = "account-server"


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
    bad_status: int = 200
    """With bad_answer: the status it is sent with; 0 breaks the connection mid-answer."""


class AccountStore:
    """Users and tokens in memory, and a log of validate calls (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._calls: list[ValidateCall] = []
        self._shares: dict[str, str] = {}
        self._share_requests: list[str] = []
        self.log = ExchangeLog(ACCOUNT_PARTY)
        """What the server under test asked this account server, exchange by exchange."""
        # The runner's encrypted data vault is served here too (lock-layering, LOCK-34).
        self.vaults = RunnerVaults()
        self.url = ""  # set once the server listens
        # The runner also plays a transparency-log witness at /witness (hashchain flow).
        self.witness = RunnerWitness()

    def mint(self, user_id: str, token: str | None = None) -> str:
        """A valid token of `user_id`: a fresh random one, or `token` (which a check picks
        for its length or alphabet)."""
        token = token if token is not None else secrets.token_urlsafe(24)
        remember_secret(token)
        with self._lock:
            self._tokens[token] = _Token(user_id=user_id)
        return token

    def validate_calls(self) -> int:
        """How many validate calls arrived so far (well-formed or not)."""
        with self._lock:
            return len(self._calls)

    def export_state(self) -> dict[str, Any]:
        """Tokens and shares as JSON data (for a replay's account server)."""
        with self._lock:
            tokens = {t: {k: v.decode("latin-1") if isinstance(v, bytes) else v
                          for k, v in asdict(e).items()} for t, e in self._tokens.items()}
            return {"tokens": tokens, "shares": dict(self._shares)}

    def import_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            for token, entry in state.get("tokens", {}).items():
                bad = entry.get("bad_answer")
                self._tokens[token] = _Token(user_id=entry["user_id"],
                                             expired=bool(entry.get("expired")),
                                             bad_answer=bad.encode("latin-1")
                                             if isinstance(bad, str) else None,
                                             bad_status=int(entry.get("bad_status", 200)))
            self._shares.update(state.get("shares", {}))

    def expire(self, token: str) -> None:
        with self._lock:
            self._tokens[token].expired = True

    def answer_badly(self, token: str, body: bytes, status: int = 200) -> None:
        """Answer validate calls for this token with `body` and `status` instead; status 0
        announces `body` and more, sends `body`, then breaks the connection."""
        with self._lock:
            self._tokens[token].bad_answer = body
            self._tokens[token].bad_status = status

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
        remember_secret(share)
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

    def validate(self, user_id: object, access_token: object,
                 ) -> tuple[bool, bytes | None, int]:
        """(valid, the bad answer to send instead or None, its status)."""
        with self._lock:
            entry = self._tokens.get(access_token) if isinstance(access_token, str) else None
            bad = entry.bad_answer if entry else None
            valid = bool(entry and not entry.expired and entry.user_id == user_id
                         and bad is None)
            self._calls.append(ValidateCall(user_id, access_token, valid))
        return valid, bad, entry.bad_status if entry else 200


class AnswerBroken(Exception):
    """Raised on purpose by BrokenAnswer; not logged (see _QuietBrokenAnswers)."""


class _QuietBrokenAnswers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AnswerBroken))


logging.getLogger("uvicorn.error").addFilter(_QuietBrokenAnswers())


class BrokenAnswer(Response):
    """Announces a longer body than it sends, then fails: the connection breaks."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body, media_type="application/json")
        self.headers["content-length"] = str(len(body) + 64)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        raise AnswerBroken("the account server breaks this answer on purpose")


def create_app(store: AccountStore) -> ASGIApp:
    async def validate(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        valid, bad_answer, status = store.validate(body.get("user_id"), body.get("access_token"))
        if bad_answer is not None and status == 0:
            return BrokenAnswer(bad_answer)
        if bad_answer is not None:
            return Response(bad_answer, status_code=status, media_type="application/json")
        return JSONResponse({"valid": valid})

    async def secret(request: Request) -> Response:
        subs = request.query_params.getlist("sub")
        if len(subs) != 1:
            return JSONResponse({"error": "exactly one sub"}, status_code=400)
        share = store.share(subs[0])
        if share is None:
            return JSONResponse({"error": "no secret for this subject"}, status_code=404)
        return JSONResponse({"secret": share})

    async def add_checkpoint(request: Request) -> Response:
        answer = store.witness.add_checkpoint(await request.body())
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    accounts = recording(Starlette(routes=[Route("/v1/validate", validate, methods=["POST"]),
                                           Route("/v1/secret", secret, methods=["GET"])]),
                         store.log)
    # The runner's vault (lock-layering step 12) answers under /edvs/ with its own log.
    vaults = recording(Starlette(routes=vault_routes(store.vaults)), store.vaults.log)
    # The runner's witness (hashchain flow) answers under /witness/ with its own log.
    witness = recording(Starlette(routes=[Route(f"{WITNESS_PATH}/add-checkpoint",
                                                add_checkpoint, methods=["POST"])]),
                        store.witness.log)

    async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
                  send: Callable[[Message], Awaitable[None]]) -> None:
        path = str(scope.get("path", ""))
        party = (vaults if path.startswith("/edvs/")
                 else witness if path.startswith(f"{WITNESS_PATH}/") else accounts)
        await party(scope, receive, send)

    return app


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
        self.store.url = self.url
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


def main(argv: list[str] | None = None) -> int:
    """Serve saved tokens and shares until interrupted (a replay's account server)."""
    parser = argparse.ArgumentParser(prog="python -m keyflows.conformance.account",
                                     description=main.__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    parser.add_argument("--state", type=Path, metavar="FILE",
                        help="accounts.json written by --save-exchanges")
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        server = AccountServer(host, port)
        if args.state is not None:
            server.store.import_state(json.loads(args.state.read_text(encoding="utf-8")))
        server.start()
    except (AccountServerError, OSError, ValueError) as exc:
        print(f"account server: {exc}", file=sys.stderr)
        return 2
    print(f"account server: {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
