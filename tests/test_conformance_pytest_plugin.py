"""The pytest plugin, run as an implementer would: `pytest -p
keyflows.conformance.pytest_plugin --keyflows-base-url URL --keyflows-account-listen
HOST:PORT` in a project of their own (a pytester directory, separate processes)."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_servers import Scope, compact, rewriting
from servers import RunningServer, start_reference_server

from keyflows.conformance.registry import all_checks

pytest_plugins = ["pytester"]
# Imported once, before pytester snapshots sys.modules (it would drop the check modules
# after a test, and a second import would register every check again).
CHECK_IDS = [c.id for c in all_checks()]
# Other installed plugins stay out: importing them would cost seconds per run.
QUIET = ["-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest",
         "-p", "no:anyio"]
PLUGIN = ["-p", "keyflows.conformance.pytest_plugin", *QUIET]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ORACLE_404 = compact({"type": "urn:keyflows:problem:not-found", "title": "Not found",
                      "status": 404, "detail": "No keypair is published here."})


def half_broken(app: Any) -> Any:
    """Hides hashchain from the capabilities (its checks skip); tells a caller without
    credentials that the app `absent-app` has no record (a 404 where the uniform 401 is
    due: common/auth/uniform-401 fails, and nothing else)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == "/v1/capabilities" and status == 200:
            caps = json.loads(body)
            caps["flows"] = [f for f in caps["flows"] if f != "hashchain"]
            body = compact(caps)
        if status == 401 and scope["path"].endswith("/apps/absent-app/keypair"):
            status, body = 404, ORACLE_404
            headers = [(k, v) for k, v in headers if k.lower() != b"www-authenticate"]
        return status, headers, body

    return rewriting(rewrite)(app)


class Served:
    def __init__(self, server: RunningServer, port: int) -> None:
        self.server, self.port = server, port

    def args(self) -> list[str]:
        return ["--keyflows-base-url", self.server.url, "--keyflows-account-listen",
                f"127.0.0.1:{self.port}"]


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "k.sqlite3")
    yield Served(server, port)
    server.stop()


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "k.sqlite3",
                                    app_wrapper=half_broken)
    yield Served(server, port)
    server.stop()


@pytest.mark.slow
def test_every_check_is_an_item_and_runs_against_a_running_reference_server(
        pytester: pytest.Pytester, reference: Served) -> None:
    """One item per check, in the registry's order; two flows run (the embedded run of
    test_conformance.py is where the reference passes them all)."""
    listed = pytester.runpytest_subprocess(*PLUGIN, *reference.args(), "--collect-only", "-q")
    assert [line.removeprefix("keyflows::") for line in listed.stdout.lines
            if line.startswith("keyflows::")] == CHECK_IDS
    result = pytester.runpytest_subprocess(*PLUGIN, *reference.args(), "--junitxml=j.xml",
                                           "-k", "common/capabilities or key-derivation",
                                           timeout=300)
    junit = ET.parse(pytester.path / "j.xml").getroot()
    names = [case.get("name") for case in junit.iter("testcase")]
    assert names == [i for i in CHECK_IDS
                     if i.startswith(("common/capabilities/", "key-derivation/"))]
    assert junit.findall(".//failure") == [] and junit.findall(".//error") == []
    skipped = len(junit.findall(".//skipped"))
    result.assert_outcomes(passed=len(names) - skipped, skipped=skipped)
    result.stdout.fnmatch_lines([f"keyflows: checking {reference.server.url} (external; *"])


def test_selection_markers_skips_and_known_failing_as_strict_xfail(
        pytester: pytest.Pytester, broken: Served) -> None:
    known = pytester.path / "known-failing.txt"
    known.write_text("common/auth/uniform-401   # an existence oracle\n"
                     "common/auth/missing-token # passes: a stale entry\n")
    result = pytester.runpytest_subprocess(
        *PLUGIN, *broken.args(), "--keyflows-known-failing", str(known), "-rA",
        "-k", "common/auth or hashchain/log", "-m", "API-4 or hashchain", timeout=120)
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 1 and outcomes.get("failed") == 1, out
    assert outcomes.get("skipped", 0) >= 1 and outcomes.get("passed", 0) >= 3
    result.stdout.fnmatch_lines([
        f"collected {len(CHECK_IDS)} items / * deselected / * selected",
        "SKIPPED [[]1[]] *hashchain.py:*: the server does not advertise flow hashchain in "
        "/v1/capabilities",
        "XFAIL keyflows::common/auth/uniform-401*",
        "FAILED keyflows::common/auth/missing-token*XPASS(strict)*",
        "*1 failed, * passed, * skipped, * deselected, 1 xfailed*"])
    assert "keyflows::common/auth/unknown-token" in out  # selected by -k and -m API-4
    assert "common/capabilities/shape" not in out        # deselected by -k


def test_failures_show_expected_got_trace_and_reproducer(
        pytester: pytest.Pytester, broken: Served) -> None:
    result = pytester.runpytest_subprocess(*PLUGIN, *broken.args(), "-k", "common/auth/uniform-401",
                                           timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*_ common/auth/uniform-401 _*",
        "FAILED: GET an absent record with no Authorization header: expected 401, got 404",
        "  expected: status 401", "  got:      404 application/problem+json *not-found*",
        "  trace (secrets redacted):", "  reproduce*", "    curl -sS -i -X GET *",
        f"  re-run:   keyflows conformance --base-url {broken.server.url} --account-listen "
        f"127.0.0.1:{broken.port} --select 'common/auth/uniform-401'"])


def test_without_a_base_url_the_embedded_server_is_checked(
        pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*PLUGIN, "--keyflows", "-k",
                                           "common/capabilities/shape", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["keyflows: checking http://127.0.0.1:* (embedded; *"])


def test_inert_without_keyflows_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own="""
        import sys

        def test_own_project():
            assert "keyflows.conformance.orchestrator" not in sys.modules
    """)
    result = pytester.runpytest_subprocess(*QUIET, "-v")
    result.stdout.fnmatch_lines(["*collected 1 item", "test_own.py::test_own_project PASSED*"])
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_subprocess(*PLUGIN, "--keyflows-select", "no/such")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*keyflows: --select no/such matches no check*"])
