"""The spec site: it builds with -W, loads nothing from another host, renders its
generated pages from the sources of truth; in a real headless Chromium its diagrams are
SVG before any script runs (from file://, scripts off), its search finds requirement
ids, its sections are numbered, every page states the spec version and status, no
requirement id breaks across lines, no code block is clipped, and the coverage page
shows counts with its case lists folded. Screenshots go to test-output/.

Needs sphinx (the `docs` extra), npm or an installed mermaid-cli pin, playwright for
Python and Debian's /usr/bin/chromium. Missing tools skip these tests with the reason,
unless KEYFLOWS_STRICT=1, where they fail.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
REQUIREMENT_ID = r"\b(?:API|KD|KP|ENV|SC|LOCK|HC)-[1-9][0-9]*\b"
SPEC_CHAPTERS = ["intro", "common", "flows/key-derivation", "flows/keypair-publication",
                 "flows/envelope", "flows/session-challenge", "flows/lock-layering",
                 "flows/hashchain"]

pytestmark = pytest.mark.slow
sys.path.insert(0, str(DOCS / "_ext"))


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: missing tools are failures)")
    pytest.skip(reason)


def _load_build_module() -> Any:
    spec = importlib.util.spec_from_file_location("keyflows_docs_build", DOCS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mermaid_cli() -> Any:
    from keyflows_sphinx import mermaid_cli

    return mermaid_cli


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("sphinx") is None:
        _unavailable("sphinx is not installed (pip install -e '.[docs]')")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium): it renders diagrams")
    if not _mermaid_cli().is_installed() and shutil.which("npm") is None:
        _unavailable("npm is not on PATH and the pinned mermaid-cli is not installed")
    base = tmp_path_factory.mktemp("docs")
    out = base / "html"
    proc = subprocess.run(
        [sys.executable, str(DOCS / "build.py"), "--out", str(out),
         "--doctrees", str(base / "doctrees"), "--text-out", str(base / "text")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).splitlines()
        problems = [line for line in log if "WARNING" in line or "ERROR" in line
                    or "error" in line.lower()]
        pytest.fail("docs/build.py failed:\n" + "\n".join((problems or log)[-40:]))
    return out


def _html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html")
                  if "_static" not in p.parts and "downloads" not in p.parts)


def _requirements() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((ROOT / "spec" / "requirements.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _page_of_flow(site: Path, flow: str) -> Path | None:
    page = site / "common.html" if flow == "common" else site / "flows" / f"{flow}.html"
    return page if page.is_file() else None


# --- no network -------------------------------------------------------------------------------

def test_nothing_is_loaded_from_another_host(site: Path) -> None:
    findings = _load_build_module().scan_external(site)
    assert findings == [], "external resources in the built site:\n" + "\n".join(findings)


def test_no_cdn_is_mentioned_in_any_page(site: Path) -> None:
    offenders = [str(page.relative_to(site)) for page in _html_pages(site)
                 if CDN_HOST.search(page.read_text("utf-8"))]
    assert offenders == []


# --- generated content ----------------------------------------------------------------------

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


def test_coverage_gives_every_requirement_its_class(site: Path) -> None:
    coverage = (site / "coverage.html").read_text("utf-8")
    rows = dict(re.findall(r'<tr class="row-(?:even|odd)" id="cov-([A-Z]+-[0-9]+)">(.*?)</tr>',
                           coverage, re.DOTALL))
    requirements = _requirements()
    assert set(rows) == set(requirements)
    for rid, req in requirements.items():
        cells = re.findall(r"<td>(.*?)</td>", rows[rid], re.DOTALL)
        expected = req.get("coverage", "runner")
        assert re.search(rf"<abbr title=\"[^\"]+\">{expected}</abbr>", cells[3]), (rid, cells[3])
        if req.get("reason"):
            assert html.escape(str(req["reason"]).split()[0]) in cells[3], rid


def test_requirements_are_domain_objects_with_an_index(site: Path) -> None:
    from sphinx.util.inventory import InventoryFile

    with (site / "objects.inv").open("rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    objects = inventory["keyflows:requirement"]
    requirements = _requirements()
    rendered = {rid for rid, req in requirements.items()
                if _page_of_flow(site, req["flow"]) is not None}
    assert set(objects) == rendered
    for rid in rendered:
        page = _page_of_flow(site, requirements[rid]["flow"])
        assert page is not None
        assert objects[rid].uri == f"{page.relative_to(site).as_posix()}#req-{rid}"
    index = (site / "keyflows-reqindex.html").read_text("utf-8")
    for rid in rendered:
        assert f"#req-{rid}" in index, f"{rid} missing from the requirement index"


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
        data = yaml.load(vector_file.read_text("utf-8"), Loader=yaml.CSafeLoader)
        for case in data.get("cases") or []:
            stem = vector_file.name.removesuffix(".yaml")
            anchor = re.sub(r"[^A-Za-z0-9._:-]+", "-", f"vector-{stem}-{case['id']}").strip("-")
            assert f'id="{anchor}"' in html, f"{vector_file.name} case {case['id']} not shown"


def test_the_vectors_page_links_every_file_and_schema(site: Path) -> None:
    html = (site / "vectors.html").read_text("utf-8")
    links = set(re.findall(r'href="(downloads/vectors/[^"#]+)"', html))
    expected = {"downloads/vectors/schemas/bundle.json"}
    for path in sorted((ROOT / "vectors").glob("*.yaml")):
        stem = path.name.removesuffix(".yaml")
        expected |= {f"downloads/vectors/{stem}.yaml", f"downloads/vectors/{stem}.json",
                     f"downloads/vectors/schemas/{stem}.schema.json"}
    assert expected <= links, sorted(expected - links)
    for link in links:
        shipped = ROOT / "vectors" / link.removeprefix("downloads/vectors/")
        assert (site / link).read_bytes() == shipped.read_bytes(), link


# --- the plain-text rendering ---------------------------------------------------------------

def test_the_committed_plain_text_rendering_is_current(site: Path) -> None:
    """docs/text/ is what the sources render to (`python docs/build.py --text`)."""
    build = _load_build_module()
    rendered = {p.relative_to(site.parent / "text").as_posix(): p.read_text("utf-8")
                for p in (site.parent / "text").rglob("*.txt")}
    assert {f"{page}.txt" for page in build.spec_pages()} == set(rendered)
    drift = build.text_drift(rendered, DOCS / "text")
    assert drift == [], ("docs/text/ is stale: run `python docs/build.py --text` and commit "
                         "docs/text/\n" + "\n".join(drift)[:4000])


def test_the_plain_text_carries_every_requirement_text(site: Path) -> None:
    text_dir = site.parent / "text"
    for rid, req in _requirements().items():
        page = "common" if req["flow"] == "common" else f"flows/{req['flow']}"
        path = text_dir / f"{page}.txt"
        if not path.is_file():
            continue
        words = " ".join(path.read_text("utf-8").split())
        assert f"**{rid}** {req['level']}" in words, f"{rid} missing from {page}.txt"
        first = " ".join(str(req["text"]).split())[:40]
        assert first in words, f"the text of {rid} is missing from {page}.txt"


def test_the_plain_text_names_version_and_status(site: Path) -> None:
    from keyflows.spec import SPEC_STATUS, SPEC_VERSION

    for path in sorted((site.parent / "text").rglob("*.txt")):
        assert path.read_text("utf-8").startswith(
            f"keyflows specification {SPEC_VERSION} ({SPEC_STATUS}): "), path.name


# --- diagrams: SVG in the HTML itself ---------------------------------------------------------

class _Figures(HTMLParser):
    """Each <figure class="keyflows-diagram">: does it hold an <svg>, any <script>?"""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: list[dict[str, int]] = []
        self._depth = 0
        self.scripts_outside = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "figure" and "keyflows-diagram" in classes:
            self.figures.append({"svg": 0, "script": 0, "text": 0})
            self._depth = 1
        elif self._depth:
            if tag == "figure":
                self._depth += 1
            if tag in ("svg", "script"):
                self.figures[-1][tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag == "figure":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth and data.strip():
            self.figures[-1]["text"] += 1


def _diagrams_in_sources() -> dict[str, int]:
    counts = {}
    for path in sorted(DOCS.rglob("*.rst")):
        if "_build" in path.parts:
            continue
        text = path.read_text("utf-8")
        # A chapter's included parts (.rsti) render on the chapter's page.
        for name in re.findall(r"^\.\. include:: (\S+\.rsti)$", text, re.MULTILINE):
            text += (path.parent / name).read_text("utf-8")
        n = len(re.findall(r"^\.\. mermaid::", text, re.MULTILINE))
        if n:
            counts[path.relative_to(DOCS).with_suffix(".html").as_posix()] = n
    return counts


def test_every_diagram_is_an_svg_in_the_html_before_any_script(site: Path) -> None:
    expected = _diagrams_in_sources()
    assert "flows/keypair-publication.html" in expected
    found = {}
    for page in _html_pages(site):
        parser = _Figures()
        parser.feed(page.read_text("utf-8"))
        if parser.figures:
            found[page.relative_to(site).as_posix()] = len(parser.figures)
        for i, figure in enumerate(parser.figures):
            where = f"{page.relative_to(site)} diagram {i + 1}"
            assert figure["svg"] >= 1, f"{where} has no inline <svg>"
            assert figure["script"] == 0, f"{where} needs a script"
            assert figure["text"] > 0, f"{where} has no text (labels are text in the svg)"
    assert found == expected
    assert not list(site.rglob("mermaid*.js")) and not list(site.rglob("mermaid*.mjs"))


def test_inline_svgs_repeat_no_id_on_a_page(site: Path) -> None:
    for page in _html_pages(site):
        html = page.read_text("utf-8")
        ids = re.findall(r'\sid="([^"]+)"', html)
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        assert repeated == [], f"{page.relative_to(site)} repeats ids {repeated[:5]}"


def test_a_diagram_renders_afresh_with_unique_ids() -> None:
    """One real mermaid-cli run on a diagram no cache has seen."""
    from keyflows_sphinx import diagrams

    cli = _mermaid_cli()
    if not cli.is_installed():
        _unavailable("the pinned mermaid-cli is not installed (build the docs once)")
    nonce = os.urandom(4).hex()
    code = (f"sequenceDiagram\n    participant A as Alice {nonce}\n    participant K as Key "
            "server\n    A->>K: hello\n")
    first, second = diagrams.render(cli.mmdc_path(), {"sequence": {"mirrorActors": False}},
                                    [code, code.replace("hello", "again")])
    assert f"Alice {nonce}" in first and "again" in second
    page = diagrams.inline_svg(first, "kfd-a") + diagrams.inline_svg(second, "kfd-b")
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids)), ids
    assert "my-svg" not in page


# --- in a real browser -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright for Python is not installed (pip install playwright)")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _watch(page: Any, problems: list[str], path: str) -> None:
    page.on("console", lambda m: problems.append(f"{path}: console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"{path}: page error: {exc}"))
    page.on("request", lambda r: problems.append(f"{path}: loads {r.url}")
            if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
    page.on("requestfailed", lambda r: problems.append(f"{path}: failed {r.url}"))


def test_diagrams_show_from_file_urls_with_scripts_off(site: Path, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  java_script_enabled=False)
    problems: list[str] = []
    try:
        for path in _diagrams_in_sources():
            page = context.new_page()
            _watch(page, problems, path)
            page.goto((site / path).as_uri(), wait_until="load")
            for i, svg in enumerate(page.locator("figure.keyflows-diagram > svg").all()):
                box = svg.bounding_box()
                if box is None or box["width"] < 150 or box["height"] < 80:
                    problems.append(f"{path}: diagram {i + 1} is not visible ({box})")
            if path == "flows/keypair-publication.html":
                diagram = page.locator("figure.keyflows-diagram").first
                diagram.scroll_into_view_if_needed()
                page.screenshot(path=str(OUTPUT / "docs-keypair-publication.png"))
                diagram.screenshot(path=str(OUTPUT / "docs-keypair-publication-diagram.png"))
            page.close()
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The site over http on loopback, as a reader of a hosted copy sees it."""
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


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _first_result(page: Any, search_page: str, rid: str) -> str | None:
    page.goto(f"{search_page}?q={rid}", wait_until="load")
    page.wait_for_selector("#search-results ul.search li a", timeout=30_000)
    return page.locator("#search-results ul.search li a").first.get_attribute("href")  # type: ignore[no-any-return]


