"""Run each mutant: a reference server started from a mutated copy of the tree, checked by
the pristine conformance runner over HTTP.

At the start the packages are copied once into a snapshot (keyflows/spec, reference,
conformance, vectors; compiled), so editing the working tree during a run changes
nothing. For one mutant: copy the snapshot's spec/ and reference/, write the mutated
file, start the server from that copy (serve_mutant.py, which asserts that the mutated
copies are what it imports; prepare() does this while the previous mutant is checked),
then run `keyflows conformance --base-url ... --account-listen ... --exitfirst` from the
pristine snapshot in phases: the checks citing the site's requirement, the rest of its
flow, every other check. The mutant is
killed when the runner reports a failure (exit status 1) or cannot run against the
server (exit status 2); it survives when the runner passes everything.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keyflows.conformance.embedded import hashchain_environment, server_arguments

from .sites import ROOT, Site

SERVE_MUTANT = Path(__file__).resolve().parent / "serve_mutant.py"
RUNNER_WORKER = Path(__file__).resolve().parent / "runner_worker.py"
SNAPSHOT_PACKAGES = ("spec", "reference", "conformance", "vectors")
MUTANT_PACKAGES = ("spec", "reference")
READY_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 600.0
START_RETRIES = 3
MAX_FLAKY = 3
"""Failing checks per mutant that are run again alone on a fresh server; past these, a
failing check kills the mutant at once."""

KILLED, SURVIVED, TIMEOUT = "killed", "survived", "timeout"
LISTED = "listed"
"""A site judged equivalent in equivalent.yaml, not run (a default run skips them)."""


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
    flaky: list[str] = field(default_factory=list)
    """Checks that failed, then passed alone on a fresh server of the same mutant: not
    taken as a kill (timing, or state the checks before them left)."""
    by_check: bool = False
    """Killed by a check that failed against a running server (not by a server that did
    not start or exited, nor by a runner that timed out): only such a kill shows that the
    site's requirement changes an HTTP answer (observed.yaml)."""

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
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        with self._lock:
            if self.stopping:
                raise Interrupted()
            process = subprocess.Popen(command, **kwargs)
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
    # as the embedded run: the server submits its checkpoints to the runner's witness and
    # takes the embedded run's checkpoint lag
    env.update(hashchain_environment(f"http://127.0.0.1:{account_port}"))
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
    passed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckInfo:
    id: str
    flow: str
    requirements: tuple[str, ...]


class HarnessError(Exception):
    """The harness itself cannot go on (the pristine runner does not start)."""


