"""Selecting, running and grading checks.

Statuses: passed, failed (an expectation did not hold), skipped (the target does not
advertise what the check needs), errored (the check could not complete: the target
stopped answering, or the check itself broke). Known-failing lists (as in
connectrpc/conformance) turn listed failures into non-fatal ones, and a listed check that
now passes into a fatal "stale entry", so the list can only shrink.
"""

from __future__ import annotations

import fnmatch
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keyflows.conformance.http import Exchange, TransportError, curl_reproducer
from keyflows.conformance.probe import CheckFailed, CheckSkipped, Probe, Session
from keyflows.conformance.registry import Check

PASSED, FAILED, SKIPPED, ERRORED = "passed", "failed", "skipped", "errored"
STATUSES = (PASSED, FAILED, SKIPPED, ERRORED)


@dataclass
class Result:
    check: Check
    status: str
    message: str = ""
    expected: str = ""
    actual: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    failing_exchange: Exchange | None = None
    duration_ms: float = 0.0
    known_failing: bool = False
    stale: bool = False

    @property
    def reproducer(self) -> str:
        return curl_reproducer(self.failing_exchange) if self.failing_exchange else ""


def matches(check_id: str, pattern: str) -> bool:
    """A glob over the id, or a bare path prefix (`keypair-publication/replace`)."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(check_id, pattern)
    pattern = pattern.rstrip("/")
    return check_id == pattern or check_id.startswith(pattern + "/")


def select(checks: Iterable[Check], patterns: Iterable[str]) -> list[Check]:
    patterns = list(patterns)
    if not patterns:
        return list(checks)
    return [c for c in checks if any(matches(c.id, p) for p in patterns)]


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
    try:
        check.func(probe)
    except CheckFailed as exc:
        result = Result(check=check, status=FAILED, message=exc.message,
                        expected=exc.expected, actual=exc.actual,
                        failing_exchange=exc.exchange or _last(probe.exchanges))
    except CheckSkipped as exc:
        result = Result(check=check, status=SKIPPED, message=str(exc))
    except TransportError as exc:
        result = Result(check=check, status=ERRORED, message=str(exc),
                        failing_exchange=_last(probe.exchanges))
    except Exception as exc:  # a broken check must not stop the run
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        result = Result(check=check, status=ERRORED,
                        message=f"the check raised {type(exc).__name__}: {exc} "
                                f"({Path(frame.filename).name}:{frame.lineno})",
                        failing_exchange=_last(probe.exchanges))
    else:
        result = Result(check=check, status=PASSED, message=check.summary)
    result.exchanges = probe.exchanges
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _last(exchanges: list[Exchange]) -> Exchange | None:
    return exchanges[-1] if exchanges else None


def apply_known_failing(result: Result, patterns: list[str]) -> None:
    if not any(matches(result.check.id, p) for p in patterns):
        return
    if result.status in (FAILED, ERRORED):
        result.known_failing = True
    elif result.status == PASSED:
        result.stale = True


def run_all(checks: list[Check], session: Session, *, known_failing: list[str],
            on_start: Callable[[Check], None] | None = None,
            on_result: Callable[[Result], None] | None = None,
            exitfirst: bool = False) -> list[Result]:
    """Run `checks` in order; with `exitfirst`, stop after the first unexpected failure."""
    results = []
    for check in checks:
        if on_start:
            on_start(check)
        result = run_check(check, session)
        apply_known_failing(result, known_failing)
        results.append(result)
        if on_result:
            on_result(result)
        if exitfirst and result.status in (FAILED, ERRORED) and not result.known_failing:
            break
    return results


def summarize(results: list[Result]) -> dict[str, int]:
    summary = {status: 0 for status in STATUSES}
    for result in results:
        summary[result.status] += 1
    summary["known_failing"] = sum(r.known_failing for r in results)
    summary["stale_known_failing"] = sum(r.stale for r in results)
    return summary


def run_failed(results: list[Result]) -> bool:
    """Exit status 1: an unexpected failure or error, or a stale known-failing entry."""
    return any((r.status in (FAILED, ERRORED) and not r.known_failing) or r.stale
               for r in results)
