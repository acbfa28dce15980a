"""Limit checks: credentials before the body (API-50), the advertised limits (API-52),
connection deadlines (API-53), rate limits and quotas (API-51, API-54).

Every check reads the limits the server advertises and drives them with exactly those
values, so a server run with small test values is checked quickly; the rate checks run
last in their flow, since they leave a bucket of the runner's requester empty.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

# The flows' own check modules register first: the rate checks below run after them.
from keyflows.conformance.checks import envelope as env_checks
from keyflows.conformance.checks import hashchain_support as hc_support
from keyflows.conformance.checks import hashchain_uid as hc_uid_checks
from keyflows.conformance.checks import session_challenge as _session_challenge  # noqa: F401
from keyflows.conformance.checks import session_challenge_pq as _session_challenge_pq  # noqa: F401
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import JSON_HEADERS, CheckSkipped, Probe, keypair_path
from keyflows.conformance.registry import check
from keyflows.spec import envelope as E
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import limits as spec
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError

MAX_DEADLINE_WAITED = 60
"""The longest advertised deadline the runner waits out (seconds)."""
MAX_REQUESTS_DRIVEN = 2500
"""The most requests a rate or quota check sends to reach a limit."""
MAX_RETRY_WAITED = 5
"""The longest Retry-After the runner waits out to see the request admitted again."""
INVALID_TOKEN = "invalid-token-for-the-limits-checks"


def advertised(t: Probe) -> spec.Limits:
    caps = t.session.capabilities or {}
    try:
        return spec.parse_limits(caps.get("limits"))
    except SpecError as exc:
        t.fail(f"capabilities member limits: {exc}",
               expected="limits: max_body_bytes, header/body/idle_timeout_seconds, rates "
                        "{name: {capacity, window_seconds, per}}, quotas {name: {limit, per}}",
               actual=repr(caps.get("limits"))[:300])


@check("common/limits/advertised", requirements=("API-7", "API-52", "API-53"), needs=())
def limits_advertised(t: Probe) -> None:
    """The capabilities advertise the body limit, the three connection deadlines and every
    rate limit and quota in the documented shape."""
    limits = advertised(t)
    missing = [name for name in spec.DEADLINES if name not in limits.deadlines]
    if limits.body_min_rate is None:
        missing.append(spec.BODY_MIN_RATE)
    if missing:
        t.fail(f"capabilities limits lack {', '.join(missing)} (API-53)",
               expected=", ".join((*spec.DEADLINES, spec.BODY_MIN_RATE)),
               actual=", ".join(sorted(limits.deadlines)))


# --- API-50 ---------------------------------------------------------------------------------

def raw_connection(t: Probe, timeout: float) -> socket.socket:
    parts = urlsplit(t.session.base_url)
    if parts.scheme != "http":
        raise CheckSkipped("the runner drives raw connections over plain http only")
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                    timeout=timeout)
    return sock


def request_head(t: Probe, method: str, path: str, headers: dict[str, str]) -> bytes:
    host = urlsplit(t.session.base_url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# A raw connection keeps the first bytes of what the server sends (a status line, headers,
# a problem document) and reads the rest only to see when the server closes: a hostile
# server streaming without end costs the runner this much, not the stream.
WATCH_CAP = 65536


@dataclass
class Watched:
    """What a raw connection saw: the first WATCH_CAP bytes the server sent and when it
    closed."""

    answer: bytes = b""
    closed_after: float | None = None

    @property
    def status(self) -> int:
        line = self.answer.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def watch(sock: socket.socket, *, budget: float, trickle: bytes = b"",
          every: float = 0.5) -> Watched:
    """Read until the server closes or `budget` seconds pass, sending one byte of
    `trickle` every `every` seconds meanwhile (a slowloris client)."""
    seen = Watched()
    started = time.monotonic()
    pending = trickle
    try:
        while time.monotonic() - started < budget:
            sock.settimeout(every if pending else max(0.05, budget - (time.monotonic() - started)))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                seen.closed_after = time.monotonic() - started
                return seen
            if chunk and len(seen.answer) < WATCH_CAP:
                seen.answer += chunk[:WATCH_CAP - len(seen.answer)]
            if pending and chunk is None:
                sock.sendall(pending[:1])
                pending = pending[1:]
    except OSError:  # reset, or a send after the server closed: closed
        seen.closed_after = time.monotonic() - started
    finally:
        sock.close()
    return seen


@check("common/limits/credentials-before-body", requirements=("API-50", "API-4"))
def credentials_before_body(t: Probe) -> None:
    """A request with a refused token that declares a body within max_body_bytes, and sends
    one byte of it, is answered 401 at once, and the connection is then closed."""
    limits = advertised(t)
    user = t.user("cbb")
    path = keypair_path(user.user_id, "app")
    declared = limits.max_body_bytes
    exchange = t.send_declared_length(
        "PUT", path, {"Authorization": f"Bearer {INVALID_TOKEN}", **JSON_HEADERS},
        declared=declared, sent=b"{", deadline_s=5.0)
    if exchange.status == 0:
        t.fail(f"PUT with a refused token declaring Content-Length {declared} got no answer "
               f"within 5 s while the body was withheld: the server reads the body before "
               f"it checks the credentials", expected="401 at once", actual="no answer",
               exchange=exchange)
    t.expect_rejected(exchange, 401, what=f"PUT with a refused token declaring {declared} "
                                          f"bytes and sending one")
    # The same on a kept-alive connection: after the 401 the server must close it.
    sock = raw_connection(t, 5.0)
    sock.sendall(request_head(t, "PUT", path, {"Authorization": f"Bearer {INVALID_TOKEN}",
                                               "Content-Type": "application/json",
                                               "Content-Length": str(declared)}) + b"{")
    seen = watch(sock, budget=5.0)
    if seen.status != 401 or seen.closed_after is None:
        t.fail("a kept-alive connection refused with 401 before its body was read was not "
               "closed within 5 s (a client could stream its whole body into it)",
               expected="401, then the connection closed",
               actual=f"status {seen.status or 'none'}, "
                      f"{'closed' if seen.closed_after is not None else 'still open'}")


# --- framing refused by the HTTP layer (API-2, RFC 9112 section 6.3) --------------------------

BAD_FRAMINGS = {
    "a Content-Length that is not a number": (("Content-Length", "abc"),),
    "a negative Content-Length": (("Content-Length", "-1"),),
    "two different Content-Length headers": (("Content-Length", "1"), ("Content-Length", "2")),
}


def framing_problem(answer: bytes) -> str | None:
    """What is wrong with a raw answer that should be a 400 problem, None if nothing."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split()
    if len(status) < 2 or status[1] != b"400":
        return f"status line {lines[0][:60]!r}, not 400"
    types = [line.split(b":", 1)[1].strip().lower() for line in lines[1:]
             if line.lower().startswith(b"content-type:")]
    if not types or not types[0].startswith(b"application/problem+json"):
        return f"content type {types[0] if types else b'none'!r}, not application/problem+json"
    try:
        problem = json.loads(body)
    except ValueError:
        return f"a body that is not JSON: {body[:60]!r}"
    if not isinstance(problem, dict) or problem.get("type") != "urn:keyflows:problem:malformed":
        return f"problem type {problem.get('type') if isinstance(problem, dict) else problem!r}"
    return None


