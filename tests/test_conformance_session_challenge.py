"""The session-challenge conformance checks, end to end: the reference server passes all of
them (expiry included, with a short challenge lifetime), and every deliberately broken
server in tests/broken_session_challenge.py is caught."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from broken_session_challenge import (
    SHORT_LIFETIME,
    SHORT_SESSION_LIFETIME,
    VARIANTS,
    BrokenVariant,
)
from runner_runs import run_conformance
from servers import RunningServer, start_reference_server

SELECT = ("--select", "session-challenge/*")
MIN_CHECKS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_lifetime(app: Any) -> Any:
    """The reference app with challenge and session lifetimes the runner can wait out."""
    services = app.state.services
    services.settings = replace(services.settings, challenge_lifetime=SHORT_LIFETIME,
                                session_lifetime=SHORT_SESSION_LIFETIME)
    return app


def start(tmp_path: Path, variant: BrokenVariant | None = None) -> tuple[RunningServer, int]:
    port = free_port()

    def wrapper(app: Any) -> Any:
        app = short_lifetime(app)
        return variant.wrapper(app) if variant and variant.wrapper else app

    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3",
                                    app_wrapper=wrapper)
    return server, port


def run(server: RunningServer, account_port: int, tmp_path: Path,
        select: tuple[str, ...] = SELECT, monkeypatch: pytest.MonkeyPatch | None = None
        ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    done = run_conformance("--base-url", server.url, "--account-listen",
                           f"127.0.0.1:{account_port}", "--report-json", str(report), *select,
                           monkeypatch=monkeypatch)
    assert report.exists(), done.stderr
    return done, json.loads(report.read_text())


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def test_reference_passes_every_session_challenge_check(tmp_path: Path) -> None:
    server, port = start(tmp_path)
    try:
        done, report = run(server, port, tmp_path)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout
    results = statuses(report)
    assert len(results) >= MIN_CHECKS
    assert set(results.values()) == {"passed"}, results
    assert results["session-challenge/answer/expiry"] == "passed"
    assert results["session-challenge/session/expiry"] == "passed"
    assert all(c["flow"] == "session-challenge" and c["requirements"]
               for c in report["checks"])


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_server_is_caught(variant: BrokenVariant, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    server, port = start(tmp_path, variant)
    try:  # only the checks that must fail: the others wait out lifetimes for nothing
        done, report = run(server, port, tmp_path,
                           tuple(a for cid in variant.must_fail for a in ("--select", cid)),
                           monkeypatch)
    finally:
        server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = statuses(report)
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}"
    first = variant.must_fail[0]
    assert f"FAIL   {first}" in done.stdout
    for marker in ("  expected: ", "  got:      ", "  trace (secrets redacted):", "curl -sS -i"):
        assert marker in done.stdout, marker
