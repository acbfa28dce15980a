"""The conformance runner, end to end: it passes the reference server (embedded, as a
real `keyflows conformance` subprocess, and in-process through --base-url), and it
catches every deliberately broken server in tests/broken_servers.py (the runner in this
process unless the variant patches code the runner shares: tests/runner_runs.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_servers import STALE_VERSION_CHECKS, VARIANTS, BrokenVariant
from runner_runs import run_conformance as run_runner
from servers import RunningServer, start_reference_server

KEYFLOWS = [sys.executable, "-m", "keyflows.conformance"]
FLOWS = {"common", "key-derivation", "keypair-publication", "session-challenge", "envelope",
         "hashchain", "lock-layering"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EMBEDDED_RUN_BOUND_S = 300
"""A bound against hangs for one whole embedded run: about 30 s on 2 quiet cores (the
time checks wait out 1 s lifetimes), four times that at a load of 20."""


def run_conformance(*args: str, timeout: float = EMBEDDED_RUN_BOUND_S
                    ) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process group: on a timeout the whole group is killed, so the
    embedded reference server it started does not outlive the test."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [*KEYFLOWS, "conformance", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


class Target:
    """A server under test running in this process, trusting the account server the
    runner will start on `account_port`."""

    def __init__(self, server: RunningServer, account_port: int) -> None:
        self.server = server
        self.account_port = account_port

    def run(self, tmp_path: Path, *extra: str, monkeypatch: pytest.MonkeyPatch | None = None
            ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """The runner against this server (in this process unless `monkeypatch` changed
        code the runner shares with the server)."""
        report = tmp_path / f"report-{time.monotonic_ns()}.json"
        done = run_runner("--base-url", self.server.url, "--account-listen",
                          f"127.0.0.1:{self.account_port}", "--report-json", str(report),
                          *extra, monkeypatch=monkeypatch)
        assert report.exists(), done.stderr
        return done, json.loads(report.read_text())


def start_target(tmp_path: Path, variant: BrokenVariant | None = None,
                 **fields: Any) -> Target:
    """The reference server (broken as `variant` says), with the variant's settings and
    then `fields` over the test limits."""
    port = free_port()
    wrapper = variant.wrapper if variant else None
    settings = {**(variant.settings if variant else {}), **fields}
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3",
                                    app_wrapper=wrapper, **settings)
    return Target(server, port)


@pytest.fixture
def reference_target(tmp_path: Path) -> Iterator[Target]:
    target = start_target(tmp_path)
    yield target
    target.server.stop()


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    """One embedded run for the module: a real `keyflows conformance` subprocess."""
    tmp = tmp_path_factory.mktemp("embedded")
    started = time.monotonic()
    done = run_conformance("--report-json", str(tmp / "report.json"),
                           "--junit-xml", str(tmp / "junit.xml"),
                           "--report-html", str(tmp / "report.html"))
    elapsed = time.monotonic() - started
    assert elapsed < EMBEDDED_RUN_BOUND_S, f"embedded run took {elapsed:.1f} s"
    return done, json.loads((tmp / "report.json").read_text()), tmp / "junit.xml"


def test_embedded_html_report_lists_every_check_with_the_json_counts(embedded_run: Any
                                                                      ) -> None:
    _, report, junit = embedded_run
    html = (junit.parent / "report.html").read_text(encoding="utf-8")
    ids = re.findall(r'data-check-id="([^"]+)"', html)
    assert ids == [c["id"] for c in report["checks"]]
    for status in ("passed", "failed", "skipped", "errored"):
        total = re.search(rf'<tr data-flow="all">.*?data-status="{status}">(\d+)<', html)
        assert total is not None and int(total.group(1)) == report["summary"][status]
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", html.split("<main>")[0])
    assert "<script src" not in html and "<link" not in html


def test_embedded_run_passes(embedded_run: Any) -> None:
    done, report, _ = embedded_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["mode"] == "embedded"
    assert report["target"].startswith("http://127.0.0.1:")
    summary = report["summary"]
    assert summary["failed"] == 0 and summary["errored"] == 0, done.stdout
    assert summary["passed"] >= 40
    assert {c["flow"] for c in report["checks"]} == FLOWS
    for entry in report["checks"]:
        assert set(entry) >= {"id", "flow", "status", "requirements", "message"}
        assert entry["id"].startswith(entry["flow"] + "/")
        assert entry["requirements"]
    assert "embedded reference server: http://127.0.0.1:" in done.stdout
    assert f"{len(report['checks'])} checks against" in done.stdout


def test_embedded_junit_xml_parses(embedded_run: Any) -> None:
    _, report, junit = embedded_run
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == FLOWS
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(report["checks"])
    assert not root.findall(".//failure") and not root.findall(".//error")
    total = sum(int(s.get("tests", "0")) for s in suites.values())
    assert total == len(cases)


def test_in_process_reference_passes_over_base_url(reference_target: Target,
                                                   tmp_path: Path) -> None:
    """The control for the broken variants: the unbroken server, started the same way."""
    done, report = reference_target.run(tmp_path)
    assert done.returncode == 0, done.stdout
    assert report["mode"] == "external"
    assert report["summary"]["failed"] == 0 and report["summary"]["errored"] == 0
    line = done.stdout.splitlines()[0]
    assert line == (f"account server for this run: http://127.0.0.1:"
                    f"{reference_target.account_port} (configure the server under test to "
                    f"trust it)")


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_server_is_caught(variant: BrokenVariant, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    target = start_target(tmp_path, variant)
    # The areas of the checks that must fail (flow/area), not the whole suite: the suite
    # pays for one full run per variant otherwise.
    areas = sorted({"/".join(cid.split("/")[:2]) for cid in variant.must_fail})
    try:
        done, report = target.run(tmp_path, *(a for area in areas for a in ("--select", area)),
                                  monkeypatch=monkeypatch)
    finally:
        target.server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = statuses(report)
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}"
    # Every failure is explained on the terminal: expectation, answer, trace, reproducer.
    first = variant.must_fail[0]
    assert f"FAIL   {first}" in done.stdout
    for marker in ("  expected: ", "  got:      ", "  trace (secrets redacted):", "curl -sS -i"):
        assert marker in done.stdout, marker


def test_known_failing_turns_failures_into_a_pass_and_flags_stale_entries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variant = next(v for v in VARIANTS if v.name == "accepts-stale-key-version")
    assert variant.patch is not None
    variant.patch(monkeypatch)
    target = start_target(tmp_path, variant)
    try:
        known = tmp_path / "known-failing.txt"
        known.write_text("# KP-8 is not implemented yet\n"
                         "keypair-publication/replace/*-version-refused   # replays\n"
                         "keypair-publication/replace/identical-replay-refused\n"
                         "keypair-publication/replace/old-record-replay-refused\n"
                         "keypair-publication/delete/deleted-version-replay-refused\n")
        select = ["--select", "keypair-publication/replace", "--select",
                  "keypair-publication/delete"]
        done, report = target.run(tmp_path, "--known-failing", str(known), *select,
                                  monkeypatch=monkeypatch)
        assert done.returncode == 0, done.stdout
        known_ids = {c["id"] for c in report["checks"] if c["known_failing"]}
        assert set(STALE_VERSION_CHECKS) <= known_ids
        assert report["summary"]["known_failing"] == len(known_ids)
        assert "known failing" in done.stdout

        # A listed check that passes (the server got fixed) fails the run.
        monkeypatch.undo()
        done, report = target.run(tmp_path, "--known-failing", str(known), *select)
        assert done.returncode == 1, done.stdout
        stale = {c["id"] for c in report["checks"] if c["stale_known_failing"]}
        assert set(STALE_VERSION_CHECKS) <= stale
        assert ("stale known-failing entry: keypair-publication/replace/same-version-refused "
                "passes now") in done.stdout
    finally:
        target.server.stop()


def test_select_runs_only_matching_checks(reference_target: Target, tmp_path: Path) -> None:
    done, report = reference_target.run(tmp_path, "--select", "common/capabilities/*",
                                        "--select", "key-derivation/argon2-params")
    assert done.returncode == 0, done.stdout
    ids = [c["id"] for c in report["checks"]]
    assert "common/capabilities/shape" in ids
    assert all(i.startswith(("common/capabilities/", "key-derivation/argon2-params/"))
               for i in ids)
    assert len(ids) >= 7


def test_unreachable_target_exits_2_with_one_line() -> None:
    done = run_conformance("--base-url", "http://127.0.0.1:9", timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == ("keyflows conformance: cannot reach "
                                   "http://127.0.0.1:9/v1/capabilities: connection refused")
    assert "Traceback" not in done.stdout + done.stderr


def test_trace_redacts_tokens_and_key_material(reference_target: Target,
                                               tmp_path: Path) -> None:
    done, _ = reference_target.run(tmp_path, "--trace", "--select",
                                   "keypair-publication/fetch/own-record-unchanged")
    assert done.returncode == 0
    out = done.stdout
    assert "> authorization: Bearer <redacted 32 chars>" in out
    assert '"ciphertext":"<redacted 107 chars>"' in out
    assert '"nonce":"<redacted 16 chars>"' in out
    assert '"salt":"<redacted 22 chars>"' in out
    import re

    assert not re.search(r"Bearer [A-Za-z0-9_-]{20,}", out)
