"""The conformance runner against servers that fight back: slow drips, 100 MB bodies,
servers that die, servers that never consult the account server, answers with missing
members, secrets echoed back; and Ctrl-C in the middle of a run. Reports are written
every time; nothing ends in a traceback.

(The five-minute, default-options acceptance run against the drip and 100 MB servers is
`nox -s conformance-hostile`; these tests use short deadlines to stay fast.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_servers import Scope, compact, rewriting
from hostile_servers import hostile, run_measured
from servers import RunningServer, start_reference_server

KEYFLOWS = [sys.executable, "-m", "keyflows.conformance", "conformance"]
PEAK_RSS_LIMIT_KB = 300 * 1024
BODY_GROWTH_LIMIT_KB = 48 * 1024


def run_keyflows(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str],
                                                             float, int]:
    """Run the runner as a process; (result, seconds, its own peak resident memory in KiB)."""
    return run_measured("conformance", *args, timeout=timeout)


def reports(tmp_path: Path) -> list[str]:
    return ["--report-json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "r.xml")]


def read_reports(tmp_path: Path) -> dict[str, Any]:
    """Both reports parse; the JSON one lists every check exactly once."""
    report: dict[str, Any] = json.loads((tmp_path / "r.json").read_text())
    ET.parse(tmp_path / "r.xml")
    ids = [c["id"] for c in report["checks"]]
    assert len(ids) == len(set(ids))
    assert sum(report["summary"][s] for s in ("passed", "failed", "skipped", "errored")) \
        == len(ids)
    return report


# --- hostile servers -------------------------------------------------------------------------

def test_drip_server_stops_the_run_early_with_one_message(tmp_path: Path) -> None:
    with hostile("drip", interval=0.5) as url:
        done, elapsed, _ = run_keyflows("--base-url", url, "--request-deadline", "1",
                                        *reports(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 60
    assert "Traceback" not in done.stdout + done.stderr
    report = read_reports(tmp_path)
    assert report["stopped_early"].startswith("the server stopped answering")
    assert report["summary"]["not_run"] > 100
    assert done.stdout.count("stopped early: the server stopped answering") == 1
    shape = next(c for c in report["checks"] if c["id"] == "common/capabilities/shape")
    assert shape["status"] == "errored" and "no complete answer within 1.0 s" in \
        shape["message"]


def test_huge_bodies_are_cut_at_the_cap_and_fail_checks(tmp_path: Path) -> None:
    (tmp_path / "baseline").mkdir()
    with hostile("gone") as url:  # the runner's own footprint, for comparison
        _, _, baseline = run_keyflows("--base-url", url, *reports(tmp_path / "baseline"))
    with hostile("huge") as url:
        done, _, rss = run_keyflows("--base-url", url, *reports(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert rss < PEAK_RSS_LIMIT_KB, f"peak RSS {rss} KiB"
    # What the cap buys: 100 MB answers cost the runner a few capped bodies, not one body.
    assert rss - baseline < BODY_GROWTH_LIMIT_KB, f"peak RSS {rss} KiB, {baseline} KiB " \
        "against a server that answers nothing"
    report = read_reports(tmp_path)
    shape = next(c for c in report["checks"] if c["id"] == "common/capabilities/shape")
    assert shape["status"] == "failed"
    assert "exceeds the runner's cap of 2097152 bytes" in shape["message"]


def test_a_server_that_dies_stops_the_run(tmp_path: Path) -> None:
    with hostile("gone") as url:
        done, _, _ = run_keyflows("--base-url", url, *reports(tmp_path))
    assert done.returncode == 1
    report = read_reports(tmp_path)
    assert "the server closed the connection without answering" in report["stopped_early"]
    assert report["summary"]["not_run"] > 100
    assert done.stdout.count("cannot reach") <= 3  # one check's error, not one per check


def test_control_characters_and_nan_leave_the_reports_parseable(tmp_path: Path) -> None:
    with hostile("weird") as url:
        done, _, _ = run_keyflows("--base-url", url, "--report-html",
                                  str(tmp_path / "r.html"), *reports(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    json.loads((tmp_path / "r.json").read_text(),
               parse_constant=lambda name: pytest.fail(f"{name} in the JSON report"))
    read_reports(tmp_path)
    for text in (done.stdout, (tmp_path / "r.html").read_text()):
        assert "\x1b[2J" not in text and "\x00" not in text and "\x01" not in text


def test_run_deadline_reports_the_rest_as_not_run(tmp_path: Path) -> None:
    with hostile("drip", interval=0.2) as url:
        done, elapsed, _ = run_keyflows("--base-url", url, "--request-deadline", "30",
                                        "--run-deadline", "3", *reports(tmp_path))
    assert done.returncode == 1
    assert elapsed < 30
    report = read_reports(tmp_path)
    assert "run deadline passed" in json.dumps(report)


def default_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_lines(pid: int) -> str:
    """The runner's blocked and ignored signal masks, for a failure message."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return "".join(line for line in status if line.startswith(("SigBlk", "SigIgn")))