@check("common/http/framing", requirements=("API-2", "API-6"), needs=())
def framing(t: Probe) -> None:
    """A request whose Content-Length is not one decimal number, or is given twice with
    different values, is answered 400 problem+json of type malformed (RFC 9112 section
    6.3 asks for 400 and a closed connection; API-2 for a problem), not the HTTP
    library's plain-text page."""
    path = keypair_path("framing-user", "app")
    for what, headers in BAD_FRAMINGS.items():
        sock = raw_connection(t, 5.0)
        head = request_head(t, "PUT", path, {"Content-Type": "application/json"})
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
        sock.sendall(head[:-2] + extra + b"\r\n" + b"{}")
        seen = watch(sock, budget=5.0)
        wrong = framing_problem(seen.answer)
        if wrong is not None:
            t.fail(f"a request with {what} was not answered 400 problem+json (API-2): {wrong}",
                   expected="400, application/problem+json, type urn:keyflows:problem:malformed",
                   actual=repr(seen.answer[:200]) if seen.answer else "no answer")


# --- API-53 -------------------------------------------------------------------------------

def slack(seconds: int) -> float:
    """How late a deadline may close a connection (a loaded machine, a slow network)."""
    return max(2.0, seconds * 0.25)


@check("common/limits/deadlines", requirements=("API-53",))
def deadlines(t: Probe) -> None:
    """Idle, slowloris (headers trickled byte by byte), slow-body and idle kept-alive
    connections are closed within the advertised deadlines; a request cut by a deadline
    is answered 408 problem+json or not at all; a body sent at twice the advertised
    minimum rate for longer than the body timeout is read and answered (when it fits in
    max_body_bytes)."""
    limits = advertised(t)
    header = limits.deadlines.get("header_timeout_seconds")
    body = limits.deadlines.get("body_timeout_seconds")
    idle = limits.deadlines.get("idle_timeout_seconds")
    if header is None or body is None or idle is None:
        t.fail("the capabilities do not advertise the connection deadlines (API-53)",
               expected=", ".join(spec.DEADLINES), actual=str(limits.deadlines))
    longest = max(header, body, idle)
    if longest > MAX_DEADLINE_WAITED:
        raise CheckSkipped(f"an advertised deadline is {longest} s; the runner waits out at "
                           f"most {MAX_DEADLINE_WAITED} s")
    user = t.user("slow")
    put = request_head(t, "PUT", keypair_path(user.user_id, "app"),
                       {"Authorization": f"Bearer {user.token}",
                        "Content-Type": "application/json", "Content-Length": "200"})

    def idle_connection() -> Watched:
        return watch(raw_connection(t, 5.0), budget=header + slack(header))

    def slowloris() -> Watched:
        sock = raw_connection(t, 5.0)
        trickle = request_head(t, "GET", "/v1/capabilities", {"X-Padding": "a" * 200})
        return watch(sock, budget=header + slack(header), trickle=trickle,
                     every=min(0.5, header / 4))

    def slow_body() -> Watched:
        sock = raw_connection(t, 5.0)
        sock.sendall(put + b"{")
        return watch(sock, budget=body + slack(body) + 2.0)  # + the account server's time

    min_rate = limits.body_min_rate
    steady_seconds = body + 2.0
    steady_bytes = int(2 * (min_rate or 0) * steady_seconds)

    def steady_body() -> Watched:
        """A body sent at twice the advertised minimum rate for longer than the body
        timeout: it must be read and answered, not cut."""
        padding = b"a" * max(0, steady_bytes - len(b'{"padding":""}'))
        payload = b'{"padding":"' + padding + b'"}'
        sock = raw_connection(t, 5.0)
        head = request_head(t, "PUT", keypair_path(user.user_id, "steady"),
                            {"Authorization": f"Bearer {user.token}",
                             "Content-Type": "application/json",
                             "Content-Length": str(len(payload))})
        started = time.monotonic()
        try:
            sock.sendall(head)
            pieces = 20
            for i in range(pieces):
                part = payload[i * len(payload) // pieces:(i + 1) * len(payload) // pieces]
                time.sleep(max(0.0, started + i * steady_seconds / pieces - time.monotonic()))
                sock.sendall(part)
        except OSError:
            seen = Watched()
            seen.closed_after = time.monotonic() - started
            sock.close()
            return seen
        seen = Watched()
        sock.settimeout(5.0)
        try:
            while b"\r\n\r\n" not in seen.answer and len(seen.answer) < WATCH_CAP:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                seen.answer += chunk
        except OSError:
            pass
        finally:
            sock.close()
        return seen

    def idle_after_answer() -> Watched:
        sock = raw_connection(t, 5.0)
        sock.sendall(request_head(t, "GET", "/v1/capabilities", {}))
        seen = watch(sock, budget=idle + slack(idle) + 2.0)
        return seen

    probes = {"an idle connection": (idle_connection, header),
              "headers trickled byte by byte": (slowloris, header),
              "a body withheld after its first byte": (slow_body, body + 2),
              "a kept-alive connection idle after an answer": (idle_after_answer, idle + 2)}
    steady = "a body sent at twice the minimum rate for longer than the body timeout"
    fits = min_rate is not None and steady_bytes <= limits.max_body_bytes
    with ThreadPoolExecutor(max_workers=len(probes) + 1) as pool:
        futures = {what: pool.submit(probe) for what, (probe, _) in probes.items()}
        steady_future = pool.submit(steady_body) if fits else None
        results = {what: future.result() for what, future in futures.items()}
        steady_seen = steady_future.result() if steady_future is not None else None
    if steady_seen is not None and (steady_seen.status in (0, 408) or
                                    not steady_seen.answer):
        t.fail(f"{steady} ({steady_bytes} bytes in {steady_seconds:g} s) was cut: a body "
               f"that keeps body_min_rate_bytes_per_second past the body timeout must be "
               f"read (API-53)", expected="an answer to the request (any status but 408)",
               actual=repr(steady_seen.answer[:120]) if steady_seen.answer else
               "the connection closed without an answer")
    for what, seen in results.items():
        limit = probes[what][1]
        if seen.closed_after is None:
            t.fail(f"{what} was still open {limit + slack(limit):.0f} s later (API-53)",
                   expected=f"closed within {limit} s (+{slack(limit):.0f} s slack)",
                   actual=f"open; received {seen.answer[:80]!r}")
    for what in ("headers trickled byte by byte", "a body withheld after its first byte"):
        seen = results[what]
        if seen.answer and seen.status != 408:
            t.fail(f"{what}: the connection was answered {seen.status}, not 408",
                   expected="408 problem+json, or no answer", actual=repr(seen.answer[:120]))
        if seen.answer and b"application/problem+json" not in seen.answer.lower():
            t.fail(f"{what}: the 408 is not problem+json (API-2)",
                   expected="content-type application/problem+json",
                   actual=repr(seen.answer[:200]))


# --- API-51, API-52, API-54: rate limits ------------------------------------------------------

def expect_429(t: Probe, exchange: Exchange, rate: spec.Rate, *, what: str) -> int:
    """A 429 problem of type too-many-requests with a sane Retry-After; returns it."""
    t.expect_problem(exchange, 429, what=what, slug="too-many-requests")
    header = exchange.header("retry-after") or ""
    bound = int(rate.interval) + 2
    if not header.isdigit() or not 1 <= int(header) <= bound:
        t.fail(f"{what}: Retry-After is {header or 'missing'!r}", expected=f"whole seconds in "
               f"1..{bound} (one token refills every {rate.interval:g} s)",
               actual=repr(header), exchange=exchange)
    return int(header)


def rate_of(t: Probe, name: str) -> spec.Rate:
    found = advertised(t).rates.get(name)
    if found is None:
        raise CheckSkipped(f"the server advertises no rate limit {name!r}")
    if found.capacity + 1 > MAX_REQUESTS_DRIVEN:
        raise CheckSkipped(f"rate {name} has capacity {found.capacity}; the runner drives at "
                           f"most {MAX_REQUESTS_DRIVEN} requests")
    return found


Send = Callable[[int], Exchange]


def drive_to_refusal(t: Probe, rate: spec.Rate, send: Send, *, what: str,
                     exact: bool) -> Exchange:
    """Send until the first 429 and return it. The bucket refills while the runner sends,
    one token per rate.interval seconds, so the refusal must come within capacity + 1
    requests plus one per interval elapsed. With `exact` (a bucket no one used) the first
    `capacity` requests must all be admitted."""
    started = time.monotonic()
    count = 0
    while True:
        count += 1
        exchange = send(count)
        if exchange.status == 429:
            if exact and count <= rate.capacity:
                t.fail(f"{what}: request {count} was refused, within the advertised capacity "
                       f"{rate.capacity} of an unused bucket (API-52)",
                       expected=f"{rate.capacity} requests admitted", actual="429",
                       exchange=exchange)
            return exchange
        if exchange.status >= 500:
            t.expect_status(exchange, 200, what=what)
        refilled = int((time.monotonic() - started) / rate.interval)
        if count > rate.capacity + refilled:
            t.fail(f"{what}: {count} requests in {time.monotonic() - started:.1f} s were all "
                   f"admitted; the advertised bucket holds {rate.capacity} and refills one "
                   f"every {rate.interval:g} s (API-52)",
                   expected=f"429 by request {rate.capacity + refilled + 1}", actual="no 429",
                   exchange=exchange)


def admitted_after_wait(t: Probe, retry_after: int, send: Send, *, what: str) -> None:
    """API-51: after Retry-After seconds the same request is admitted (if the wait is short
    enough for the runner)."""
    if retry_after > MAX_RETRY_WAITED:
        return
    time.sleep(retry_after + 0.2)
    exchange = send(0)
    if exchange.status == 429:
        t.fail(f"{what}: refused again after waiting the Retry-After of {retry_after} s "
               f"(API-51)", expected="admitted", actual="429", exchange=exchange)


@check("session-challenge/limits/challenge-rate", requirements=("API-51", "API-52", "API-54"),
       needs=("session-challenge",))
def challenge_rate(t: Probe) -> None:
    """Challenge requests of one requester, for any users, are refused with 429 and a
    Retry-After once the advertised challenge-create bucket is empty, and admitted again
    after it."""
    rate = rate_of(t, "challenge-create")
    prefix = t.session.new_user_id("rate")

    def send(count: int) -> Exchange:
        return t.request("POST", f"/v1/users/{prefix}-{count}/apps/app/session-challenges")

    refused = drive_to_refusal(t, rate, send, what="challenge requests", exact=False)
    wait = expect_429(t, refused, rate, what="a challenge request over the rate limit")
    admitted_after_wait(t, wait, send, what="a challenge request")


@check("hashchain/limits/keyinit-rate", requirements=("API-51", "API-52", "API-54"),
       needs=("hashchain",))
def keyinit_rate(t: Probe) -> None:
    """KeyInit fetches of one identity by one requester: exactly the advertised
    keyinit-fetch-identity capacity is admitted, the next is 429 with Retry-After."""
    rate = rate_of(t, "keyinit-fetch-identity")
    who = hc_support.person(t, hc_support.params(t), "kir")

    def send(count: int) -> Exchange:
        return hc_uid_checks.fetch_keyinit(t, who)

    refused = drive_to_refusal(t, rate, send, what=f"KeyInit fetches of {who.identity}",
                               exact=True)
    expect_429(t, refused, rate, what="a KeyInit fetch over the rate limit")


@check("hashchain/limits/uid-rate", requirements=("API-51", "API-52"), needs=("hashchain",))
def uid_rate(t: Probe) -> None:
    """UID creations by one requester are refused with 429 and a Retry-After once the
    advertised uid-create bucket is empty; the refused UID is not in the log (the log,
    followed on from before, is consistent and has no entry for it)."""
    rate = rate_of(t, "uid-create")
    p, client, head = hc_support.synced(t)
    uids: list[hu.Uid] = []

    def send(count: int) -> Exchange:
        uids.append(hc_support.make_uid(hc_support.person(t, p, "ur"), head))
        return hc_support.post_uid(t, uids[-1], patient=False)

    refused = drive_to_refusal(t, rate, send, what="UID creations", exact=False)
    expect_429(t, refused, rate, what="a UID creation over the rate limit")
    before = len(client.entries)
    client.sync()
    index = hc.record_index_of(hu.uid_record_hash(uids[-1]))
    for data in client.entries[before:]:
        entry = hc.decode_entry(data)
        if entry.type == hc.TYPE_UID and entry.record_index == index:
            t.fail("the UID refused with 429 was appended to the log",
                   expected="no entry for it", actual="an entry for it", exchange=refused)


# --- API-51, API-54: queue quotas ---------------------------------------------------------------

def post_one(t: Probe, sender: env_checks.Person,
             handset: env_checks.Handset) -> tuple[Exchange, str]:
    """POST a small envelope to one device; the exchange and the message id it carries
    (a pending message counts towards the quotas: its payload is not needed)."""
    sealed = E.seal(os.urandom(16), suite=E.SUITE_X25519, sender=sender.sender,
                    recipients=[handset.device], random=env_checks.RANDOM)
    exchange = env_checks.post_envelope(t, sender, E.envelope_to_wire(sealed.envelope))
    return exchange, b64url_encode(sealed.envelope.header.message_id)


@check("envelope/limits/queue-quotas", requirements=("API-51", "API-54"), needs=("envelope",))
def queue_quotas(t: Probe) -> None:
    """One sender fills a device's queue up to queue-per-sender and is refused (429) after;
    other senders still reach the device until it holds queue-per-device, then 429 for
    anyone; a refused envelope is not stored."""
    quotas = advertised(t).quotas
    per_sender, per_device = quotas.get("queue-per-sender"), quotas.get("queue-per-device")
    if per_sender is None or per_device is None:
        raise CheckSkipped("the server advertises no queue-per-sender and queue-per-device")
    if per_device + per_device // per_sender + 2 > MAX_REQUESTS_DRIVEN:
        raise CheckSkipped(f"queue-per-device is {per_device}; the runner posts at most "
                           f"{MAX_REQUESTS_DRIVEN} envelopes")
    owner = env_checks.person(t, "quota")
    (handset,) = env_checks.register(t, owner, "quota-device")
    queued, senders = 0, 0
    while queued < per_device:
        sender = env_checks.person(t, f"quota-s{senders}")
        senders += 1
        for _ in range(min(per_sender, per_device - queued)):
            exchange, _ = post_one(t, sender, handset)
            t.expect_status(exchange, 201, what=f"envelope {queued + 1} to a device (under "
                                                f"both quotas)")
            queued += 1
        if senders == 1 and queued == per_sender < per_device:
            over, message_id = post_one(t, sender, handset)
            refused(t, over, owner, handset, message_id,
                    what=f"envelope {per_sender + 1} of one sender to one device "
                         f"(queue-per-sender {per_sender})")
    over, message_id = post_one(t, env_checks.person(t, "quota-late"), handset)
    refused(t, over, owner, handset, message_id,
            what=f"an envelope from a new sender to a device holding {per_device} "
                 f"(queue-per-device)")


def refused(t: Probe, exchange: Exchange, owner: env_checks.Person, handset: env_checks.Handset,
            message_id: str, *, what: str) -> None:
    t.expect_problem(exchange, 429, what=what, slug="too-many-requests")
    if not (exchange.header("retry-after") or "").isdigit():
        t.fail(f"{what}: no Retry-After (API-51)", expected="Retry-After: whole seconds",
               actual=repr(exchange.header("retry-after")), exchange=exchange)
    stored = t.request("GET", env_checks.message_path(handset, message_id),
                       token=owner.user.token)
    t.expect_rejected(stored, 404, what=f"GET the refused envelope ({what})")
