"""The HTML report in headless Chromium: one self-contained file that loads nothing,
summarises each flow with the JSON report's counts, lists every check of the run, links
requirement ids into the spec site, and folds each failure's expected / got, trace and
reproducer. A screenshot is kept in test-output/."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from broken_servers import Scope, compact, rewriting
from runner_runs import run_conformance
from servers import start_reference_server

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STRICT = os.environ.get("KEYFLOWS_STRICT") == "1"
DOCS_URL = "https://docs.example/keyflows"


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: missing tools are failures)")
    pytest.skip(reason)


def half_broken(app: Any) -> Any:
    """Hides the hashchain flow from the capabilities (its checks skip) and quotes the
    bearer token in 401 bodies (the uniform-401 check fails)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == "/v1/capabilities" and status == 200:
            caps = json.loads(body)
            caps["flows"] = [f for f in caps["flows"] if f != "hashchain"]
            body = compact(caps)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if status == 401 and auth.startswith("Bearer "):
            problem = json.loads(body)
            problem["detail"] = f"the token {auth[7:]} is not valid here"
            body = compact(problem)
        return status, headers, body

    return rewriting(rewrite)(app)


@pytest.fixture(scope="module")
def html_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("html")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp / "k.sqlite3",
                                    app_wrapper=half_broken)
    try:
        done = run_conformance(
            "--base-url", server.url, "--account-listen", f"127.0.0.1:{port}",
            "--select", "common/auth", "--select", "common/capabilities", "--select",
            "hashchain", "--select", "key-derivation/argon2-params", "--report-html",
            str(tmp / "report.html"), "--report-json", str(tmp / "report.json"),
            "--docs-url", DOCS_URL, "--save-exchanges", str(tmp / "saved"))
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    return tmp / "report.html", json.loads((tmp / "report.json").read_text())


def test_report_in_chromium(html_run: tuple[Path, dict[str, Any]]) -> None:
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright for Python is not installed (pip install playwright)")
    path, report = html_run
    url = path.as_uri()
    statuses = {c["status"] for c in report["checks"]}
    assert {"passed", "failed", "skipped"} <= statuses, statuses
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url, wait_until="load")
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "conformance-report-summary.png"))
            shown = page.evaluate("""() => ({
                ids: [...document.querySelectorAll('[data-check-id]')]
                        .map(e => e.dataset.checkId),
                flows: Object.fromEntries([...document.querySelectorAll('#summary tr[data-flow]')]
                        .map(r => [r.dataset.flow, Object.fromEntries(
                            [...r.querySelectorAll('[data-status]')]
                            .map(c => [c.dataset.status, Number(c.textContent)]))])),
                links: [...document.querySelectorAll('.reqs a')].map(a => a.href),
                openDetails: document.querySelectorAll('details[open]').length,
                failedRows: [...document.querySelectorAll('tr[data-status=failed]')]
                        .map(r => r.querySelectorAll('details').length),
            })""")
            assert shown["ids"] == [c["id"] for c in report["checks"]]
            for flow, counts in shown["flows"].items():
                entries = [c for c in report["checks"] if flow in ("all", c["flow"])]
                for status, count in counts.items():
                    assert count == sum(c["status"] == status for c in entries), (flow, status)
            assert shown["flows"]["all"] == {s: report["summary"][s] for s in
                                             ("passed", "failed", "skipped", "errored")}
            requirements = {r for c in report["checks"] for r in c["requirements"]}
            assert shown["links"] and all(h.startswith(DOCS_URL + "/") for h in shown["links"])
            assert {h.rsplit("#req-", 1)[1] for h in shown["links"]} == requirements
            assert any(h.startswith(DOCS_URL + "/common.html#req-API-") for h in shown["links"])
            assert shown["openDetails"] == 0, "failures are folded"
            assert shown["failedRows"] and all(n == 1 for n in shown["failedRows"])

            failed = page.locator("tr[data-status=failed]").first
            details = failed.locator("details")
            assert not details.locator("pre").first.is_visible()
            details.locator("summary").click()
            text = details.inner_text()
            for label in ("expected", "got", "trace (secrets redacted)", "reproducer",
                          "saved exchanges (unredacted)", "re-run"):
                assert label in text, label
            assert "curl -sS -i" in text and "> GET http://" in text
            assert "the token <redacted" in text
            failed.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUT / "conformance-report-failure.png"))
            assert errors == []
        finally:
            browser.close()
    assert requests == [url], f"the report loaded something: {requests}"


def test_report_is_one_file_with_no_external_reference(
        html_run: tuple[Path, dict[str, Any]]) -> None:
    text = html_run[0].read_text(encoding="utf-8")
    for needle in ("src=", "<link", "@import", "url(", "<script src", "<img", "<iframe"):
        assert needle not in text, needle
    assert "default-src 'none'" in text
    embedded = text.split('id="keyflows-report">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded.replace("<\\/", "</")) == html_run[1]
