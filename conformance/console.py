"""Terminal output: progress while running, failure details, the final summary.

On a terminal a single live counter line is redrawn in place; otherwise (CI logs, pipes)
each check gets one plain line. Failures are printed in full as soon as they happen.
"""

from __future__ import annotations

import sys
from typing import TextIO

from keyflows.conformance.http import TOKEN_VARIABLE, format_exchange
from keyflows.conformance.registry import Check
from keyflows.conformance.runner import ERRORED, FAILED, PASSED, SKIPPED, Result

LABELS = {PASSED: "PASS", FAILED: "FAIL", SKIPPED: "SKIP", ERRORED: "ERROR"}


class Console:
    def __init__(self, total: int, *, trace: bool, rerun: str = "keyflows conformance",
                 stream: TextIO | None = None) -> None:
        self.rerun = rerun
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() and not trace
        self.trace = trace
        self.total = total
        self.done = 0
        self.counts = {PASSED: 0, FAILED: 0, SKIPPED: 0, ERRORED: 0}

    def line(self, text: str = "") -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")

    def started(self, check: Check) -> None:
        if self.live:
            self._clear()
            counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
            self.stream.write(f"[{self.done + 1}/{self.total}] {counts or 'starting'}  "
                              f"{check.id}")
            self.stream.flush()

    def finished(self, result: Result) -> None:
        self.done += 1
        self.counts[result.status] += 1
        label = LABELS[result.status]
        if result.known_failing:
            label += " (known failing)"
        if result.stale:
            label += " (STALE known-failing entry)"
        noteworthy = result.status in (FAILED, ERRORED) or result.stale
        if not self.live or noteworthy:
            detail = f"  {result.message}" if result.status != PASSED else ""
            self.line(f"{label:<6} {result.check.id} ({result.duration_ms:.0f} ms){detail}"
                      if result.status != SKIPPED else f"{label:<6} {result.check.id}{detail}")
        if noteworthy and not result.known_failing and not result.stale:
            self.details(result)
        if self.trace:
            for exchange in result.exchanges:
                self.line(format_exchange(exchange, indent="    "))

    def details(self, result: Result) -> None:
        check = result.check
        self.line(f"  check:    {check.summary} [{', '.join(check.requirements)}]")
        if result.expected:
            self.line(f"  expected: {result.expected}")
        if result.actual:
            self.line(f"  got:      {result.actual}")
        if result.failing_exchange is not None:
            earlier = [e for e in result.exchanges if e is not result.failing_exchange]
            if earlier:
                self.line("  other exchanges of this check:")
                for exchange in earlier[-8:]:
                    self.line(f"    {exchange.line}")
            self.line("  trace (secrets redacted):")
            self.line(format_exchange(result.failing_exchange, indent="    "))
            note = result.failing_exchange.credential_note
            hint = f" (set {TOKEN_VARIABLE} to {note}, as the check used)" if note else ""
            self.line(f"  reproduce{hint}:")
            self.line(f"    {result.reproducer}")
        self.line(f"  re-run:   {self.rerun} --select '{check.id}'")
        self.line()

    def close(self) -> None:
        if self.live:
            self._clear()
            self.stream.flush()
