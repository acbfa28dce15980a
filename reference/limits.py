"""The reference server's limits: body size (API-5), body deadline and connection handling
around an unread body (API-50, API-53), rate limits and quotas (API-51, API-52, API-54).

What each flow calls (keep these hooks small; the mechanism lives here):

    await rate_limit(request, ("challenge-create", requester(request)))
    await rate_limit(request, ("keyinit-fetch", who), ("keyinit-fetch-identity", who, identity))
    raise quota_exceeded("queue-per-device", retry_after=...)   # from a store's count

A declared Content-Length over the limit is refused before a byte of the body is read;
otherwise the body is read chunk by chunk and reading stops at the first chunk that
takes the total past the limit, so a client can never make the server buffer more than
the limit plus one network chunk.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyflows.reference.problems import Problem, malformed
from keyflows.reference.store import Database
from keyflows.spec import limits as spec

# --- body size (API-5) ------------------------------------------------------------------------


def too_large(limit: int) -> Problem:
    return Problem("too-large", f"the request body exceeds the limit of {limit} bytes",
                   requirement="API-5")


def declared_length(request: Request) -> int | None:
    """The Content-Length header, None when absent."""
    values = request.headers.getlist("content-length")
    if not values:
        return None
    text = values[0].strip()
    if len(set(values)) != 1 or not (text.isascii() and text.isdigit()):
        raise malformed("the Content-Length header is not a single decimal number")
    return int(text)


def _framing_headers(scope: Scope) -> bool:
    """Whether the request has a Content-Length or Transfer-Encoding header (one pass over
    the raw header list: most requests, the bodiless GETs, have neither)."""
    return any(name == b"content-length" or name == b"transfer-encoding"
               for name, _ in scope["headers"])


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or Problem 413 once it is known to exceed `limit` bytes."""
    if not _framing_headers(request.scope):
        return b""  # RFC 9112 section 6.3: a request without either has no body
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    if declared is None and "transfer-encoding" not in request.headers:
        return b""  # as above (a Content-Length alone is handled here)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


# --- body deadline and unread bodies (API-50, API-53) ------------------------------------------

class BodyTimeout(Problem):
    def __init__(self, seconds: float, min_rate: int) -> None:
        super().__init__("request-timeout",
                         f"the request body did not arrive within {seconds:g} s, nor at "
                         f"{min_rate} bytes/s on average after that",
                         requirement="API-53", headers={"Connection": "close"})


def _expects_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


class BodyGuard:
    """ASGI middleware for requests that carry a body:

    - the body must arrive within `body_timeout` seconds of the request's start, or go
      on arriving at `body_min_rate` bytes/s on average after that (the spec's
      body_allowance), else the read raises BodyTimeout (answered 408, connection
      closed): a large upload at an honest pace goes on, a trickled body is cut;
    - an answer sent before the body was read in full carries `Connection: close`, so a
      client refused early (401, 413, 429) cannot go on streaming into the connection."""

    def __init__(self, app: ASGIApp, *, body_timeout: int, body_min_rate: int) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _expects_body(scope):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        body_read = False

        async def guarded_receive() -> Message:
            nonlocal body_read, received
            if body_read:
                return await receive()
            deadline = started + spec.body_allowance(received, body_timeout=self.body_timeout,
                                                     body_min_rate=self.body_min_rate)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BodyTimeout(self.body_timeout, self.body_min_rate) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            received += len(message.get("body", b""))
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)


# --- requesters, rate limits and quotas (API-51, API-52, API-54) -------------------------------

def requester(request: Request) -> str:
    """Who is asking, for limits counted per requester (API-54): the client's address
    (uvicorn puts a trusted proxy's X-Forwarded-For there), an IPv6 one by its /64."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def too_many(detail: str, retry_after: int, *, requirement: str = "API-51") -> Problem:
    return Problem("too-many-requests", detail, requirement=requirement,
                   headers={"Retry-After": str(max(1, int(retry_after)))})


def quota_exceeded(name: str, limit: int, *, retry_after: int = 60) -> Problem:
    """A quota is full (API-51): nothing was stored; try again once space is freed."""
    return too_many(f"quota {name} of {limit} is reached", retry_after, requirement="API-54")


RATE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rate_buckets (
        bucket TEXT PRIMARY KEY,
        tat BIGINT NOT NULL
    )""",
)
_PURGE_EVERY = 1024  # admissions between two sweeps of full buckets


class RateLimiter:
    """Token buckets in the database, shared by every process serving it (API-52).

    One row per bucket holds its theoretical arrival time; each decision is the spec's
    (limits.admit) inside one write transaction, so two processes cannot both take the
    last token. Rows of buckets that are full again are swept now and then."""

    def __init__(self, db: Database, rates: Mapping[str, spec.Rate],
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.rates = dict(rates)
        self.clock = clock
        self._since_purge = 0
        with db.write() as tx:
            for statement in RATE_SCHEMA:
                tx.execute(statement)

    def take(self, *buckets: tuple[str, ...]) -> spec.Admission:
        """Take one token from each bucket (name, *key), all or none: the request is
        admitted only if every bucket has a token, and a refusal changes no bucket
        (API-51). Refused, the longest wait of the buckets that refused."""
        now = self.clock()
        keys = [("\x1f".join(bucket), self.rates[bucket[0]]) for bucket in buckets]
        with self.db.write() as tx:
            decisions = []
            for key, rate in keys:
                row = tx.execute("SELECT tat FROM rate_buckets WHERE bucket = ?",
                                 (key,)).fetchone()
                decisions.append(spec.admit(None if row is None else int(row[0]),
                                            now=now, rate=rate))
            refused = [d.retry_after for d in decisions if not d.admitted]
            if refused:
                return spec.Admission(False, 0, max(refused))
            for (key, _), decision in zip(keys, decisions, strict=True):
                tx.execute("INSERT INTO rate_buckets (bucket, tat) VALUES (?, ?)"
                           " ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat",
                           (key, decision.tat))
            self._sweep(tx, now)
        return spec.Admission(True, 0)

    def _sweep(self, tx: sqlite3.Connection, now: float) -> None:
        self._since_purge += 1
        if self._since_purge >= _PURGE_EVERY:
            self._since_purge = 0
            tx.execute("DELETE FROM rate_buckets WHERE tat <= ?", (int(now * spec.MICROS),))


def limiter(request: Request) -> RateLimiter:
    found = request.app.state.rate_limiter
    assert isinstance(found, RateLimiter)
    return found


async def rate_limit(request: Request, *buckets: tuple[str, ...]) -> None:
    """Take a token from each bucket `(name, *key)` (all or none), else Problem 429 with
    Retry-After (API-51). Call it before reading the body: a refused request costs
    nothing more."""
    rates = limiter(request)
    decision = await run_in_threadpool(rates.take, *buckets)
    if not decision.admitted:
        names = ", ".join(sorted({bucket[0] for bucket in buckets}))
        raise too_many(f"rate limit reached ({names})", decision.retry_after)


def capabilities_member(settings: Any) -> dict[str, Any]:
    """The `limits` member of /v1/capabilities (API-52, API-53)."""
    return spec.limits_to_wire(
        max_body_bytes=settings.max_body_bytes,
        deadlines={"header_timeout_seconds": int(settings.header_timeout),
                   "body_timeout_seconds": int(settings.body_timeout),
                   "idle_timeout_seconds": int(settings.idle_timeout)},
        rates=settings.rates, quotas=settings.quotas, body_min_rate=settings.body_min_rate)
