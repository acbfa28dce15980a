"""envelope checks of step 12, retention (ENV-17): a message is served until its
expires_at = received_at + retention_seconds and never from then on, by the server's own
clock; once expired it no longer counts against the sender's queue quota (API-54).

The runner waits the retention out, so the check runs only when the advertised
retention_seconds is short (a test setting of the server, such as the reference server's
`keyflows serve --message-retention`); otherwise it is skipped, never passed.
"""

from __future__ import annotations

import os
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from keyflows.conformance.checks.envelope import (
    NEEDS,
    RANDOM,
    Handset,
    Person,
    family,
    fetch_payload,
    limits,
    message_path,
    post_envelope,
    read_queue,
    send,
    suites,
)
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckFailed, CheckSkipped, Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import envelope as E
from keyflows.spec import limits as spec_limits
from keyflows.spec.errors import SpecError

MAX_WAITED_RETENTION = 60
"""Seconds; a longer advertised retention_seconds is not waited out (the check skips)."""
MAX_QUOTA_FILLED = 50
"""The most envelopes the check posts to fill a sender's queue quota."""
READ_MARGIN_S = 1.5
"""The server stamps received_at in whole seconds: a message expires at the earliest
retention_seconds - 1 s after the runner sent it. A read before expiry that does not see
it is judged only if it ended this long before then."""
DATE_POLL_S = 0.25
DATE_GRACE_S = 15.0
"""How long past the runner's own estimate of the expiry the server's Date may lag."""


def retention_seconds(t: Probe) -> int:
    value = limits(t).get("retention_seconds")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        t.fail("capabilities envelope.retention_seconds is not a positive integer (ENV-17)",
               expected="an integer >= 1", actual=repr(value))
    if value > MAX_WAITED_RETENTION:
        raise CheckSkipped(f"the advertised retention_seconds is {value}; the runner waits "
                           f"out at most {MAX_WAITED_RETENTION} s (start the server with a "
                           "shorter message retention to run this check)")
    return value


def sender_quota(t: Probe) -> int | None:
    """The advertised queue-per-sender quota, if small enough to fill in a check."""
    try:
        quota = spec_limits.parse_limits((t.session.capabilities or {}).get("limits"))
    except SpecError:
        return None
    per_sender = quota.quotas.get("queue-per-sender")
    return per_sender if per_sender is not None and per_sender <= MAX_QUOTA_FILLED else None


def post_small(t: Probe, sender: Person, handset: Handset) -> Exchange:
    """POST a small envelope to one device (pending its payload, it counts towards the
    quotas all the same)."""
    sealed = E.seal(os.urandom(16), suite=suites(t)[0], sender=sender.sender,
                    recipients=[handset.device], random=RANDOM)
    return post_envelope(t, sender, E.envelope_to_wire(sealed.envelope))


def server_date(exchange: Exchange) -> int | None:
    """The answer's Date header in Unix seconds, or None without a valid one."""
    value = exchange.header("date")
    try:
        date = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    if date is None:
        return None
    # HTTP dates are UTC (RFC 9110 5.6.7); "-0000" parses without a zone.
    return int((date if date.tzinfo else date.replace(tzinfo=UTC)).timestamp())


def wait_for_server_second(t: Probe, second: int, *, earliest: float, latest: float) -> None:
    """Return once the server's Date (read off GET /v1/capabilities) is `second` or later,
    so every request sent from then on is handled at or after it. A server that sends no
    Date is trusted to share the runner's rate of time: then the wait ends at `latest`
    (monotonic). Fails if the Date has not reached `second` DATE_GRACE_S after `latest`."""
    time.sleep(max(0.0, earliest - time.monotonic()))
    while True:
        exchange = t.request("GET", "/v1/capabilities")
        date = server_date(exchange)
        if date is not None and date >= second:
            return
        if date is None and time.monotonic() >= latest:
            return
        if time.monotonic() > latest + DATE_GRACE_S:
            t.fail(f"the server's Date did not reach the message's expires_at {second} "
                   f"within {DATE_GRACE_S:.0f} s of the advertised retention",
                   expected=f"Date at or after {second}", actual=describe(exchange),
                   exchange=exchange)
        time.sleep(DATE_POLL_S)


