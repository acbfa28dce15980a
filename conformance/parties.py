"""The other parties the runner plays (its account server; later a log witness, a data
vault): each keeps every exchange the server under test has with it, so a check's trace
shows them between the runner's own requests.

A party's HTTP app is wrapped with `recording(app, log, party)`; the session lists each
party's ExchangeLog, and the runner gives every check the exchanges that started while it
ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from keyflows.conformance.http import Exchange
from keyflows.conformance.redaction import SECRETS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]


class ExchangeLog:
    """Exchanges a party had with the server under test (thread-safe)."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    def record(self, exchange: Exchange) -> None:
        SECRETS.learn_body(exchange.request_body, "json")
        SECRETS.learn_body(exchange.response_body, "json")
        with self._lock:
            self._exchanges.append(exchange)

    def since(self, started: float) -> list[Exchange]:
        """Exchanges that started at or after `started` (a time.monotonic() value)."""
        with self._lock:
            return [e for e in self._exchanges if e.started >= started]

    def forget_before(self, before: float) -> None:
        """Drop exchanges that started before `before` (bounded memory over a run)."""
        with self._lock:
            self._exchanges = [e for e in self._exchanges if e.started >= before]


def recording(app: ASGIApp, log: ExchangeLog) -> ASGIApp:
    """Wrap a party's app so every HTTP exchange lands in `log` as an Exchange."""

    async def wrapped(scope: Scope, receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.monotonic()
        request_body = bytearray()
        answer: dict[str, Any] = {"status": 0, "headers": [], "body": bytearray()}

        async def receive_recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [(k.decode("latin-1"), v.decode("latin-1"))
                                     for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                answer["body"].extend(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive_recorded, send_recorded)
        finally:
            host, port = scope.get("server") or ("127.0.0.1", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            url = f"http://{host}:{port}{scope['path']}" + (f"?{query}" if query else "")
            headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in scope.get("headers", [])]
            log.record(Exchange(
                method=scope["method"], url=url, sent_headers=dict(headers),
                request_headers=headers, request_body=bytes(request_body),
                status=answer["status"], reason="", response_headers=answer["headers"],
                response_body=bytes(answer["body"]), started=started,
                elapsed_ms=(time.monotonic() - started) * 1000, party=log.party))

    return wrapped
