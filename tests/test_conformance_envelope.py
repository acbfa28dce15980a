"""The envelope conformance checks: they pass the reference server and catch every broken
envelope server of tests/broken_envelope.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from broken_envelope import RETENTION_SECONDS, VARIANTS
from broken_servers import BrokenVariant
from test_conformance import start_target, statuses

from keyflows.conformance.checks.envelope_retention import server_date
from keyflows.conformance.http import Exchange

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


@pytest.mark.parametrize(("value", "second"), [
    ("Sun, 06 Dec 2026 13:46:10 GMT", 1796564770),
    ("Sun, 06 Dec 2026 13:46:10 +0000", 1796564770),
    ("Sun, 06 Dec 2026 13:46:10 -0000", 1796564770),
    (None, None), ("", None), ("yesterday", None), ("Sun, 06 Dec 2026 25:61:10 GMT", None),
])
def test_the_servers_date_is_read_in_unix_seconds(value: str | None, second: int | None
                                                  ) -> None:
    """The retention check waits for the server's Date; a missing or unreadable one is
    None (the check then waits by the runner's clock)."""
    headers = [] if value is None else [("Date", value)]
    exchange = Exchange(method="GET", url="http://x/v1/capabilities", sent_headers={},
                        request_headers=[], request_body=b"", status=200,
                        response_headers=headers)
    assert server_date(exchange) == second