def served_before_expiry(t: Probe, phone: Handset, message_id: str, payload: bytes,
                         retention: int) -> dict[str, Any]:
    """The message is in the queue and served alone and with its payload, its expires_at
    = received_at + retention_seconds; returns its queue record."""
    record = next((r for r in read_queue(t, phone, what="GET the queue right after sending")
                   if r.get("message_id") == message_id), None)
    if record is None:
        t.fail(f"a message is not delivered within its retention ({retention} s) (ENV-17)",
               expected=f"message {message_id} in the queue", actual="absent")
    received, expires = record.get("received_at"), record.get("expires_at")
    if not isinstance(received, int) or not isinstance(expires, int) \
            or expires != received + retention:
        t.fail("a record's expires_at is not received_at + the advertised retention_seconds "
               "(ENV-17)", expected=f"received_at + {retention}",
               actual=f"received_at {received!r}, expires_at {expires!r}")
    exchange = t.request("GET", message_path(phone, message_id), token=phone.owner.user.token)
    t.expect_ok_json(exchange, 200, what="GET the record before its expires_at")
    if fetch_payload(t, phone, message_id, what="GET the payload before its expires_at") \
            != payload:
        t.fail("the payload served before expiry differs from the one sent (ENV-19)",
               expected=f"the {len(payload)} bytes sent", actual="other bytes")
    return record


def fill_quota(t: Probe, sender: Person, phone: Handset, quota: int) -> None:
    """The sender's sent message plus quota - 1 more fill its share of the queue; one
    more is refused (429): the count the expiry must lower."""
    for n in range(2, quota + 1):
        t.expect_status(post_small(t, sender, phone), 201,
                        what=f"envelope {n} of one sender to one device (queue-per-sender "
                             f"{quota})")
    t.expect_problem(post_small(t, sender, phone), 429, slug="too-many-requests",
                     what=f"envelope {quota + 1} of one sender to one device, before the "
                          f"first one expires (queue-per-sender {quota})")


def not_served_after_expiry(t: Probe, phone: Handset, message_id: str, expires: int) -> None:
    if any(r.get("message_id") == message_id
           for r in read_queue(t, phone, what="GET the queue after expires_at")):
        t.fail(f"the queue still serves a message at or after its expires_at {expires} "
               "(ENV-17)", expected="the message gone from the queue", actual="listed")
    path = message_path(phone, message_id)
    for suffix, what in (("", "the record"), ("/payload", "the payload")):
        exchange = t.request("GET", path + suffix, token=phone.owner.user.token)
        if exchange.status != 404:
            t.fail(f"{what} of a message is served at or after its expires_at {expires} "
                   "(ENV-17)", expected="404", actual=describe(exchange), exchange=exchange)
        t.expect_rejected(exchange, 404, what=f"GET {what} after expires_at")


@check("envelope/retention/expiry", requirements=("ENV-17", "API-54"), needs=NEEDS)
def expiry(t: Probe) -> None:
    """A message is delivered (queue, record, payload) before received_at +
    retention_seconds; once the server's Date reaches it, the queue, the record and the
    payload no longer serve it, and it no longer counts against the sender's
    queue-per-sender quota (filled before, refused with 429; run only when the advertised
    retention is short enough to wait out)."""
    retention = retention_seconds(t)
    quota = sender_quota(t)
    sender, phone, _, _ = family(t, "retention")
    started = time.monotonic()
    sent = send(t, sender, [phone])
    sent_at = time.monotonic()
    try:
        record = served_before_expiry(t, phone, sent.message_id, sent.sealed.payload,
                                      retention)
        if quota is not None:
            fill_quota(t, sender, phone, quota)
    except CheckFailed:
        # Judged only if the message cannot have expired yet (a slow machine otherwise).
        took = time.monotonic() - started
        if took > retention - READ_MARGIN_S:
            raise CheckSkipped(f"sending and reading before expiry took {took:.1f} s, too "
                               f"close to the advertised retention_seconds {retention} to "
                               "tell (start the server with a longer message retention)"
                               ) from None
        raise
    expires = int(record["expires_at"])
    wait_for_server_second(t, expires, earliest=started + retention - 1.0,
                           latest=sent_at + retention + 1.0)
    not_served_after_expiry(t, phone, sent.message_id, expires)
    if quota is not None:
        exchange = post_small(t, sender, phone)
        if exchange.status != 201:
            t.fail("a message at or after its expires_at still counts against the sender's "
                   f"queue quota (queue-per-sender {quota}) (ENV-17, API-54)",
                   expected="201: the expired message frees its place",
                   actual=describe(exchange), exchange=exchange)
    if any(r.get("message_id") == sent.message_id
           for r in read_queue(t, phone, what="GET the queue after the new envelope")):
        t.fail("an expired message is served again after a new envelope (ENV-17)",
               expected="the message gone", actual="listed")