def test_search_finds_a_requirement_id_on_its_page(site: Path, browser: Any,
                                                    served: str) -> None:
    first_of_flow: dict[str, str] = {}
    for rid, req in _requirements().items():
        if _page_of_flow(site, req["flow"]) is not None:
            first_of_flow.setdefault(req["flow"], rid)
    assert len(first_of_flow) >= 6
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        for flow, rid in first_of_flow.items():
            page_of = _page_of_flow(site, flow)
            assert page_of is not None
            expected = f"{page_of.relative_to(site).as_posix()}#req-{rid}"
            first = _first_result(page, served + "search.html", rid)
            if first != expected:
                problems.append(f"search for {rid}: first result {first}, not {expected}")
            if flow == "envelope":
                page.screenshot(path=str(OUTPUT / "docs-search-requirement.png"))
        page.close()
        # From file:// too: the index is a script, so the search works; only the result
        # snippets (fetched pages) are refused by the browser there.
        page = context.new_page()
        rid = first_of_flow["envelope"]
        page_of = _page_of_flow(site, "envelope")
        assert page_of is not None
        first = _first_result(page, (site / "search.html").as_uri(), rid)
        assert first == f"{page_of.relative_to(site).as_posix()}#req-{rid}"
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


def test_chapters_and_their_sections_are_numbered(site: Path) -> None:
    for number, chapter in enumerate(SPEC_CHAPTERS, start=1):
        html = (site / f"{chapter}.html").read_text("utf-8")
        h1 = re.search(r"<h1>(.*?)</h1>", html, re.DOTALL)
        assert h1 is not None and f'<span class="section-number">{number}. </span>' in \
            h1.group(1), f"{chapter}: {h1.group(1) if h1 else 'no h1'}"
        if "<h2>" in html:
            assert f'<span class="section-number">{number}.1. </span>' in html, chapter


