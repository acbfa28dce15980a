"""The spec site: it builds with -W, loads nothing from another host, renders its
generated pages from the sources of truth, and its mermaid diagrams become SVG in a
real headless Chromium with no console errors.

Needs sphinx + sphinxcontrib-mermaid (the `docs` extra), npm (or mermaid already in
docs/_node), playwright for Python and Debian's /usr/bin/chromium. Missing tools skip
these tests with the reason, unless KEYFLOWS_STRICT=1, where they fail.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OUTPUT = ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STRICT = os.environ.get("KEYFLOWS_STRICT") == "1"
CDN_HOST = re.compile(
    r"(?:cdn\.jsdelivr\.net|jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|googleapis\.com"
    r"|gstatic\.com|cdn\.skypack\.dev|esm\.sh|bootstrapcdn\.com|code\.jquery\.com)",
    re.IGNORECASE)

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: missing tools are failures)")
    pytest.skip(reason)


def _load_build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("keyflows_docs_build", DOCS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("sphinx", "sphinxcontrib.mermaid"):
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                "." in module and importlib.util.find_spec(module) is None):
            _unavailable(f"{module} is not installed (pip install -e '.[docs]')")
    mermaid = DOCS / "_node" / "node_modules" / "mermaid" / "dist" / "mermaid.esm.min.mjs"
    if not mermaid.is_file() and shutil.which("npm") is None:
        _unavailable("npm is not on PATH and docs/_node has no mermaid")
    base = tmp_path_factory.mktemp("docs")
    out = base / "html"
    proc = subprocess.run(
        [sys.executable, str(DOCS / "build.py"), "--out", str(out),
         "--doctrees", str(base / "doctrees")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).splitlines()
        problems = [line for line in log if "WARNING" in line or "ERROR" in line
                    or "error" in line.lower()]
        pytest.fail("docs/build.py failed:\n" + "\n".join((problems or log)[-40:]))
    return out


def _html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)


# --- no network -------------------------------------------------------------------------------

def test_nothing_is_loaded_from_another_host(site: Path) -> None:
    findings = _load_build_module().scan_external(site)
    assert findings == [], "external resources in the built site:\n" + "\n".join(findings)


def test_no_cdn_is_mentioned_in_any_page(site: Path) -> None:
    offenders = []
    for page in _html_pages(site):
        for m in re.finditer(r"""(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""",
                             page.read_text("utf-8")):
            if CDN_HOST.search(m.group(1)):
                offenders.append(f"{page.relative_to(site)}: {m.group(0)}")
        if CDN_HOST.search(page.read_text("utf-8")):
            offenders.append(f"{page.relative_to(site)}: mentions a CDN host")
    assert offenders == []


# --- generated content ----------------------------------------------------------------------

def _requirements() -> dict[str, dict[str, str]]:
    return yaml.safe_load((ROOT / "spec" / "requirements.yaml").read_text("utf-8"))


def _page_of_flow(site: Path, flow: str) -> Path | None:
    page = site / "common.html" if flow == "common" else site / "flows" / f"{flow}.html"
    return page if page.is_file() else None


def test_every_requirement_is_anchored_in_its_chapter_and_on_coverage(site: Path) -> None:
    coverage = (site / "coverage.html").read_text("utf-8")
    chapters_checked = set()
    for rid, req in _requirements().items():
        assert f'id="cov-{rid}"' in coverage, f"{rid} missing from the coverage page"
        page = _page_of_flow(site, req["flow"])
        if page is not None:
            chapters_checked.add(req["flow"])
            assert f'id="req-{rid}"' in page.read_text("utf-8"), (
                f"{rid} is not rendered in {page.relative_to(site)}")
    assert {"key-derivation", "keypair-publication"} <= chapters_checked


def test_every_openapi_operation_is_on_the_api_page(site: Path) -> None:
    api = (site / "api.html").read_text("utf-8")
    document = yaml.safe_load((ROOT / "spec" / "openapi.yaml").read_text("utf-8"))
    count = 0
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete", "head", "options"):
                continue
            count += 1
            assert f"{method.upper()} {path}" in api, f"{method.upper()} {path} not rendered"
            if "operationId" in op:
                assert f'id="op-{op["operationId"]}"' in api
    assert count > 0


def test_failure_classes_and_vector_tables(site: Path) -> None:
    from keyflows.spec.errors import FAILURE_CLASSES

    vectors_page = (site / "vectors.html").read_text("utf-8")
    for name in FAILURE_CLASSES:
        assert f'id="failure-{name}"' in vectors_page, f"failure class {name} not rendered"
    for vector_file in sorted((ROOT / "vectors").glob("*.yaml")):
        flow = vector_file.name.split(".")[0]
        page = _page_of_flow(site, flow)
        if page is None:
            continue
        html = page.read_text("utf-8")
        data = yaml.safe_load(vector_file.read_text("utf-8"))
        for case in data.get("cases") or []:
            stem = vector_file.name.removesuffix(".yaml")
            anchor = re.sub(r"[^A-Za-z0-9._:-]+", "-", f"vector-{stem}-{case['id']}").strip("-")
            assert f'id="{anchor}"' in html, f"{vector_file.name} case {case['id']} not shown"


# --- diagrams in a real browser ---------------------------------------------------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript", ".js": "text/javascript", ".svg": "image/svg+xml"}

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_every_diagram_renders_as_svg_without_console_errors(site: Path, served: str) -> None:
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright for Python is not installed (pip install playwright)")

    pages = [p for p in _html_pages(site) if 'class="mermaid"' in p.read_text("utf-8")]
    rel = [p.relative_to(site).as_posix() for p in pages]
    assert "flows/key-derivation.html" in rel and "flows/keypair-publication.html" in rel
    OUTPUT.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for path in rel:
                page = context.new_page()
                errors: list[str] = []
                foreign: list[str] = []
                page.on("console", lambda m, e=errors: e.append(f"console {m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda exc, e=errors: e.append(f"page error: {exc}"))
                page.on("requestfailed", lambda r, e=errors: e.append(
                    f"request failed: {r.url} ({r.failure})"))
                page.on("response", lambda r, e=errors: e.append(
                    f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
                page.on("request", lambda r, f=foreign: f.append(r.url)
                        if not r.url.startswith((served, "data:", "blob:", "about:")) else None)
                page.goto(served + path, wait_until="load")
                try:
                    page.wait_for_function(
                        """() => {
                            const all = [...document.querySelectorAll('.mermaid')];
                            return all.length > 0 && all.every(el => el.querySelector('svg'));
                        }""", timeout=20_000)
                except Exception as exc:
                    problems.append(f"{path}: diagrams did not all become svg: {exc}")
                counts = page.evaluate(
                    """() => ({
                        diagrams: document.querySelectorAll('.mermaid').length,
                        svgs: document.querySelectorAll('.mermaid svg').length,
                        errors: document.querySelectorAll(
                            '.mermaid svg[aria-roledescription="error"]').length,
                    })""")
                if counts["svgs"] < counts["diagrams"] or counts["errors"]:
                    problems.append(f"{path}: {counts}")
                if path == "flows/keypair-publication.html":
                    diagram = page.locator(".mermaid").first
                    diagram.scroll_into_view_if_needed()
                    page.screenshot(path=str(OUTPUT / "docs-keypair-publication.png"))
                    diagram.screenshot(path=str(OUTPUT / "docs-keypair-publication-diagram.png"))
                problems.extend(f"{path}: {e}" for e in errors)
                problems.extend(f"{path}: request to another host: {u}" for u in foreign)
                page.close()
        finally:
            browser.close()
    assert problems == [], "\n".join(problems)
