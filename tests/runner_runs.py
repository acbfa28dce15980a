"""Run `keyflows conformance` for a test (a plain module, not a conftest).

`run_conformance(*args)` runs the runner in this process through click's test runner: no
interpreter start and no imports per run, so a run selecting a few checks costs a fraction
of a second of CPU. A test that patched code the runner imports too (keyflows.spec,
keyflows.vectors or keyflows.conformance: e.g. a broken variant replacing a spec decision
the server calls) passes its `monkeypatch`: the run then happens in a pristine runner
process, started once and reused (it imported the package before any patch, so the patch
breaks only the server under test).

Tests of the runner as a process (signals, exit statuses, peak memory, the `python -m`
entry point) start it themselves.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import traceback
import types
from typing import IO, Any

import pytest
from click.testing import CliRunner

from keyflows.conformance.cli import main

# Code the runner shares with the server: a patch there would change the runner too.
RUNNER_PACKAGES = ("keyflows.spec", "keyflows.vectors", "keyflows.conformance")


def patched_modules(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The modules whose attributes (or whose classes' attributes) `monkeypatch` replaced."""
    names: set[str] = set()
    for target, _, _ in monkeypatch._setattr:
        if isinstance(target, types.ModuleType):
            names.add(target.__name__)
        else:
            names.add(getattr(target, "__module__", "") or type(target).__module__)
    return names


def patches_the_runner(monkeypatch: pytest.MonkeyPatch | None) -> bool:
    if monkeypatch is None:
        return False
    return any(name.startswith(RUNNER_PACKAGES) for name in patched_modules(monkeypatch))


def invoke(args: list[str]) -> dict[str, Any]:
    """One run through click's test runner: exit status, stdout, stderr."""
    done = CliRunner().invoke(main, ["conformance", *args])
    error = None
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        error = "".join(traceback.format_exception(done.exception))
    return {"code": done.exit_code, "stdout": done.stdout, "stderr": done.stderr,
            "error": error}


def run_conformance(*args: str, monkeypatch: pytest.MonkeyPatch | None = None,
                    timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`keyflows conformance ARGS`: exit status, stdout and stderr of the run."""
    if patches_the_runner(monkeypatch):
        outcome = _pristine().run(list(args), timeout)
    else:
        outcome = invoke(list(args))
    if outcome["error"]:
        pytest.fail(f"the runner raised:\n{outcome['error']}")
    return subprocess.CompletedProcess(["keyflows", "conformance", *args], outcome["code"],
                                       outcome["stdout"], outcome["stderr"])


class PristineRunner:
    """A runner process of its own, fed one command line at a time (JSON lines on its
    stdin, answers on a pipe of their own: whatever the run writes to fd 1 or 2 cannot
    garble them)."""

    def __init__(self) -> None:
        read_fd, self._answers_fd = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self._answers_fd)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            pass_fds=(self._answers_fd,),
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        os.close(self._answers_fd)
        self._answers: IO[str] = os.fdopen(read_fd, "r", encoding="utf-8")

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, args: list[str], timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(args) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self._answers], [], [], timeout)
        line = self._answers.readline() if ready else ""
        if not line:
            self.stop()
            pytest.fail(f"the runner process gave no answer within {timeout:.0f} s")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self._answers.close()


_lock = threading.Lock()
_runner: PristineRunner | None = None


def _pristine() -> PristineRunner:
    global _runner
    with _lock:
        if _runner is None or not _runner.alive():
            _runner = PristineRunner()
            atexit.register(_runner.stop)
        return _runner


def serve(answers_fd: int) -> None:
    """The pristine runner's loop: one JSON list of arguments per line of stdin."""
    with os.fdopen(answers_fd, "w", encoding="utf-8") as answers:
        for line in sys.stdin:
            answers.write(json.dumps(invoke(json.loads(line))) + "\n")
            answers.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