def test_every_page_states_the_spec_version_and_status(site: Path) -> None:
    from keyflows.spec import SPEC_STATUS, SPEC_VERSION

    banner = re.compile(r'<p class="keyflows-status"[^>]*>keyflows specification <strong>'
                        + re.escape(SPEC_VERSION) + r"</strong>.*?status: <strong[^>]*>"
                        + re.escape(SPEC_STATUS) + "</strong>", re.DOTALL)
    pages = _html_pages(site)
    assert len(pages) >= 15
    missing = [str(p.relative_to(site)) for p in pages if not banner.search(p.read_text("utf-8"))]
    assert missing == []


_BROKEN_IDS_JS = """(pattern) => {
    document.querySelectorAll('details').forEach(d => { d.open = true; });
    const re = new RegExp(pattern, 'g');
    const walker = document.createTreeWalker(document.querySelector('div.body'),
                                             NodeFilter.SHOW_TEXT);
    const broken = [];
    let seen = 0;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const m of node.data.matchAll(re)) {
            const range = document.createRange();
            range.setStart(node, m.index);
            range.setEnd(node, m.index + m[0].length);
            const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
                                 .map(r => Math.round(r.top)));
            if (tops.size === 0) continue;  // not displayed
            seen += 1;
            if (tops.size > 1) broken.push(m[0]);
        }
    }
    return {seen, broken};
}"""


