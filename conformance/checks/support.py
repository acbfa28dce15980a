"""Helpers shared by the check modules."""

from __future__ import annotations

import copy
from typing import Any

from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, User, describe
from keyflows.conformance.trace import first_difference, json_kind
from keyflows.spec import contract
from keyflows.spec.errors import SpecError
from keyflows.spec.limits import parse_limits

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


def advertised_capacity(t: Probe, rate: str, wanted: int) -> int:
    """How many requests of rate limit `rate` a check may make at once and stay under the
    server's advertised bucket (API-52): `wanted`, or the bucket's capacity if smaller."""
    try:
        limits = parse_limits((t.session.capabilities or {}).get("limits"))
    except SpecError:
        return wanted  # a malformed member is the capabilities check's failure
    found = limits.rates.get(rate)
    return wanted if found is None else max(1, min(wanted, found.capacity))

