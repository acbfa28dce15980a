"""Checks that meet a rate limit other checks emptied, and the timing rule of the attempt
limit: a correct server passes whatever ran before, on a loaded machine too."""

from __future__ import annotations

import itertools
import json
import math
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runner_runs import run_conformance
from servers import start_reference_server

from keyflows.conformance.checks import support
from keyflows.conformance.checks.support import refusal_due
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped
from keyflows.reference.config import DEFAULT_RATES
from keyflows.spec import limits as spec_limits
from keyflows.spec.session_challenge import attempts_in_window

# --- the attempt limit's window, counted in whole seconds (SC-2) ------------------------------


@given(issued=st.floats(min_value=1e9, max_value=2e9), lifetime=st.integers(2, 600),
       fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_a_refusal_is_due_only_while_the_servers_whole_second_window_is_open(
        issued: float, lifetime: int, fraction: float) -> None:
    """Whenever the runner demands the refusal (the first challenge and the extra request
    both within `elapsed` of its clock), a server counting whole seconds still counts the
    first challenge in its window."""
    elapsed = fraction * (lifetime - 1)
    assert refusal_due(elapsed, lifetime)
    now = math.floor(issued + elapsed)
    assert attempts_in_window([math.floor(issued)], now=now, window=lifetime) == 1


def test_the_window_may_close_before_one_lifetime_of_real_time() -> None:
    """Why the runner does not demand the refusal up to a whole lifetime: issued at
    10.99 s and asked again at 13.0 s (2.01 s later), the 3 s window has closed."""
    assert attempts_in_window([10], now=13, window=3) == 0
    assert not refusal_due(2.01, 3)
    assert refusal_due(1.99, 3)
    assert refusal_due(100.0, None)  # no advertised lifetime: always due


# --- waiting out 429 answers --------------------------------------------------------------------

def answer(status: int, retry_after: str | None = None) -> Exchange:
    headers = [] if retry_after is None else [("retry-after", retry_after)]
    return Exchange(method="POST", url="/x", sent_headers={}, request_headers=[],
                    request_body=b"", status=status, response_headers=headers)


def test_429s_are_waited_out_until_the_rule_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    answers = iter([answer(429, "2"), answer(429, "1"), answer(413)])
    patient = support.PastRateLimits(wait_s=10)
    assert patient(lambda: next(answers), what="a post").status == 413
    assert slept == [2, 1]
    # a 429 without a usable Retry-After is the check's to judge
    for value in (None, "", "1.5", "soon"):
        unusable = answer(429, value)
        assert patient(itertools.repeat(unusable).__next__, what="a post") is unusable


def test_a_limit_that_never_lets_go_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    patient = support.PastRateLimits(wait_s=5)
    with pytest.raises(CheckSkipped, match="still 429"):
        patient(lambda: answer(429, "2"), what="a post")
    assert patient.waited == 4


# --- end to end: the challenge-create bucket emptied by the check before ----------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(url: str, account_port: int, tmp_path: Path, *select: str) -> dict[str, Any]:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    arguments = [a for check_id in select for a in ("--select", check_id)]
    done = run_conformance("--base-url", url, "--account-listen", f"127.0.0.1:{account_port}",
                           "--report-json", str(report), *arguments)
    assert report.exists(), done.stderr
    return {c["id"]: c["status"] for c in json.loads(report.read_text())["checks"]}


AFTER_THE_DRAIN = ("common/limits/retry-after", "common/users-apps-session-challenges/post-body",
                   "session-challenge/create/attempt-limit",
                   "session-challenge/create/uniform-refusal",
                   "session-challenge/flow/fresh-challenges")


def test_checks_after_an_emptied_challenge_bucket_pass(tmp_path: Path) -> None:
    """session-challenge/limits/challenge-rate leaves the requester's challenge-create
    bucket empty; the checks of the same route run right after it (attempt limit, body,
    404s, new challenges) wait it out instead of failing (a small bucket that refills in
    2 s keeps this quick)."""
    port = free_port()
    rates = {**DEFAULT_RATES, "challenge-create": spec_limits.Rate(10, 2)}
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3",
                                    challenge_lifetime=3, rates=rates)
    try:
        first = run(server.url, port, tmp_path, "session-challenge/limits/challenge-rate")
        after = run(server.url, port, tmp_path, *AFTER_THE_DRAIN)
    finally:
        server.stop()
    assert first == {"session-challenge/limits/challenge-rate": "passed"}
    assert after == {check_id: "passed" for check_id in AFTER_THE_DRAIN}
