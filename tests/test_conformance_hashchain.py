"""The hashchain conformance checks: the reference server passes them all, and every
deliberately broken hashchain server in tests/broken_hashchain.py is caught. The server
submits its checkpoints to the runner's witness, so the witness checks run too."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from broken_hashchain import VARIANTS, HashchainVariant
from runner_runs import run_conformance
from servers import RunningServer, start_reference_server

from keyflows.conformance.embedded import hashchain_environment

SELECT = ("--select", "hashchain/*")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_against(server: RunningServer, account_port: int, tmp_path: Path,
                select: tuple[str, ...] = SELECT,
                monkeypatch: pytest.MonkeyPatch | None = None
                ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    done = run_conformance("--base-url", server.url, "--account-listen",
                           f"127.0.0.1:{account_port}", "--report-json", str(report), *select,
                           monkeypatch=monkeypatch)
    assert report.exists(), done.stdout + done.stderr
    return done, json.loads(report.read_text())




def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RunningServer, int]:
    """The reference server, submitting its checkpoints to the runner's witness."""
    port = free_port()
    account = f"http://127.0.0.1:{port}"
    for name, value in hashchain_environment(account).items():
        monkeypatch.setenv(name, value)
    return start_reference_server(account, tmp_path / "keys.sqlite3"), port


def test_reference_server_passes_every_hashchain_check(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server, port = start(tmp_path, monkeypatch)
    try:
        done, report = run_against(server, port, tmp_path)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout
    checks = [c for c in report["checks"] if c["flow"] == "hashchain"]
    assert len(checks) >= 30
    assert all(c["status"] == "passed" for c in checks), done.stdout  # none skipped either
    for entry in checks:
        assert entry["id"].startswith("hashchain/")
        assert all(r.startswith(("HC-", "API-")) for r in entry["requirements"])


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_hashchain_server_is_caught(variant: HashchainVariant, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    variant.patch(monkeypatch)
    server, port = start(tmp_path, monkeypatch)
    # The areas of the checks that must fail, not the whole flow.
    areas = sorted({"/".join(cid.split("/")[:2]) for cid in variant.must_fail})
    try:
        done, report = run_against(server, port, tmp_path,
                                   tuple(a for area in areas for a in ("--select", area)),
                                   monkeypatch)
    finally:
        server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = {c["id"]: c["status"] for c in report["checks"]}
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}:\n{done.stdout}"
    if variant.only:
        others = sorted(cid for cid, status in results.items()
                        if status != "passed" and cid not in variant.must_fail)
        assert not others, f"{variant.name} also fails {others}:\n{done.stdout}"
    assert f"FAIL   {variant.must_fail[0]}" in done.stdout
    assert "curl -sS -i" in done.stdout
