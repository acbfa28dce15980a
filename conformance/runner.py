"""Selecting, running and grading checks, and deciding when a run must stop early.

Statuses: passed, failed (an expectation did not hold, or the server's answer could not
be read: a missing member, a body over the cap, bytes that are not HTTP), skipped (the
target does not advertise what the check needs), errored (the check could not complete:
the target stopped answering, the check itself broke, or it was never run because the
run stopped). Known-failing lists (as in connectrpc/conformance) turn listed failures
into non-fatal ones, and a listed check that now passes into a fatal "stale entry", so
the list can only shrink.

A run stops early, with one reason, when its deadline passes, when the server stops
answering (a check could not reach it and neither can a fresh GET /v1/capabilities), or
when the server never consults the runner's account server (requests with valid tokens
are refused while no validate call arrives): every later check would fail the same way.
"""

from __future__ import annotations

import fnmatch
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keyflows.conformance.answers import ShapeError
from keyflows.conformance.http import (
    BadAnswer,
    DeadlineExceeded,
    Exchange,
    RequestNotSent,
    TransportError,
)
from keyflows.conformance.probe import CheckFailed, CheckSkipped, Probe, Session
from keyflows.conformance.registry import Check
from keyflows.conformance.trace import curl_reproducer

PASSED, FAILED, SKIPPED, ERRORED = "passed", "failed", "skipped", "errored"
STATUSES = (PASSED, FAILED, SKIPPED, ERRORED)

KEPT_BODY_BYTES = 64 * 1024
"""Body bytes kept per exchange of a finished failing check (reports show 2000)."""
LIVENESS_DEADLINE_S = 5.0
REFUSALS_BEFORE_ACCOUNT_VERDICT = 3

# Errors a check raises while reading an answer of an unexpected shape: the server's
# fault when the check got that far, so the check fails (with the runner's location).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError,
                 ArithmeticError, UnicodeError)


@dataclass
class Result:
    check: Check
    status: str
    message: str = ""
    expected: str = ""
    actual: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    failing_exchange: Exchange | None = None
    side_exchanges: list[Exchange] = field(default_factory=list)
    """What the server under test asked the runner's own servers (its account server, any
    other party it plays) during the check."""
    duration_ms: float = 0.0
    known_failing: bool = False
    stale: bool = False
    not_run: bool = False
    requests: int = 0
    saved_to: str = ""
    """Where --save-exchanges wrote this check's exchanges and replay script."""

    @property
    def reproducer(self) -> str:
        return curl_reproducer(self.failing_exchange) if self.failing_exchange else ""

    @property
    def unexpected(self) -> bool:
        """Fails the run: a failure or error not listed as known, or a stale entry."""
        return (self.status in (FAILED, ERRORED) and not self.known_failing) or self.stale

    def compact(self) -> None:
        """Keep what reports need, not every body of a long run (bounded memory)."""
        self.requests = max(self.requests, len(self.exchanges))
        if self.status in (PASSED, SKIPPED):
            self.exchanges = []
            self.side_exchanges = []
            self.failing_exchange = None
            return
        for exchange in [*self.exchanges, *self.side_exchanges]:
            exchange.trim(KEPT_BODY_BYTES)


