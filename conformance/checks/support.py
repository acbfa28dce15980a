"""Helpers shared by the check modules."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, User, describe
from keyflows.conformance.trace import first_difference, json_kind
from keyflows.spec import contract
from keyflows.spec.errors import SpecError
from keyflows.spec.limits import Rate, parse_limits

__all__ = ["first_difference", "json_kind"]

DELETE = object()
"""Marker for `mutated`: remove the member instead of setting it."""


def mutated(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of the record with the member at a dotted path set (or deleted)."""
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


def get_path(record: dict[str, Any], path: str) -> Any:
    node: Any = record
    for key in path.split("."):
        node = node[key]
    return node


def expect_same_record(t: Probe, exchange: Exchange, record: dict[str, Any], *,
                       what: str) -> None:
    """The answer carries exactly the record, every field byte-equal (KP-9)."""
    got = t.expect_json(exchange, what=what)
    diff = first_difference(record, got)
    if diff:
        t.fail(f"{what}: the record differs from the one published ({diff})",
               expected="the published record, every field unchanged",
               actual=describe(exchange), exchange=exchange)


def expect_stored(t: Probe, owner: User, client_id: str, record: dict[str, Any], *,
                  what: str) -> None:
    """The owner still fetches exactly this record."""
    exchange = t.get_keypair(owner.user_id, client_id, token=owner.token)
    t.expect_status(exchange, 200, what=what)
    expect_same_record(t, exchange, record, what=what)


def expect_absent(t: Probe, owner: User, client_id: str, *, what: str) -> None:
    exchange = t.get_keypair(owner.user_id, client_id, token=owner.token)
    t.expect_rejected(exchange, 404, what=what)


def expect_unauthorized(t: Probe, exchange: Exchange, *, what: str) -> None:
    """401 problem+json with WWW-Authenticate: Bearer (API-4, API-13)."""
    t.expect_rejected(exchange, 401, what=what)
    challenge = exchange.header("www-authenticate")
    if challenge != contract.BEARER_CHALLENGE:
        t.fail(f"{what}: 401 without 'WWW-Authenticate: {contract.BEARER_CHALLENGE}' (API-13)",
               expected=f"WWW-Authenticate: {contract.BEARER_CHALLENGE}",
               actual=challenge or "(no header)", exchange=exchange)


RATE_WAIT_S = 45
"""The longest one check waits out 429 answers in all (PastRateLimits)."""


def retry_after_seconds(exchange: Exchange) -> int | None:
    """The whole seconds a 429 asks to wait (API-17), or None if it is not such an answer."""
    value = exchange.header("retry-after") or ""
    if exchange.status != 429 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def advertised_rate(t: Probe, rate: str) -> Rate | None:
    """The server's advertised rate limit `rate` (API-52), if it advertises one."""
    try:
        limits = parse_limits((t.session.capabilities or {}).get("limits"))
    except SpecError:
        return None  # a malformed member is the capabilities check's failure
    return limits.rates.get(rate)


def bucket_refill_wait(t: Probe, exchange: Exchange, rate: str, requests: int) -> float | None:
    """If `exchange` is a 429 with Retry-After and the server advertises rate limit `rate`
    (API-52): the seconds to wait until its bucket has room for `requests` requests in a
    row (at least the Retry-After, at most RATE_WAIT_S). None otherwise: the answer is for
    the check to judge."""
    after = retry_after_seconds(exchange)
    found = advertised_rate(t, rate)
    if after is None or found is None:
        return None
    return min(float(RATE_WAIT_S),
               max(float(after), requests * found.window_seconds / found.capacity))


def advertised_capacity(t: Probe, rate: str, wanted: int) -> int:
    """How many requests of rate limit `rate` a check may make at once and stay under the
    server's advertised bucket (API-52): `wanted`, or the bucket's capacity if smaller."""
    found = advertised_rate(t, rate)
    return wanted if found is None else max(1, min(wanted, found.capacity))


class PastRateLimits:
    """Sends a check's requests past rate limits: the first answer to `send()` that is not
    a 429 with Retry-After, each such 429 waited out before sending again (at most `wait_s`
    in all for the check). The contract leaves open where a rate limit comes in the order
    of checks (API-18), and every request counts in its bucket, refused ones too: a check
    of another rule whose bucket earlier checks emptied judges the answer after the wait,
    the answer a fresh server would give at once. A 429 without Retry-After is returned to
    be judged; one still there when the time is up skips the check (never passes it)."""

    def __init__(self, wait_s: float = RATE_WAIT_S) -> None:
        self.wait_s = wait_s
        self.waited = 0

    def __call__(self, send: Callable[[], Exchange], *, what: str) -> Exchange:
        while True:
            exchange = send()
            after = retry_after_seconds(exchange)
            if after is None:
                return exchange
            if self.waited + after > self.wait_s:
                raise CheckSkipped(f"{what}: still 429 too-many-requests after waiting out "
                                   f"{self.waited} s of Retry-After; the rule could not be "
                                   f"judged")
            time.sleep(after)
            self.waited += after


def refusal_due(elapsed: float, lifetime: object) -> bool:
    """Whether a server must refuse the request after max_attempts challenges, sent and
    answered within `elapsed` seconds of the runner's clock, all for one user (SC-2).
    Servers count in whole Unix seconds (a challenge counts from its issued_at second until
    issued_at + lifetime, as it expires), so the window can close after only lifetime - 1
    real seconds: the first challenge issued at second T counts while the clock is below
    T + lifetime, and that holds for every request answered less than lifetime - 1 seconds
    after it was sent (the server's whole seconds then differ by at most lifetime - 1)."""
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        return True  # no advertised lifetime: the limit holds for any window
    return elapsed < lifetime - 1


ATTEMPT_LIMIT_TRIES = 3
"""Fresh users a check of the attempt limit (SC-2) tries before it gives up judging."""


def over_the_attempt_limit(t: Probe, client_id: str, attempts: int, lifetime: object, *,
                           last: bool) -> Exchange | None:
    """The answer to challenge attempts + 1 for a fresh user, after `attempts` that must be
    issued; None if it cannot be judged and another try is to be made: the requester's
    challenge-create bucket (API-52) refused one of the first because other checks of the
    run had emptied it (waited out: the next try has room for all its requests), or the
    server issued the extra challenge when its window may have closed (`refusal_due`)."""
    user = t.user("attempts")
    t.publish(user, client_id)
    path = f"/v1/users/{user.user_id}/apps/{client_id}/session-challenges"
    started = time.monotonic()
    for _ in range(attempts):
        exchange = t.request("POST", path)
        wait = bucket_refill_wait(t, exchange, "challenge-create", attempts + 1)
        if wait is not None and not last:
            time.sleep(wait)
            return None
        t.expect_status(exchange, 201, what="a challenge within the limit")
    exchange = t.request("POST", path)
    if exchange.status == 201 and not refusal_due(time.monotonic() - started, lifetime):
        return None
    return exchange
