"""Terminal output: progress while running, failure details, the final summary.

On a terminal a single live counter line is redrawn in place, cut to the terminal's
width so it never wraps; otherwise (CI logs, pipes) each check gets one plain line.
Failures are printed in full as soon as they happen. Colour only on a terminal, never
when NO_COLOR is set (https://no-color.org) or TERM is dumb, unless --color always.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from keyflows.conformance.redaction import redact_text
from keyflows.conformance.registry import Check
from keyflows.conformance.runner import ERRORED, FAILED, PASSED, SKIPPED, Result, summarize
from keyflows.conformance.trace import (
    TOKEN_VARIABLE,
    format_exchange,
    format_with_side_calls,
    merged,
)

if TYPE_CHECKING:
    from keyflows.conformance.runner import Outcome

LABELS = {PASSED: "PASS", FAILED: "FAIL", SKIPPED: "SKIP", ERRORED: "ERROR"}
_COLOURS = {PASSED: "32", FAILED: "31", SKIPPED: "33", ERRORED: "35"}


def use_color(stream: TextIO, mode: str = "auto") -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return _isatty(stream) and os.environ.get("TERM", "") != "dumb"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fit(text: str, width: int) -> str:
    """One line no wider than `width` columns (the live line must never wrap)."""
    text = text.replace("\n", " ")
    if len(text) < width:
        return text
    return text[:max(width - 2, 0)] + "…" if width > 2 else text[:width]


class Console:
    def __init__(self, total: int, *, trace: bool, rerun: str = "keyflows conformance",
                 stream: TextIO | None = None, color: str = "auto") -> None:
        self.rerun = rerun
        self.stream = stream or sys.stdout
        self.live = _isatty(self.stream) and not trace
        self.color = use_color(self.stream, color)
        self.trace = trace
        self.total = total
        self.done = 0
        self.counts = {PASSED: 0, FAILED: 0, SKIPPED: 0, ERRORED: 0}

    def paint(self, text: str, status: str) -> str:
        return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if self.color else text

    def line(self, text: str = "") -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")

    def started(self, check: Check) -> None:
        if not self.live:
            return
        self._clear()
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write(fit(f"[{self.done + 1}/{self.total}] {counts or 'starting'}  "
                              f"{check.id}", width))
        self.stream.flush()

    def finished(self, result: Result) -> None:
        self.done += 1
        self.counts[result.status] += 1
        if result.not_run:
            return
        label = self.paint(f"{LABELS[result.status]:<6}", result.status)
        if result.known_failing:
            label += " (known failing)"
        if result.stale:
            label += " (STALE known-failing entry)"
        noteworthy = result.status in (FAILED, ERRORED) or result.stale
        if not self.live or noteworthy:
            detail = f"  {redact_text(result.message)}" if result.status != PASSED else ""
            self.line(f"{label} {result.check.id} ({result.duration_ms:.0f} ms){detail}"
                      if result.status != SKIPPED else f"{label} {result.check.id}{detail}")
        if noteworthy and not result.known_failing and not result.stale:
            self.details(result)
        if self.trace:
            for exchange in merged(result.exchanges, result.side_exchanges):
                self.line(format_exchange(exchange, indent="    "))

    def details(self, result: Result) -> None:
        check = result.check
        self.line(f"  check:    {check.summary} [{', '.join(check.requirements)}]")
        if result.expected:
            self.line(f"  expected: {redact_text(result.expected)}")
        if result.actual:
            self.line(f"  got:      {redact_text(result.actual)}")
        failing = result.failing_exchange
        if failing is not None:
            earlier = [e for e in result.exchanges if e is not failing]
            if earlier:
                self.line("  other exchanges of this check:")
                for exchange in earlier[-8:]:
                    self.line(f"    {exchange.line}")
            self.line("  trace (secrets redacted):")
            self.line(format_with_side_calls(failing, result.side_exchanges,
                                                indent="    "))
            note = failing.credential_note
            hint = f" (set {TOKEN_VARIABLE} to {note}, as the check used)" if note else ""
            self.line(f"  reproduce{hint}:")
            self.line(f"    {result.reproducer}")
        if result.saved_to:
            replay = Path(result.saved_to).parent / "replay.py"
            self.line(f"  replay:   python3 {replay} {check.id}   (every exchange of the "
                      f"check, unredacted; {result.saved_to})")
        self.line(f"  re-run:   {self.rerun} --select '{check.id}'")
        self.line()

    def summary(self, outcome: Outcome, *, target: str, duration: float,
                known_failing_file: Path | None) -> None:
        results = outcome.results
        summary = summarize(results)
        if outcome.stop_reason:
            self.line(f"keyflows conformance: stopped early: {outcome.stop_reason}; "
                      f"{summary['not_run']} checks not run")
        for result in results:
            if result.stale:
                self.line(f"stale known-failing entry: {result.check.id} passes now; "
                          f"remove it from {known_failing_file}")
        known_ids = [r.check.id for r in results if r.known_failing]
        if known_ids:
            self.line(f"known failing ({len(known_ids)}): {', '.join(known_ids)}")
        unexpected = [r.check.id for r in results
                      if r.status in (FAILED, ERRORED) and not r.known_failing
                      and not r.not_run]
        if unexpected:
            self.line(f"failed ({len(unexpected)}): {', '.join(unexpected)}")
        noun = "check" if len(results) == 1 else "checks"
        parts = [self.paint(f"{summary[PASSED]} passed", PASSED) if summary[PASSED]
                 else "0 passed",
                 self.paint(f"{summary[FAILED]} failed", FAILED) if summary[FAILED]
                 else "0 failed",
                 f"{summary[SKIPPED]} skipped",
                 self.paint(f"{summary[ERRORED]} errored", ERRORED) if summary[ERRORED]
                 else "0 errored"]
        if summary["not_run"]:
            parts[-1] += f" ({summary['not_run']} not run)"
        if known_ids:
            parts.append(f"{len(known_ids)} known failing")
        self.line(f"{len(results)} {noun} against {target}: {', '.join(parts)} "
                  f"in {duration:.1f} s")

    def close(self) -> None:
        if self.live:
            self._clear()
            self.stream.flush()