def matches(check_id: str, pattern: str) -> bool:
    """A glob over the id, or a bare path prefix (`keypair-publication/replace`)."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(check_id, pattern)
    pattern = pattern.rstrip("/")
    return check_id == pattern or check_id.startswith(pattern + "/")


def select(checks: Iterable[Check], patterns: Iterable[str],
           skip: Iterable[str] = ()) -> list[Check]:
    """Checks matching any pattern (all when none), minus those matching a skip pattern."""
    patterns, skip = list(patterns), list(skip)
    chosen = [c for c in checks if not patterns or any(matches(c.id, p) for p in patterns)]
    return [c for c in chosen if not any(matches(c.id, p) for p in skip)]


def unmatched(patterns: Iterable[str], checks: Iterable[Check]) -> list[str]:
    """The patterns that match no check (a typo would otherwise pass silently)."""
    ids = [c.id for c in checks]
    return [p for p in patterns if not any(matches(i, p) for i in ids)]


def read_known_failing(path: Path) -> list[str]:
    """One id or glob per line; '#' starts a comment; blank lines are ignored."""
    patterns = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            patterns.append(line)
    return patterns


def skip_reason(check: Check, session: Session) -> str | None:
    if session.capabilities is None:
        return f"capabilities unavailable ({session.capabilities_problem})" \
            if check.needs else None
    missing = [flow for flow in check.needs if flow not in session.flows]
    if missing:
        return (f"the server does not advertise flow {', '.join(missing)} "
                f"in /v1/capabilities")
    return None


def run_check(check: Check, session: Session) -> Result:
    reason = skip_reason(check, session)
    if reason is not None:
        return Result(check=check, status=SKIPPED, message=reason)
    probe = Probe(session)
    started = time.perf_counter()
    since = time.monotonic()
    try:
        check.func(probe)
    except CheckFailed as exc:
        result = Result(check=check, status=FAILED, message=exc.message,
                        expected=exc.expected, actual=exc.actual,
                        failing_exchange=exc.exchange or _last(probe.exchanges))
    except CheckSkipped as exc:
        result = Result(check=check, status=SKIPPED, message=str(exc))
    except ShapeError as exc:
        result = Result(check=check, status=FAILED, message=str(exc),
                        expected="the members the documented answer has",
                        actual=str(exc), failing_exchange=_last(probe.exchanges))
    except BadAnswer as exc:
        result = Result(check=check, status=FAILED, message=str(exc),
                        expected="a complete HTTP/1.1 answer within the body cap",
                        actual=exc.exchange.error, failing_exchange=exc.exchange)
    except TransportError as exc:
        message = str(exc)
        if session.http.run_deadline is not None and isinstance(exc, DeadlineExceeded) \
                and time.monotonic() >= session.http.run_deadline:
            message = f"not completed: the run deadline passed ({exc})"
        result = Result(check=check, status=ERRORED, message=message,
                        failing_exchange=exc.exchange or _last(probe.exchanges))
    except RequestNotSent as exc:
        result = Result(check=check, status=ERRORED, message=str(exc))
    except _SHAPE_ERRORS as exc:
        result = _unreadable(check, probe, exc)
    except Exception as exc:  # a broken check must not stop the run
        result = Result(check=check, status=ERRORED,
                        message=f"the check raised {type(exc).__name__}: {exc} "
                                f"({_where(exc)})",
                        failing_exchange=_last(probe.exchanges))
    else:
        result = _passed_or_off_schema(check, probe)
    result.exchanges = probe.exchanges
    result.requests = len(probe.exchanges)
    result.side_exchanges = session.side_exchanges(since)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _passed_or_off_schema(check: Check, probe: Probe) -> Result:
    """Passed, unless an answer did not match its schema in the OpenAPI document."""
    if not probe.schema_problems:
        return Result(check=check, status=PASSED, message=check.summary)
    problem, exchange = probe.schema_problems[0]
    more = len(probe.schema_problems) - 1
    return Result(check=check, status=FAILED,
                  message=problem + (f" (and {more} more answers off their schema)"
                                     if more else ""),
                  expected="an answer the OpenAPI document describes (spec/openapi.yaml)",
                  actual=problem, failing_exchange=exchange)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _unreadable(check: Check, probe: Probe, exc: Exception) -> Result:
    """A check tripped over an answer it could not read: the check fails, naming the
    answer and where the runner was (or errors, when it had no answer yet)."""
    last = _last(probe.exchanges)
    detail = f"{type(exc).__name__}: {exc}".strip()
    if last is None:
        return Result(check=check, status=ERRORED,
                      message=f"the check raised {detail} ({_where(exc)})")
    return Result(check=check, status=FAILED,
                  message=f"the answer to {last.line} has a shape the check cannot read "
                          f"({detail}; runner at {_where(exc)})",
                  expected="an answer of the documented shape", actual=detail,
                  failing_exchange=last)


def _last(exchanges: list[Exchange]) -> Exchange | None:
    return exchanges[-1] if exchanges else None


def apply_known_failing(result: Result, patterns: list[str]) -> None:
    if not any(matches(result.check.id, p) for p in patterns):
        return
    if result.status in (FAILED, ERRORED):
        result.known_failing = True
    elif result.status == PASSED:
        result.stale = True


# --- stopping early ------------------------------------------------------------------------

class Guard:
    """Watches the run after each check and names a reason to stop, or None."""

    def __init__(self, session: Session, *, run_deadline: float | None = None,
                 account_url: str = "", extra: Callable[[Result], str | None] | None = None,
                 ) -> None:
        self.session = session
        self.run_deadline = run_deadline
        self.account_url = account_url
        self.extra = extra
        self.refused_valid_tokens = 0

    def deadline_passed(self) -> bool:
        return self.run_deadline is not None and time.monotonic() >= self.run_deadline

    def before(self) -> str | None:
        if self.deadline_passed():
            return "the run deadline passed (--run-deadline)"
        return None

    def after(self, result: Result) -> str | None:
        if self.deadline_passed():
            return "the run deadline passed (--run-deadline)"
        if result.status == ERRORED and isinstance(result.failing_exchange, Exchange) \
                and not result.failing_exchange.status:
            gone = self.server_gone()
            if gone:
                return gone
        verdict = self.account_never_consulted(result)
        if verdict:
            return verdict
        return self.extra(result) if self.extra else None

    def server_gone(self) -> str | None:
        """A fresh GET /v1/capabilities: None when it answers, else the reason."""
        http = self.session.http
        try:
            http.send("GET", "/v1/capabilities", deadline_s=min(LIVENESS_DEADLINE_S,
                                                                http.request_deadline))
        except TransportError as exc:
            return f"the server stopped answering ({exc})"
        except BadAnswer:
            return None
        return None

    def account_never_consulted(self, result: Result) -> str | None:
        for exchange in result.exchanges:
            if exchange.status in (401, 503) and exchange.credential_note.startswith(
                    "a valid token"):
                self.refused_valid_tokens += 1
        if self.refused_valid_tokens < REFUSALS_BEFORE_ACCOUNT_VERDICT:
            return None
        if self.session.accounts.validate_calls():
            return None
        return (f"the server under test never asked the runner's account server to "
                f"validate a token ({self.refused_valid_tokens} requests with valid tokens "
                f"were refused with 401 or 503, and {self.account_url}/v1/validate received "
                f"no call): configure the server to trust {self.account_url} (choose the "
                f"address with --account-listen HOST:PORT)")


@dataclass
class Outcome:
    results: list[Result]
    stop_reason: str = ""
    interrupted: bool = False


def not_run(check: Check, reason: str, known_failing: list[str]) -> Result:
    result = Result(check=check, status=ERRORED, not_run=True, message=f"not run: {reason}")
    apply_known_failing(result, known_failing)
    return result


def run_all(checks: list[Check], session: Session, *, known_failing: list[str],
            on_start: Callable[[Check], None] | None = None,
            on_result: Callable[[Result], None] | None = None,
            guard: Guard | None = None, outcome: Outcome | None = None,
            exitfirst: bool = False) -> Outcome:
    """Run the checks in order; stop early when the guard says so, on Ctrl-C, or with
    `exitfirst` after the first failure or error not listed as known. Checks not run
    are errored results marked not_run, so reports always list every check. Results
    accumulate in `outcome` as they come (the caller keeps them on Ctrl-C)."""
    outcome = outcome if outcome is not None else Outcome(results=[])
    for index, check in enumerate(checks):
        reason = guard.before() if guard else None
        if reason:
            outcome.stop_reason = reason
            break
        if on_start:
            on_start(check)
        try:
            result = run_check(check, session)
        except KeyboardInterrupt:
            result = Result(check=check, status=ERRORED, message="interrupted (Ctrl-C)")
            outcome.interrupted = True
            outcome.stop_reason = "interrupted (Ctrl-C)"
        apply_known_failing(result, known_failing)
        outcome.results.append(result)
        if on_result:
            on_result(result)
        result.compact()
        session.forget_side_exchanges(time.monotonic())
        if outcome.interrupted:
            break
        if exitfirst and result.status in (FAILED, ERRORED) and not result.known_failing:
            outcome.stop_reason = f"--exitfirst: {result.check.id} {result.status}"
            break
        reason = guard.after(result) if guard and index + 1 < len(checks) else None
        if reason:
            outcome.stop_reason = reason
            break
    for check in checks[len(outcome.results):]:
        outcome.results.append(not_run(check, outcome.stop_reason, known_failing))
    return outcome


def summarize(results: list[Result]) -> dict[str, int]:
    summary = {status: 0 for status in STATUSES}
    for result in results:
        summary[result.status] += 1
    summary["known_failing"] = sum(r.known_failing for r in results)
    summary["stale_known_failing"] = sum(r.stale for r in results)
    summary["not_run"] = sum(r.not_run for r in results)
    return summary


def run_failed(results: list[Result]) -> bool:
    """Exit status 1: an unexpected failure or error, or a stale known-failing entry."""
    return any(r.unexpected for r in results)
