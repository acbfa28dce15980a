"""The contract checks (conformance/checks/contract.py) pass the reference server and
catch every server of tests/broken_contract.py, each by the one check it targets.

The runner runs in this process (its command line through click's test runner) to keep
these runs at a fraction of a second each; the runner's own end-to-end behaviour is
tested in test_conformance.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from broken_contract import VARIANTS, ContractVariant
from click.testing import CliRunner
from servers import start_reference_server
from test_conformance import free_port, statuses
from test_conformance_lock_layering import file_lock

from keyflows.conformance.cli import main

CHECKS = sorted({v.must_fail for v in VARIANTS})


def run_against(tmp_path: Path, variant: ContractVariant | None,
                checks: list[str]) -> tuple[int, str, dict[str, Any]]:
    port = free_port()
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3",
                                    app_wrapper=variant.wrapper if variant else None,
                                    server_lock=file_lock(tmp_path))
    report = tmp_path / "report.json"
    try:
        done = CliRunner().invoke(main, [
            "conformance", "--base-url", server.url, "--account-listen", f"127.0.0.1:{port}",
            "--report-json", str(report), *[arg for c in checks for arg in ("--select", c)]])
    finally:
        server.stop()
    return done.exit_code, done.output, json.loads(report.read_text(encoding="utf-8"))


def test_the_reference_server_passes_the_contract_checks(tmp_path: Path) -> None:
    code, output, report = run_against(tmp_path, None, CHECKS)
    assert code == 0, output
    assert statuses(report) == {check: "passed" for check in CHECKS}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_a_contract_breach_is_caught(variant: ContractVariant, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    code, output, report = run_against(tmp_path, variant, [variant.must_fail])
    assert code == 1, f"{variant.name} was not caught:\n{output}"
    assert statuses(report) == {variant.must_fail: "failed"}, output
