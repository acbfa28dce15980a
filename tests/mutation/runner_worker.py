"""A long-lived process that runs the pristine conformance runner on request, so a mutant
costs no interpreter start-up and no imports for its runner, however many phases it has.

`python runner_worker.py SNAPSHOT`, with the pristine snapshot first on PYTHONPATH (see
harness.RunnerWorker). It first answers {"ready": true, "checks": [...]} (every check's
id, flow and requirements). Then it reads one JSON array per line on stdin, the
arguments of `keyflows conformance`, runs them in-process exactly as the command line
does (click, same options, its own account server) and answers one JSON object per line:
{"code": exit status, "message": the last line on stderr}. The report file carries the
results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

PRISTINE_PACKAGES = ("keyflows.conformance", "keyflows.spec")


def loaded_from_elsewhere(tree: Path) -> list[str]:
    out = []
    for name, module in sorted(sys.modules.items()):
        if name.startswith(PRISTINE_PACKAGES):
            file = getattr(module, "__file__", None)
            if file is None or not Path(file).resolve().is_relative_to(tree):
                out.append(f"{name} ({file})")
    return out


def run(arguments: list[str]) -> dict[str, object]:
    """Run `keyflows conformance ARGUMENTS`; its exit status and last line on stderr."""
    from keyflows.conformance.cli import main

    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
        try:
            main(["conformance", *arguments], standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # the runner broke: like a run that could not start
            print(f"the runner raised {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 3
    lines = [ln.strip() for ln in errors.getvalue().splitlines() if ln.strip()]
    return {"code": code, "message": lines[-1] if lines else ""}


def checks() -> list[dict[str, object]]:
    from keyflows.conformance.registry import all_checks

    return [{"id": c.id, "flow": c.flow, "requirements": list(c.requirements)}
            for c in all_checks()]


def main() -> None:
    tree = Path(sys.argv[1]).resolve()
    # The answers travel on a private copy of stdout; whatever else writes to file
    # descriptors 1 and 2 (a thread's stray print, a library's warning) goes nowhere.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    from keyflows.conformance import cli, orchestrator  # noqa: F401  (imported up front)

    elsewhere = loaded_from_elsewhere(tree)
    if elsewhere:
        answers.write(json.dumps({"error": f"not from the snapshot: {', '.join(elsewhere)}"})
                      + "\n")
        sys.exit(3)
    answers.write(json.dumps({"ready": True, "checks": checks()}) + "\n")
    for line in sys.stdin:
        answers.write(json.dumps(run([str(a) for a in json.loads(line)])) + "\n")


if __name__ == "__main__":
    main()
