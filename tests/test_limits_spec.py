"""The rate-limit decision (API-51, API-52): GCRA as a token bucket, with properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import limits as spec
from keyflows.spec.errors import DecodeError, ParamsError

rates = st.builds(spec.Rate, st.integers(1, 500), st.integers(1, 86_400))
times = st.floats(0, 1e9, allow_nan=False, allow_infinity=False)


def burst(rate: spec.Rate, now: float, tat: int | None = None) -> tuple[int, int | None]:
    """Requests admitted at one instant, and the TAT after them."""
    admitted = 0
    while True:
        decision = spec.admit(tat, now=now, rate=rate)
        if not decision.admitted:
            return admitted, tat
        admitted += 1
        tat = decision.tat


@settings(deadline=None)  # a burst of up to 500 decisions: slow on a loaded machine
@given(rates, times)
def test_an_unused_bucket_admits_exactly_its_capacity_at_once(rate: spec.Rate,
                                                                now: float) -> None:
    admitted, _ = burst(rate, now)
    assert admitted == rate.capacity


@settings(deadline=None)  # a burst of up to 500 decisions: slow on a loaded machine
@given(rates, times)
def test_a_refusal_changes_nothing_and_retry_after_is_enough(rate: spec.Rate,
                                                              now: float) -> None:
    _, tat = burst(rate, now)
    refused = spec.admit(tat, now=now, rate=rate)
    assert not refused.admitted and refused.retry_after >= 1
    assert spec.admit(tat, now=now, rate=rate) == refused  # a refusal stores nothing
    assert spec.admit(tat, now=now + refused.retry_after, rate=rate).admitted
    if refused.retry_after > 1:  # and the wait is not longer than needed (whole seconds)
        assert not spec.admit(tat, now=now + refused.retry_after - 1, rate=rate).admitted


@settings(max_examples=50)
@given(rates, times, st.lists(st.floats(0, 10_000, allow_nan=False), max_size=200))
def test_admissions_never_exceed_capacity_plus_refill(rate: spec.Rate, start: float,
                                                      gaps: list[float]) -> None:
    tat: int | None = None
    now = start
    admitted = 0
    for gap in gaps:
        now += gap
        decision = spec.admit(tat, now=now, rate=rate)
        if decision.admitted:
            admitted += 1
            tat = decision.tat
    # the interval is rounded down to whole microseconds, and `now` to a microsecond
    refill = (now - start + 1e-6) * spec.MICROS / (rate.window_seconds * spec.MICROS
                                                   // rate.capacity)
    assert admitted <= rate.capacity + refill


def test_a_full_bucket_refills_over_its_window() -> None:
    rate = spec.Rate(4, 60)
    _, tat = burst(rate, 1000.0)
    assert tat is not None
    assert spec.admit(tat, now=1000.0, rate=rate).retry_after == 15
    assert burst(rate, 1060.0, tat)[0] == 4  # one window later: full again
    assert spec.is_idle(tat, now=1060.0)


@pytest.mark.parametrize("capacity,window", [(0, 60), (1, 0), (10**7, 60), (1, 86_401)])
def test_rates_out_of_range(capacity: int, window: int) -> None:
    with pytest.raises(ParamsError):
        spec.Rate(capacity, window)


def test_limits_round_trip_and_bad_shapes() -> None:
    wire = spec.limits_to_wire(
        max_body_bytes=100, deadlines={"header_timeout_seconds": 1, "body_timeout_seconds": 2,
                                       "idle_timeout_seconds": 3},
        rates={"uid-create": spec.Rate(5, 10)}, quotas={"queue-per-device": 7},
        body_min_rate=512)
    parsed = spec.parse_limits(wire)
    assert parsed.body_min_rate == 512
    assert parsed.rates == {"uid-create": spec.Rate(5, 10)}
    assert parsed.quotas == {"queue-per-device": 7}
    assert parsed.deadlines["body_timeout_seconds"] == 2
    with pytest.raises(DecodeError):
        spec.parse_limits([])
    with pytest.raises(DecodeError):
        spec.parse_limits({"rates": {}})
    with pytest.raises(ParamsError):
        spec.parse_limits({**wire, "max_body_bytes": True})
    with pytest.raises(DecodeError):
        spec.parse_limits({**wire, "rates": {"x": {"capacity": 1, "window_seconds": 1}}})


def test_body_allowance_grows_with_the_bytes_received() -> None:
    """API-53: body_timeout seconds for the first byte, then one second per
    body_min_rate bytes: a body may take as long as it needs at the minimum rate."""
    assert spec.body_allowance(0, body_timeout=30, body_min_rate=4096) == 30
    assert spec.body_allowance(4096 * 100, body_timeout=30, body_min_rate=4096) == 130
    # a 1 GiB upload at 1 MiB/s (1024 s) stays far within its allowance
    assert spec.body_allowance(2**30, body_timeout=30, body_min_rate=4096) > 1024


def test_body_min_rate_out_of_range() -> None:
    base = spec.limits_to_wire(max_body_bytes=100, deadlines={name: 1 for name in spec.DEADLINES},
                               rates={}, quotas={}, body_min_rate=1)
    for bad in (0, True, 1.5, spec.MAX_BODY_MIN_RATE + 1):
        with pytest.raises(ParamsError):
            spec.parse_limits({**base, spec.BODY_MIN_RATE: bad})
