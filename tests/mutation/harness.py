"""Run each mutant: a reference server started from a mutated copy of the tree, checked by
the pristine conformance runner over HTTP.

At the start the packages are copied once into a snapshot (keyflows/spec, reference,
conformance, vectors; compiled), so editing the working tree during a run changes
nothing. For one mutant: copy the snapshot's spec/ and reference/, write the mutated
file, start the server from that copy (serve_mutant.py, which asserts that the mutated
copies are what it imports), then run `keyflows conformance --base-url ...
--account-listen ... --exitfirst` from the pristine snapshot, first on the checks of the
site's flow and, if they all pass, on every other check. The mutant is killed when the
runner reports a failure (exit status 1) or cannot run against the server (exit status
2); it survives when the runner passes everything.
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
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keyflows.conformance.embedded import server_arguments

from .sites import ROOT, Site

SERVE_MUTANT = Path(__file__).resolve().parent / "serve_mutant.py"
SNAPSHOT_PACKAGES = ("spec", "reference", "conformance", "vectors")
MUTANT_PACKAGES = ("spec", "reference")
READY_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 600.0
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


class Children:
    """Every process the run starts, so an interrupt stops them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self.stopping:
                raise Interrupted()
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, **kwargs)
            self._live.add(process)
            return process

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._live.discard(process)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            live = list(self._live)
        for process in live:
            stop(process)


class Interrupted(Exception):
    """The run is being stopped."""


CHILDREN = Children()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    CHILDREN.forget(process)


def snapshot(into: Path) -> Path:
    """The packages laid out as installed (keyflows/spec, ...), compiled once, so a mutant
    only recompiles the file it changes and the working tree may change meanwhile."""
    tree = into / "pristine"
    for package in SNAPSHOT_PACKAGES:
        shutil.copytree(ROOT / package, tree / "keyflows" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "keyflows")],
                   check=True)
    return tree



def mutant_tree(base: Path, into: Path, site: Site | None) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="m-", dir=into))
    for package in MUTANT_PACKAGES:
        shutil.copytree(base / "keyflows" / package, tree / "keyflows" / package)
    if site is not None:
        target = tree / "keyflows" / site.file
        mutated = site.apply((base / "keyflows" / site.file).read_bytes())
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
        stop(self.process)


def start_server(tree: Path, account_port: int) -> tuple[Server, str | None]:
    """Start the server from `tree` with the embedded run's options; the note says why
    it is not ready, if it is not."""
    ready = tree / "ready"
    log = tree / "server.log"
    options = server_arguments(tree, f"http://127.0.0.1:{account_port}", ready)
    command = [sys.executable, str(SERVE_MUTANT), str(tree), *options]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)
           and not k.startswith("KEYFLOWS_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with open(log, "wb") as out:
        process = CHILDREN.start(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=tree)
    server = Server(process, log, "")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            server.base_url = ready.read_text().strip().rstrip("/")
            return server, None
        if process.poll() is not None:
            break
        time.sleep(0.05)
    # The runner still runs, against a port nobody listens on, and reports it (exit 2).
    server.base_url = f"http://127.0.0.1:{free_port()}"
    if process.poll() is not None:
        return server, f"the server exited with status {process.returncode}: " \
                       f"{server.last_line()}"
    return server, f"the server was not ready within {READY_TIMEOUT_S:.0f} s"


@dataclass
class Phase:
    code: int | None  # None: timed out
    failed: list[str]
    skipped: int
    message: str


def run_runner(pristine: Path, base_url: str, account_port: int, patterns: list[str],
               report: Path) -> Phase:
    """The pristine runner (imported from the snapshot) against the mutant server."""
    command = [sys.executable, "-m", "keyflows.conformance", "conformance",
               "--base-url", base_url, "--account-listen", f"127.0.0.1:{account_port}",
               "--exitfirst", "--report-json", str(report)]
    for pattern in patterns:
        command += ["--select", pattern]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFLOWS_")}
    env["PYTHONPATH"] = str(pristine)
    env["NO_COLOR"] = "1"
    stderr = report.with_suffix(".stderr")
    with open(stderr, "wb") as err:
        process = CHILDREN.start(command, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                 cwd=report.parent)
        try:
            process.wait(timeout=PHASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return Phase(None, [], 0,
                         f"the runner did not finish within {PHASE_TIMEOUT_S:.0f} s")
        finally:
            stop(process)
    if CHILDREN.stopping:
        raise Interrupted()
    failed: list[str] = []
    skipped = 0
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        failed = [r["id"] for r in data.get("checks", [])
                  if r.get("status") in ("failed", "errored") and not r.get("not_run")]
        skipped = sum(1 for r in data.get("checks", []) if r.get("status") == "skipped")
    lines = [ln for ln in stderr.read_text(errors="replace").splitlines() if ln.strip()]
    message = lines[-1].strip() if lines else ""
    return Phase(process.returncode, failed, skipped, message)


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
            retry = _judge_in(base, tree, outcome, flow, flows)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        if not retry:
            break
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _judge_in(pristine: Path, tree: Path, outcome: Outcome, flow: str | None,
              flows: tuple[str, ...]) -> bool:
    """Fill in `outcome`; True if the run must be repeated (a port was taken)."""
    account_port = free_port()
    server, note = start_server(tree, account_port)
    try:
        skipped = 0
        for name, patterns in phases_for(flow, flows):
            phase = run_runner(pristine, server.base_url, account_port, patterns,
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