class RunnerWorker:
    """One long-lived pristine runner process (runner_worker.py), used by one thread."""

    def __init__(self, pristine: Path) -> None:
        self.pristine = pristine
        self.process: subprocess.Popen[bytes] | None = None
        self.checks: list[CheckInfo] = []

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFLOWS_")}
        env["PYTHONPATH"] = str(self.pristine)
        env["NO_COLOR"] = "1"
        self.process = CHILDREN.start([sys.executable, str(RUNNER_WORKER), str(self.pristine)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=env,
                                      cwd=self.pristine.parent)
        hello = self._answer(READY_TIMEOUT_S)
        if hello is None or not hello.get("ready"):
            raise HarnessError(f"the pristine runner did not start: {hello}")
        self.checks = [CheckInfo(c["id"], c["flow"], tuple(c["requirements"]))
                       for c in hello["checks"]]

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def run(self, arguments: list[str], timeout: float) -> tuple[int | None, str]:
        """(exit status, last stderr line) of `keyflows conformance ARGUMENTS`; None
        when it did not finish in time (the worker is then replaced)."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(arguments).encode() + b"\n")
        self.process.stdin.flush()
        answer = self._answer(timeout)
        if CHILDREN.stopping:
            raise Interrupted()
        if answer is None:
            self.close()
            return None, f"the runner did not finish within {timeout:.0f} s"
        return int(answer["code"]), str(answer.get("message", ""))

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


class Workers:
    """A pool of RunnerWorkers, one per thread at a time."""

    def __init__(self, pristine: Path) -> None:
        self.pristine = pristine
        self._idle: queue.SimpleQueue[RunnerWorker] = queue.SimpleQueue()
        self._all: list[RunnerWorker] = []
        self._lock = threading.Lock()

    def acquire(self) -> RunnerWorker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            worker = RunnerWorker(self.pristine)
            with self._lock:
                self._all.append(worker)
            return worker

    def release(self, worker: RunnerWorker) -> None:
        self._idle.put(worker)

    def checks(self) -> list[CheckInfo]:
        worker = self.acquire()
        try:
            if not worker.checks:
                worker._start()
            return list(worker.checks)
        finally:
            self.release(worker)

    def close(self) -> None:
        with self._lock:
            for worker in self._all:
                worker.close()


def run_runner(worker: RunnerWorker, base_url: str, account_port: int, check_ids: list[str],
               report: Path) -> Phase:
    """The pristine runner against the mutant server, on exactly these checks."""
    arguments = ["--base-url", base_url, "--account-listen", f"127.0.0.1:{account_port}",
                 "--exitfirst", "--report-json", str(report)]
    for check_id in check_ids:
        arguments += ["--select", check_id]
    code, message = worker.run(arguments, PHASE_TIMEOUT_S)
    failed: list[str] = []
    passed: list[str] = []
    skipped = 0
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        report.unlink()
        failed = [r["id"] for r in data.get("checks", [])
                  if r.get("status") in ("failed", "errored") and not r.get("not_run")]
        passed = [r["id"] for r in data.get("checks", []) if r.get("status") == "passed"]
        skipped = sum(1 for r in data.get("checks", []) if r.get("status") == "skipped")
    return Phase(code, failed, skipped, message, passed)


def phases_for(requirement: str | None, flow: str | None,
               checks: list[CheckInfo]) -> list[tuple[str, list[str]]]:
    """Checks citing the site's requirement first, then the rest of its flow, then all
    others: most mutants die in the first, and a survivor runs every check once. (The
    order matters: some checks kill a mutant only on a server earlier checks have
    filled, so a check is never moved ahead of its phase.)"""
    citing = [c.id for c in checks if requirement in c.requirements]
    own = [c.id for c in checks if c.flow == flow and c.id not in citing]
    rest = [c.id for c in checks if c.id not in citing and c.id not in own]
    return [(name, ids) for name, ids in (("requirement", citing), ("flow", own),
                                          ("rest", rest)) if ids]


@dataclass
class Prepared:
    """A mutant's tree with its server started (or failing to start), not yet judged."""
    site: Site | None
    tree: Path
    server: Server
    note: str | None
    account_port: int


def prepare(site: Site | None, base: Path, workdir: Path) -> Prepared:
    """Copy the tree, mutate it and start its server: the part of a mutant that needs no
    runner, so it can run while the runner checks the previous mutant."""
    tree = mutant_tree(base, workdir, site)
    account_port = free_port()
    try:
        server, note = start_server(tree, account_port)
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise
    return Prepared(site, tree, server, note, account_port)


class Retired:
    """Stops servers and removes their trees in the background: a judged mutant's
    server need not be waited for before the next mutant starts."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def retire(self, prepared: Prepared) -> None:
        thread = threading.Thread(target=_retire, args=(prepared,), daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def join(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


def _retire(prepared: Prepared) -> None:
    prepared.server.stop()
    shutil.rmtree(prepared.tree, ignore_errors=True)


def judge(site: Site | None, flow: str | None, requirement: str | None, base: Path,
          workdir: Path, workers: Workers, checks: list[CheckInfo],
          prepared: Prepared | None = None,
          retire: Callable[[Prepared], None] | None = None) -> Outcome:
    """The verdict on one mutant (`site`; None: the pristine server). `prepared`: its
    server already started by prepare(); `retire`: how a judged server is stopped and
    its tree removed (default: at once, waiting for it)."""
    retire = retire or _retire
    started = time.monotonic()
    outcome = Outcome(id=site.id if site else "(pristine)", flow=flow,
                      requirement=requirement, where=site.where if site else "",
                      mutation=site.description if site else "", status=SURVIVED)
    worker = workers.acquire()
    try:
        for _attempt in range(START_RETRIES):
            ready = prepared or prepare(site, base, workdir)
            prepared = None
            try:
                retry = _judge_in(worker, ready, outcome,
                                  phases_for(requirement, flow, checks),
                                  fresh=lambda: prepare(site, base, workdir), retire=retire)
            finally:
                retire(ready)
            if not retry:
                break
    finally:
        workers.release(worker)
        if prepared is not None:  # not used: the first attempt failed before it
            retire(prepared)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _judge_in(worker: RunnerWorker, ready: Prepared, outcome: Outcome,
              phases: list[tuple[str, list[str]]], *, fresh: Callable[[], Prepared],
              retire: Callable[[Prepared], None]) -> bool:
    """Fill in `outcome`; True if the run must be repeated (a port was taken). A failing
    check is run again alone on a fresh server of the same mutant (`fresh`): only if it
    fails there too is the mutant killed."""
    tree, server, note, account_port = ready.tree, ready.server, ready.note, ready.account_port
    skipped = 0
    for name, check_ids in phases:
        remaining = list(check_ids)
        while remaining:
            phase = run_runner(worker, server.base_url, account_port, remaining,
                               tree / f"report-{name}.json")
            skipped += phase.skipped
            if phase.code == 2 and "account server" in phase.message \
                    and "address" in phase.message.lower():
                return True  # the runner's account-server port was taken meanwhile
            if phase.code == 0:
                break
            if phase.code == 1 and phase.failed and len(outcome.flaky) < MAX_FLAKY \
                    and _passes_alone(worker, fresh, retire, phase.failed[0]):
                # Failed, then passed alone on a fresh server of the same mutant: the
                # failure came from timing or from what the checks before it left on
                # the server (a rate limit they drained), not from the mutant. Go on
                # with what the phase did not pass.
                outcome.flaky.append(phase.failed[0])
                done = set(phase.passed) | {phase.failed[0]}
                remaining = [c for c in remaining if c not in done]
                continue
            _killed(outcome, name, phase, _server_note(server, note))
            return False
    outcome.skipped = skipped
    outcome.reason = f"every check passed ({skipped} skipped)" + _server_note(server, note)
    return False


def _passes_alone(worker: RunnerWorker, fresh: Callable[[], Prepared],
                  retire: Callable[[Prepared], None], check_id: str) -> bool:
    again = fresh()
    try:
        if again.note:  # the fresh server did not start: no evidence either way
            return False
        phase = run_runner(worker, again.server.base_url, again.account_port, [check_id],
                           again.tree / "report-again.json")
    finally:
        retire(again)
    return phase.code == 0 and phase.passed == [check_id]


def _killed(outcome: Outcome, name: str, phase: Phase, crash: str) -> None:
    outcome.phase = name
    outcome.failed_checks = phase.failed
    if phase.code is None:
        outcome.status = TIMEOUT
        outcome.reason = phase.message + crash
    else:
        outcome.status = KILLED
        outcome.by_check = phase.code == 1 and bool(phase.failed) and not crash
        outcome.reason = (f"runner exit {phase.code}: "
                          + (", ".join(phase.failed[:3]) or phase.message) + crash)


def _server_note(server: Server, note: str | None) -> str:
    if note:
        return f"; {note}"
    if server.process.poll() is not None:
        return f"; the server exited with status {server.process.returncode}: " \
               f"{server.last_line()}"
    return ""
