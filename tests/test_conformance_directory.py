"""The key directory's checks (conformance/checks/hashchain_directory.py) pass the
reference server and catch every server of tests/broken_directory.py by the check named
for its attack. The runner runs in this process (tests/runner_runs.py), with only the
directory's checks selected: about two seconds per run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from broken_directory import VARIANTS, DirectoryVariant
from runner_runs import run_conformance
from servers import start_reference_server
from test_conformance import free_port

SELECT = "hashchain/directory/*"


def run_against(tmp_path: Path, monkeypatch: pytest.MonkeyPatch | None = None
                ) -> tuple[int, str, dict[str, str]]:
    port = free_port()
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3")
    report = tmp_path / "report.json"
    try:
        done = run_conformance("--base-url", server.url, "--account-listen",
                               f"127.0.0.1:{port}", "--report-json", str(report),
                               "--select", SELECT, monkeypatch=monkeypatch)
    finally:
        server.stop()
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return done.returncode, done.stdout, {c["id"]: c["status"] for c in data["checks"]}


def test_the_reference_directory_passes(tmp_path: Path) -> None:
    code, output, statuses = run_against(tmp_path)
    assert code == 0, output
    assert len(statuses) == 10 and set(statuses.values()) == {"passed"}, output


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_a_broken_directory_is_caught(variant: DirectoryVariant, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    variant.patch(monkeypatch)
    code, output, statuses = run_against(tmp_path, monkeypatch)
    assert code == 1, f"{variant.name} was not caught:\n{output}"
    assert statuses[variant.must_fail] == "failed", output