def test_ctrl_c_writes_the_reports_and_exits_130(tmp_path: Path) -> None:
    with hostile("drip", interval=1.0) as url:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # A shell's Ctrl-C reaches a runner that has SIGINT neither ignored nor blocked;
        # a test worker's threads may hand either on to the child, so it starts clean.
        process = subprocess.Popen([*KEYFLOWS, "--base-url", url, *reports(tmp_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, preexec_fn=default_sigint)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("account server for this run")
        time.sleep(1.0)
        dispositions = signal_lines(process.pid)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, dispositions + stdout + stderr
    assert "Traceback" not in stdout + stderr
    report = read_reports(tmp_path)
    assert report["stopped_early"] == "interrupted (Ctrl-C)"


# --- a real server, misconfigured or broken ------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unconfigured_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A reference server pointed at an account server that does not exist."""
    server = start_reference_server("http://127.0.0.1:9", tmp_path / "k.sqlite3")
    yield server
    server.stop()


def test_account_server_never_consulted_stops_with_one_clear_message(
        unconfigured_server: RunningServer, tmp_path: Path) -> None:
    done, _, _ = run_keyflows("--base-url", unconfigured_server.url, *reports(tmp_path))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "stopped early" in ln)
    assert "never asked the runner's account server to validate a token" in line
    assert "--account-listen" in line
    report = read_reports(tmp_path)
    assert report["summary"]["not_run"] > 100
    failed = [c for c in report["checks"] if c["status"] == "failed"]
    assert len(failed) <= 3
    assert "did not ask the runner's account server during this request" in done.stdout


class Target:
    def __init__(self, tmp_path: Path, wrapper: Any = None) -> None:
        self.account_port = free_port()
        self.server = start_reference_server(f"http://127.0.0.1:{self.account_port}",
                                             tmp_path / "k.sqlite3", app_wrapper=wrapper)

    def args(self) -> list[str]:
        return ["--base-url", self.server.url, "--account-listen",
                f"127.0.0.1:{self.account_port}"]


def without_member(path: str, member: str) -> Any:
    """Answers of `path` lose one top-level member."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == path and status in (200, 201):
            answer = json.loads(body)
            answer.pop(member, None)
            body = compact(answer)
        return status, headers, body

    return rewriting(rewrite)


def test_a_missing_member_fails_checks_with_a_message_never_a_keyerror(
        tmp_path: Path) -> None:
    target = Target(tmp_path, without_member("/v1/hashchain/uids", "uid"))
    try:
        done, _, _ = run_keyflows(*target.args(), "--select", "hashchain/uid/create-reply-verifies",
                                  *reports(tmp_path))
    finally:
        target.server.stop()
    assert done.returncode == 1
    report = read_reports(tmp_path)
    statuses = {c["status"] for c in report["checks"]}
    assert "errored" not in statuses, done.stdout
    messages = [c["message"] for c in report["checks"] if c["status"] == "failed"]
    assert messages and any("the answer has no member 'uid' at $" in m for m in messages)
    assert "KeyError" not in done.stdout


def echoing_tokens(app: Any) -> Any:
    """401 answers quote the bearer token back (a secret in an error body)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if status == 401 and auth.startswith("Bearer "):
            problem = json.loads(body)
            problem["detail"] = f"the token {auth[7:]} is not valid here"
            body = compact(problem)
        return status, headers, body

    return rewriting(rewrite)(app)


def test_secrets_echoed_anywhere_are_redacted_and_saved_exchanges_replay(
        tmp_path: Path) -> None:
    target = Target(tmp_path, echoing_tokens)
    saved = tmp_path / "saved"
    try:
        done, _, _ = run_keyflows(*target.args(), "--select", "common/auth/uniform-401",
                                  "--trace", "--save-exchanges", str(saved),
                                  *reports(tmp_path))
        assert done.returncode == 1, done.stdout
        out = done.stdout
        assert re.search(r"the token <redacted \d+ chars> is not valid here", out)
        assert not re.search(r"the token [A-Za-z0-9_-]{20,}", out)
        assert not re.search(r"Bearer [A-Za-z0-9_-]{20,}", out)
        report_text = (tmp_path / "r.json").read_text()
        assert not re.search(r"the token [A-Za-z0-9_-]{20,}", report_text)
        # The trace shows what the server asked the runner's account server.
        assert ">> POST http://127.0.0.1:" in out and "/v1/validate" in out
        # The re-run line carries the account server's address.
        assert f"--account-listen 127.0.0.1:{target.account_port}" in out

        folder = saved / "common__auth__uniform-401"
        entries = json.loads((folder / "exchanges.json").read_text())["exchanges"]
        assert any(e["party"] == "account-server" for e in entries)
        curl = (folder / "curl.sh").read_text()
        assert re.search(r"Bearer [A-Za-z0-9_-]{32}", curl), "saved exchanges are unredacted"
        assert "replay.py common/auth/uniform-401" in out
        replay = subprocess.run([sys.executable, str(saved / "replay.py"),
                                 "common/auth/uniform-401"], capture_output=True, text=True,
                                timeout=60, check=False)
    finally:
        target.server.stop()
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replay: account server: http://127.0.0.1:" in replay.stdout
    assert "< HTTP/1.1 401" in replay.stdout and "(as in the run)" in replay.stdout


RUNNER_THAT_STARTS_THE_EMBEDDED_SERVER = """\
import sys, time
from keyflows.conformance.embedded import EmbeddedServer
server = EmbeddedServer("http://127.0.0.1:9")
server.start()
print(server._process.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the parent-death signal is a Linux prctl")
def test_the_embedded_server_ends_when_its_runner_is_killed() -> None:
    runner = subprocess.Popen([sys.executable, "-c", RUNNER_THAT_STARTS_THE_EMBEDDED_SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        server_pid = int(runner.stdout.readline())
        assert alive(server_pid)
    finally:
        runner.kill()
        runner.wait()
    deadline = time.monotonic() + 20
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(server_pid):
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the embedded reference server outlived its SIGKILLed runner")
