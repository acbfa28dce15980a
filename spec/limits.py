"""Limits a key server advertises and enforces (API-50 .. API-54): rate limits, quotas and
connection deadlines, and the decision whether a request fits a rate limit.

A rate limit is a token bucket of `capacity` requests refilled at `capacity` per
`window_seconds`: a requester with a full bucket may make `capacity` requests at once,
then one more every window_seconds / capacity seconds. It is computed as the generic cell
rate algorithm (GCRA, ITU-T I.371), which keeps one number per bucket, the theoretical
arrival time (TAT), so the state a server shares between its processes is one row.

Sans-I/O: the clock is a parameter; the server stores the TAT.

The capabilities member (API-52), `limits`:

    {"max_body_bytes": 65536,
     "header_timeout_seconds": 10, "body_timeout_seconds": 30, "idle_timeout_seconds": 5,
     "body_min_rate_bytes_per_second": 4096,
     "rates": {"<name>": {"capacity": 60, "window_seconds": 60, "per": "requester"}, ...},
     "quotas": {"<name>": {"limit": 256, "per": "device"}, ...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyflows.spec import wire
from keyflows.spec.errors import DecodeError, ParamsError

MAX_CAPACITY = 1_000_000
MAX_WINDOW_SECONDS = 86_400
MAX_TIMEOUT_SECONDS = 3_600
MAX_QUOTA = 1_000_000_000
MAX_BODY_MIN_RATE = 1_000_000_000

# The rate limits and quotas of the v1 profile: name -> what is counted, and per whom.
# "requester" is the client's network address (an IPv6 address by its /64 prefix).
RATES: dict[str, str] = {
    "challenge-create": "session challenges requested, per requester",
    "keyinit-fetch": "KeyInit fetches, per requester",
    "keyinit-fetch-identity": "KeyInit fetches of one identity, per requester",
    "uid-create": "UIDs created (new names in the log), per requester",
}
QUOTAS: dict[str, str] = {
    "queue-per-device": "messages queued for one device",
    "queue-per-sender": "messages one sender has queued for one device",
}
RATE_SCOPES: dict[str, str] = {
    "challenge-create": "requester",
    "keyinit-fetch": "requester",
    "keyinit-fetch-identity": "requester+identity",
    "uid-create": "requester",
}
QUOTA_SCOPES: dict[str, str] = {
    "queue-per-device": "device",
    "queue-per-sender": "sender+device",
}
DEADLINES = ("header_timeout_seconds", "body_timeout_seconds", "idle_timeout_seconds")
BODY_MIN_RATE = "body_min_rate_bytes_per_second"


@dataclass(frozen=True)
class Rate:
    """A token bucket: `capacity` requests at once, refilled at capacity per window."""

    capacity: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= MAX_CAPACITY:
            raise ParamsError(f"rate capacity must be in 1..{MAX_CAPACITY}", requirement="API-52")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ParamsError(f"rate window must be in 1..{MAX_WINDOW_SECONDS} s",
                              requirement="API-52")

    @property
    def interval(self) -> float:
        """Seconds between two requests once the bucket is empty."""
        return self.window_seconds / self.capacity


MICROS = 1_000_000


def _micros(seconds: float) -> int:
    """Seconds as whole microseconds, rounded to nearest: truncation would turn
    1.001 s into 1000999 us, so a client waiting exactly Retry-After seconds after a
    refusal could be refused again."""
    return round(seconds * MICROS)


@dataclass(frozen=True)
class Admission:
    """The decision on one request: admitted with the bucket's new TAT (whole
    microseconds, so the arithmetic is exact), or refused with the whole seconds after
    which the same request will be admitted (Retry-After)."""

    admitted: bool
    tat: int
    retry_after: int = 0


def admit(tat: int | None, *, now: float, rate: Rate) -> Admission:
    """GCRA (API-51, API-52): admit the request if the bucket holds a token at `now`
    (seconds). `tat` is the stored theoretical arrival time in microseconds (None for a
    bucket never used). A refused request leaves the bucket unchanged, so retrying early
    never pushes the wait further. The interval is rounded down to whole microseconds:
    `capacity` requests at once always fit."""
    now_us = _micros(now)
    window_us = rate.window_seconds * MICROS
    interval_us = window_us // rate.capacity
    base = now_us if tat is None or tat < now_us else tat
    fits_from = base + interval_us - window_us
    if now_us < fits_from:
        return Admission(False, base, max(1, -(-(fits_from - now_us) // MICROS)))
    return Admission(True, base + interval_us)


def is_idle(tat: int, *, now: float) -> bool:
    """A bucket whose TAT has passed is full again: its row can be forgotten."""
    return tat <= _micros(now)


@dataclass(frozen=True)
class Limits:
    """The `limits` member of the capabilities, as a client reads it."""

    max_body_bytes: int
    deadlines: dict[str, int]
    rates: dict[str, Rate]
    rate_scopes: dict[str, str]
    quotas: dict[str, int]
    body_min_rate: int | None = None


def body_allowance(received: int, *, body_timeout: int, body_min_rate: int) -> float:
    """Seconds after its headers by which a request body must have gone past `received`
    bytes (API-53): body_timeout_seconds, plus one second per body_min_rate_bytes_per_second
    bytes received. A body may take as long as it needs while it averages the minimum
    rate; one trickled slower is cut, so holding a connection open costs the client
    body_min_rate bytes for every second past the body timeout."""
    return body_timeout + received / body_min_rate


def limits_to_wire(*, max_body_bytes: int, deadlines: dict[str, int], rates: dict[str, Rate],
                   quotas: dict[str, int], body_min_rate: int) -> dict[str, Any]:
    """The capabilities member `limits` (API-52)."""
    return {
        "max_body_bytes": max_body_bytes,
        **{name: deadlines[name] for name in DEADLINES},
        BODY_MIN_RATE: body_min_rate,
        "rates": {name: {"capacity": rate.capacity, "window_seconds": rate.window_seconds,
                         "per": RATE_SCOPES[name]} for name, rate in sorted(rates.items())},
        "quotas": {name: {"limit": limit, "per": QUOTA_SCOPES[name]}
                   for name, limit in sorted(quotas.items())},
    }


def parse_limits(value: Any) -> Limits:
    """Read the capabilities member `limits` (API-52); DecodeError or ParamsError on a
    member of the wrong shape. Unknown members, rates and quotas are kept or ignored: a
    server may advertise and enforce more than the profile names."""
    members = _object(value, "limits")
    if "max_body_bytes" not in members:
        raise DecodeError("limits lacks max_body_bytes", requirement="API-7")
    body = _int(members["max_body_bytes"], "max_body_bytes", 1, 2**31 - 1)
    deadlines = {name: _int(members[name], name, 1, MAX_TIMEOUT_SECONDS)
                 for name in DEADLINES if name in members}
    min_rate = (_int(members[BODY_MIN_RATE], BODY_MIN_RATE, 1, MAX_BODY_MIN_RATE)
                if BODY_MIN_RATE in members else None)
    rates: dict[str, Rate] = {}
    scopes: dict[str, str] = {}
    for name, item in _object(members.get("rates", {}), "limits.rates").items():
        fields = wire.members(_object(item, f"limits.rates.{name}"),
                              ("capacity", "window_seconds", "per"), f"limits.rates.{name}")
        rates[name] = Rate(_int(fields["capacity"], "capacity", 1, MAX_CAPACITY),
                           _int(fields["window_seconds"], "window_seconds", 1,
                                MAX_WINDOW_SECONDS))
        scopes[name] = wire.string(fields, "per", f"limits.rates.{name}")
    quotas: dict[str, int] = {}
    for name, item in _object(members.get("quotas", {}), "limits.quotas").items():
        fields = wire.members(_object(item, f"limits.quotas.{name}"), ("limit", "per"),
                              f"limits.quotas.{name}")
        quotas[name] = _int(fields["limit"], "limit", 1, MAX_QUOTA)
    return Limits(max_body_bytes=body, deadlines=deadlines, rates=rates, rate_scopes=scopes,
                  quotas=quotas, body_min_rate=min_rate)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a JSON object", requirement="API-52")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamsError(f"limits.{name} must be an integer in {low}..{high}",
                          requirement="API-52")
    return value
