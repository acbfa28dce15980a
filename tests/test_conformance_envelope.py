"""The envelope conformance checks: they pass the reference server and catch every broken
envelope server of tests/broken_envelope.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from broken_envelope import RETENTION_SECONDS, VARIANTS
from broken_servers import BrokenVariant
from test_conformance import start_target, statuses

SELECT = ("--select", "envelope/*")
RETENTION_CHECK = "envelope/retention/expiry"


def test_reference_passes_every_envelope_check(tmp_path: Path) -> None:
    """The control for the variants: the unbroken server, started the same way. With the
    default retention (a week) the retention check is skipped, never passed."""
    target = start_target(tmp_path)
    try:
        done, report = target.run(tmp_path, *SELECT)
    finally:
        target.server.stop()
    assert done.returncode == 0, done.stdout
    results = statuses(report)
    assert len(results) >= 25
    assert results.pop(RETENTION_CHECK) == "skipped"
    assert "the advertised retention_seconds is 604800" in done.stdout
    assert set(results.values()) == {"passed"}, done.stdout
    assert all(c["flow"] == "envelope" and c["requirements"] for c in report["checks"])


def test_reference_passes_the_retention_check(tmp_path: Path) -> None:
    """The control for the retention variants, with their short retention."""
    target = start_target(tmp_path, message_retention=RETENTION_SECONDS)
    try:
        done, report = target.run(tmp_path, "--select", RETENTION_CHECK)
    finally:
        target.server.stop()
    assert done.returncode == 0, done.stdout
    assert statuses(report) == {RETENTION_CHECK: "passed"}, done.stdout


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_envelope_server_is_caught(variant: BrokenVariant, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    target = start_target(tmp_path, variant)
    try:  # only the checks that must catch it: each variant costs a server start, not a run
        done, report = target.run(tmp_path, *(arg for cid in variant.must_fail
                                              for arg in ("--select", cid)),
                                  monkeypatch=monkeypatch)
    finally:
        target.server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = statuses(report)
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}"
    assert f"FAIL   {variant.must_fail[0]}" in done.stdout