@pytest.mark.parametrize("width", [760, 1400])
def test_no_requirement_id_breaks_across_lines(site: Path, browser: Any, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    problems: list[str] = []
    seen = 0
    try:
        page = context.new_page()
        for path in ["coverage.html", "vectors.html",
                     *(f"{chapter}.html" for chapter in SPEC_CHAPTERS)]:
            page.goto((site / path).as_uri(), wait_until="load")
            result = page.evaluate(_BROKEN_IDS_JS, REQUIREMENT_ID.replace("\\b", "\\b"))
            seen += result["seen"]
            if result["broken"]:
                problems.append(f"{path} at {width}px: {sorted(set(result['broken']))[:8]}")
            if path == "coverage.html" and width == 760:
                page.screenshot(path=str(OUTPUT / "docs-coverage-narrow.png"))
    finally:
        context.close()
    assert seen > 500
    assert problems == [], "\n".join(problems)


def test_no_code_block_is_clipped(site: Path, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        for html in _html_pages(site):
            path = html.relative_to(site).as_posix()
            page.goto(html.as_uri(), wait_until="load")
            clipped = page.evaluate("""() => [...document.querySelectorAll('div.body pre')]
                .filter(pre => pre.offsetParent !== null)
                .filter(pre => pre.scrollWidth > pre.clientWidth + 1
                               && !['auto', 'scroll'].includes(getComputedStyle(pre).overflowX))
                .map(pre => pre.textContent.slice(0, 60))""")
            problems.extend(f"{path}: {text!r}" for text in clipped)
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


def test_coverage_shows_counts_with_folded_lists(site: Path, browser: Any) -> None:
    # The count of vector cases citing a requirement, from the files themselves.
    cited: dict[str, int] = {}
    for path in sorted((ROOT / "vectors").glob("*.yaml")):
        data = yaml.load(path.read_text("utf-8"), Loader=yaml.CSafeLoader)
        for case in data["cases"]:
            for rid in case["requirements"]:
                cited[rid] = cited.get(rid, 0) + 1
    busiest = max(cited, key=lambda rid: cited[rid])
    assert cited[busiest] > 20  # the row that used to list every case id inline

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto((site / "coverage.html").as_uri(), wait_until="load")
        assert page.locator("table.keyflows-coverage-flows").count() == 1
        row = page.locator(f"tr#cov-{busiest}")
        cell = row.locator("details.keyflows-folded").first
        assert cell.get_attribute("open") is None  # folded
        assert cell.locator("summary").inner_text().strip() == f"{cited[busiest]} cases"
        assert cell.locator("code").count() == cited[busiest]
        assert not cell.locator("code").first.is_visible()
        height = row.bounding_box()
        assert height is not None and height["height"] < 90
        row.scroll_into_view_if_needed()
        page.screenshot(path=str(OUTPUT / "docs-coverage.png"))
    finally:
        context.close()
