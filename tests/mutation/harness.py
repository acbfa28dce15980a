"""Run each mutant: a reference server started from a mutated copy of the tree, checked by
the pristine conformance runner over HTTP.

For one mutant: copy the prepared tree (keyflows/spec, keyflows/reference, compiled),
write the mutated file, start the server from it (serve_mutant.py, which asserts that
the mutated copies are what it imports), then run `keyflows conformance --base-url ...
--account-listen ... --exitfirst`, first on the checks of the site's flow and, if they
all pass, on every other check. The mutant is killed when the runner reports a failure
(exit status 1) or cannot run against the server (exit status 2); it survives when the
runner passes everything.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .sites import ROOT, Site

SERVE_MUTANT = Path(__file__).resolve().parent / "serve_mutant.py"
TREE_PACKAGES = ("spec", "reference")
READY_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 600.0
CHALLENGE_LIFETIME_S = 3
"""Seconds, as the embedded run uses: short enough for the runner to wait out expiry."""
START_RETRIES = 3

KILLED, SURVIVED, TIMEOUT = "killed", "survived", "timeout"


@dataclass
class Outcome:
    id: str
    flow: str | None
    requirement: str | None
    where: str
    mutation: str
    status: str
    reason: str = ""
    phase: str = ""
    failed_checks: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_tree(into: Path) -> Path:
    """A copy of spec/ and reference/ laid out as installed, compiled once, so a mutant
    only recompiles the file it changes."""
    tree = into / "base"
    for package in TREE_PACKAGES:
        shutil.copytree(ROOT / package, tree / "keyflows" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "keyflows")],
                   check=True)
    return tree


def mutant_tree(base: Path, into: Path, site: Site | None) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="m-", dir=into))
    shutil.copytree(base / "keyflows", tree / "keyflows")
    if site is not None:
        target = tree / "keyflows" / site.file
        mutated = site.apply((ROOT / site.file).read_bytes())
        ast.parse(mutated, filename=site.id)  # a mutant that does not parse is a harness bug
        target.write_bytes(mutated)
        for stale in (target.parent / "__pycache__").glob(target.stem + ".*.pyc"):
            stale.unlink()
    return tree


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines()
                 if ln.strip()]
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(tree: Path, account_port: int) -> tuple[Server, str | None]:
    """Start the server from `tree`; the note says why it is not ready, if it is not."""
    port = free_port()
    key = tree / "master.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    ready = tree / "ready"
    log = tree / "server.log"
    command = [sys.executable, str(SERVE_MUTANT), str(tree), "--host", "127.0.0.1",
               "--port", str(port), "--db", str(tree / "keyflows.sqlite3"),
               "--account-server", f"http://127.0.0.1:{account_port}",
               "--ready-file", str(ready), "--master-key-file", str(key),
               "--challenge-lifetime", str(CHALLENGE_LIFETIME_S)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)
           and not k.startswith("KEYFLOWS_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=tree)
    server = Server(process, log, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            return server, None
        if process.poll() is not None:
            return server, f"the server exited with status {process.returncode}: " \
                           f"{server.last_line()}"
        time.sleep(0.05)
    return server, f"the server was not ready within {READY_TIMEOUT_S:.0f} s"


@dataclass
class Phase:
    code: int | None  # None: timed out
    failed: list[str]
    skipped: int
    message: str


def run_runner(base_url: str, account_port: int, patterns: list[str], report: Path) -> Phase:
    command = [sys.executable, "-m", "keyflows.conformance", "conformance",
               "--base-url", base_url, "--account-listen", f"127.0.0.1:{account_port}",
               "--exitfirst", "--report-json", str(report)]
    for pattern in patterns:
        command += ["--select", pattern]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NO_COLOR"] = "1"
    try:
        done = subprocess.run(command, capture_output=True, env=env, timeout=PHASE_TIMEOUT_S,
                              cwd=report.parent)
    except subprocess.TimeoutExpired:
        return Phase(None, [], 0, f"the runner did not finish within {PHASE_TIMEOUT_S:.0f} s")
    failed: list[str] = []
    skipped = 0
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        failed = [r["id"] for r in data.get("checks", [])
                  if r.get("status") in ("failed", "errored")]
        skipped = sum(1 for r in data.get("checks", []) if r.get("status") == "skipped")
    lines = [ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip()]
    message = lines[-1].strip() if lines else ""
    return Phase(done.returncode, failed, skipped, message)


def phases_for(flow: str | None, flows: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """The site's own flow first (most mutants die there), then all the others."""
    first = flow if flow in flows else flows[0]
    rest = [f for f in flows if f != first]
    return [(first, [first])] + ([("rest", rest)] if rest else [])


def judge(site: Site | None, flow: str | None, base: Path, workdir: Path,
          flows: tuple[str, ...]) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(id=site.id if site else "(pristine)", flow=flow,
                      requirement=None, where=site.where if site else "",
                      mutation=site.description if site else "", status=SURVIVED)
    for _attempt in range(START_RETRIES):
        tree = mutant_tree(base, workdir, site)
        try:
            retry = _judge_in(tree, outcome, flow, flows)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        if not retry:
            break
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _judge_in(tree: Path, outcome: Outcome, flow: str | None,
              flows: tuple[str, ...]) -> bool:
    """Fill in `outcome`; True if the run must be repeated (a port was taken)."""
    account_port = free_port()
    server, note = start_server(tree, account_port)
    try:
        skipped = 0
        for name, patterns in phases_for(flow, flows):
            phase = run_runner(server.base_url, account_port, patterns,
                               tree / f"report-{name}.json")
            skipped += phase.skipped
            if phase.code == 2 and "account server" in phase.message \
                    and "address" in phase.message.lower():
                return True  # the runner's account-server port was taken meanwhile
            if phase.code == 0:
                continue
            outcome.phase = name
            outcome.failed_checks = phase.failed
            crash = _server_note(server, note)
            if phase.code is None:
                outcome.status = TIMEOUT
                outcome.reason = phase.message + crash
            else:
                outcome.status = KILLED
                outcome.reason = (f"runner exit {phase.code}: "
                                  + (", ".join(phase.failed[:3]) or phase.message) + crash)
            return False
        outcome.skipped = skipped
        outcome.reason = f"every check passed ({skipped} skipped)" + _server_note(server, note)
        return False
    finally:
        server.stop()


def _server_note(server: Server, note: str | None) -> str:
    if note:
        return f"; {note}"
    if server.process.poll() is not None:
        return f"; the server exited with status {server.process.returncode}: " \
               f"{server.last_line()}"
    return ""
