"""The deliberately broken hashchain logs of tests/broken_hashchain_log.py (a hostile
witness's answers, tile paths of large indices) are each caught by the check named for
the fault, and by no other check of its area."""

from __future__ import annotations

from pathlib import Path

import pytest
from broken_hashchain import HashchainVariant
from broken_hashchain_log import VARIANTS
from test_conformance_hashchain import run_against, start


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_hashchain_log_is_caught(variant: HashchainVariant, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    variant.patch(monkeypatch)
    server, port = start(tmp_path, monkeypatch)
    try:
        done, report = run_against(server, port, tmp_path,
                                   tuple(a for cid in variant.must_fail
                                         for a in ("--select", "/".join(cid.split("/")[:2]))),
                                   monkeypatch)
    finally:
        server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = {c["id"]: c["status"] for c in report["checks"]}
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}:\n{done.stdout}"
    others = sorted(cid for cid, status in results.items()
                    if status != "passed" and cid not in variant.must_fail)
    assert not others, f"{variant.name} also fails {others}:\n{done.stdout}"
