#!/usr/bin/env python3
"""Build the keyflows spec site with no network at read time.

    python docs/build.py [--out DIR] [--doctrees DIR] [--text | --check-text]
                         [--text-out DIR] [-- EXTRA SPHINX ARGS]

1. Make sure the pinned mermaid-cli is installed (docs/_node/package-lock.json, `npm ci`
   once into a shared cache; see docs/_ext/keyflows_sphinx/mermaid_cli.py). Diagrams are
   rendered to inline SVG during the build, so pages need no script and work from file://.
2. Run `sphinx-build -W --keep-going -E -b html docs docs/_build/html` (fresh environment).
3. Scan the built site for anything a reader's browser would fetch from another host
   (src= anywhere, <link href=>, imports in scripts, url()/@import in CSS) and for any
   reference at all to a known CDN; fail on one.
4. With --text, --check-text or --text-out: render the specification (the chapters of
   the index's "Specification" toctree, and the vector format) as plain text from the
   pages just read. --text writes it into docs/text/, where it is committed so that the
   normative text, requirement texts included, reads on any code host; --check-text
   fails when docs/text/ differs from it; --text-out writes it elsewhere.

Exit status: 0 on success; 1 with one readable line on stderr on any failure.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

# Hosts that serve JavaScript, CSS or fonts to pages. Any reference to one fails the
# build, even a plain hyperlink: the site must not depend on, or point readers at, them.
CDN_HOSTS = (
    "cdn.jsdelivr.net", "jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com",
    "googleapis.com", "gstatic.com", "cdn.skypack.dev", "esm.sh", "esm.run",
    "cdn.rawgit.com", "rawcdn.githack.com", "raw.githack.com", "cdn.statically.io",
    "bootstrapcdn.com", "code.jquery.com", "cloudflare.com", "fontawesome.com",
    "polyfill.io", "mathjax.org", "cdn.plot.ly",
)
EXTERNAL = re.compile(r"\A\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//", re.ASCII)
URL_IN_TEXT = re.compile(r"(?:https?:)?//([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
SCRIPT_IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,]+\s*from\s*)?|\bimport\s*\(\s*|\bimportScripts\s*\(\s*)"""
    r"""["'`]\s*((?:https?:)?//[^"'`]+)""")
CSS_EXTERNAL = re.compile(
    r"""(?:url\(\s*["']?|@import\s+["'])\s*((?:https?:)?//[^"')\s]+)""", re.IGNORECASE)


class BuildError(Exception):
    """A failure explained in one line."""


# --- 1. mermaid-cli -------------------------------------------------------------------------

STALE = (DOCS / "_static" / "mermaid", DOCS / "_node" / "node_modules")


def ensure_mermaid_cli() -> str:
    """Install the pinned mermaid-cli if needed; return its version."""
    from keyflows_sphinx import mermaid_cli

    # Earlier builds served mermaid's JavaScript from these folders; the site must not.
    for stale in STALE:
        if stale.is_dir():
            shutil.rmtree(stale)
            print(f"docs/build.py: removed {stale} (diagrams are SVG now)", flush=True)

    try:
        mermaid_cli.chromium()
        mermaid_cli.ensure_installed(say=lambda line: print(f"docs/build.py: {line}",
                                                            flush=True))
        return mermaid_cli.version()
    except mermaid_cli.MermaidCliError as exc:
        raise BuildError(str(exc)) from exc


# --- 3. scan for external resources ------------------------------------------------------

def _host(url: str) -> str:
    url = url.strip()
    if url.startswith("//"):
        url = "http:" + url
    return (urlsplit(url).hostname or "").lower()


def _is_cdn(host: str) -> bool:
    return any(host == h or host.endswith("." + h) for h in CDN_HOSTS)


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.findings: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name in ("src", "srcset", "data", "poster", "background") and (
                    EXTERNAL.match(value) or " //" in value or ", http" in value):
                self.findings.append(f"<{tag} {name}={value}>")
            elif name == "href" and EXTERNAL.match(value):
                # A hyperlink to a specification is fine; anything the page *loads*
                # through href (stylesheets, preloads, icons, manifests) is not, and
                # nothing may point at a CDN.
                if tag != "a" or _is_cdn(_host(value)):
                    self.findings.append(f"<{tag} {name}={value}>")
            elif name == "style":
                self.findings.extend(f"<{tag} style=...{m}>" for m in CSS_EXTERNAL.findall(value))
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.findings.extend(f"<script> imports {m}" for m in SCRIPT_IMPORT.findall(data))
        elif self._in == "style":
            self.findings.extend(f"<style> loads {m}" for m in CSS_EXTERNAL.findall(data))
        if self._in:
            for host in URL_IN_TEXT.findall(data):
                if _is_cdn(host.lower()):
                    self.findings.append(f"<{self._in}> mentions CDN host {host}")


def scan_external(root: Path) -> list[str]:
    """Every external resource reference in the built site, as 'file: what'."""
    findings: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".doctrees" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if suffix in (".html", ".htm"):
            scanner = _Scanner()
            scanner.feed(path.read_text("utf-8", errors="replace"))
            scanner.close()
            findings.extend(f"{rel}: {f}" for f in scanner.findings)
        elif suffix == ".css":
            text = path.read_text("utf-8", errors="replace")
            findings.extend(f"{rel}: loads {m}" for m in CSS_EXTERNAL.findall(text))
        elif suffix in (".js", ".mjs"):
            text = path.read_text("utf-8", errors="replace")
            findings.extend(f"{rel}: imports {m}" for m in SCRIPT_IMPORT.findall(text))
    return findings


# --- 4. the plain-text rendering ---------------------------------------------------------

TEXT_DIR = DOCS / "text"
TEXT_EXTRA_PAGES = ("vectors",)  # the vector format, beside the chapters
TEXT_HEADER = """\
keyflows specification {version} ({status}): {title}

Plain-text rendering of docs/{page}.rst with the requirement texts of
spec/requirements.yaml. Generated by `python docs/build.py --text`; edit the
sources, not this file. Diagrams appear as their mermaid source; vector
tables are on the HTML site and in vectors/.

"""


def spec_pages() -> list[str]:
    """The pages of the index's "Specification" toctree, in order, then the vector
    format: a chapter added to the toctree joins the rendering by itself."""
    lines = (DOCS / "index.rst").read_text(encoding="utf-8").splitlines()
    pages: list[str] = []
    inside = False
    caption = False
    for line in lines:
        if line.startswith(".. toctree::"):
            inside, caption = True, False
            continue
        if inside and line.strip().startswith(":caption:"):
            caption = line.split(":caption:", 1)[1].strip() == "Specification"
            continue
        if inside and line.strip().startswith(":"):
            continue
        if inside and line and not line[0].isspace():
            inside = False
        elif inside and caption and line.strip():
            pages.append(line.strip())
    if not pages:
        raise BuildError("docs/index.rst has no toctree captioned Specification")
    return [*pages, *TEXT_EXTRA_PAGES]


def render_text(doctrees: Path) -> dict[str, str]:
    """{relative .txt path: text} of every specification page, from the doctrees the
    HTML build just wrote (the pages are not read again)."""
    sys.path.insert(0, str(DOCS.parent))
    from keyflows.spec import SPEC_STATUS, SPEC_VERSION

    pages = spec_pages()
    with tempfile.TemporaryDirectory(prefix="keyflows-text-") as tmp:
        cmd = [sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-b", "text",
               "-d", str(doctrees), "-D", "keyflows_reread_generated=0", str(DOCS), tmp,
               *(str(DOCS / f"{page}.rst") for page in pages)]
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0:
            raise BuildError(f"the plain-text build failed (exit {proc.returncode})")
        out: dict[str, str] = {}
        for page in pages:
            body = (Path(tmp) / f"{page}.txt").read_text(encoding="utf-8")
            lines = [line.rstrip() for line in body.splitlines()]
            title = next((line for line in lines if line.strip()), page)
            text = TEXT_HEADER.format(version=SPEC_VERSION, status=SPEC_STATUS, title=title,
                                      page=page) + "\n".join(lines).strip("\n") + "\n"
            out[f"{page}.txt"] = text
    return out


def write_text(rendered: dict[str, str], target: Path) -> None:
    """Replace the rendering in `target` (stale pages of removed chapters go too)."""
    for old in target.rglob("*.txt"):
        if old.relative_to(target).as_posix() not in rendered:
            old.unlink()
    for name, text in rendered.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def text_drift(rendered: dict[str, str], target: Path) -> list[str]:
    """Lines describing how `target` differs from the rendering; empty when current."""
    problems: list[str] = []
    committed = {p.relative_to(target).as_posix() for p in target.rglob("*.txt")}
    for name in sorted(committed - set(rendered)):
        problems.append(f"docs/text/{name}: no longer rendered (remove it)")
    for name, text in rendered.items():
        path = target / name
        if not path.is_file():
            problems.append(f"docs/text/{name}: missing")
            continue
        old = path.read_text(encoding="utf-8")
        if old != text:
            diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(),
                                             f"committed/{name}", f"rendered/{name}",
                                             n=1, lineterm=""))
            problems.append(f"docs/text/{name}: differs from the sources\n"
                            + "\n".join(diff[:30]))
    return problems


# --- main ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html",
                        help="output folder (default docs/_build/html)")
    parser.add_argument("--doctrees", type=Path, default=None,
                        help="doctree cache (default OUT/.doctrees)")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", action="store_true",
                      help="also write the plain-text rendering into docs/text/")
    text.add_argument("--check-text", action="store_true",
                      help="fail if docs/text/ is not the current plain-text rendering")
    text.add_argument("--text-out", type=Path, default=None,
                      help="write the plain-text rendering into this folder")
    parser.add_argument("sphinx_args", nargs=argparse.REMAINDER,
                        help="after --: extra sphinx-build arguments, e.g. -D name=value")
    args = parser.parse_args(argv)
    extra = args.sphinx_args[1:] if args.sphinx_args[:1] == ["--"] else args.sphinx_args
    started = time.monotonic()
    try:
        version = ensure_mermaid_cli()
        out = args.out.resolve()
        # -E: a fresh environment every time. Sphinx reports a page's warnings only when
        # it reads the page, so an incremental run after a failed one could pass silently.
        doctrees = (args.doctrees or out / ".doctrees").resolve()
        cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html",
               "-d", str(doctrees), *extra, str(DOCS), str(out)]
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0:
            raise BuildError(f"sphinx-build failed (exit {proc.returncode}); "
                             "the warnings above say where")
        findings = scan_external(out)
        if findings:
            for finding in findings[:20]:
                print(f"  {finding}", file=sys.stderr)
            raise BuildError(f"{len(findings)} external resource reference(s) in the built "
                             f"site, first: {findings[0]}")
        if args.text or args.check_text or args.text_out:
            rendered = render_text(doctrees)
            if args.check_text:
                drift = text_drift(rendered, TEXT_DIR)
                if drift:
                    print("\n".join(drift), file=sys.stderr)
                    raise BuildError(f"docs/text/ is not the current plain-text rendering "
                                     f"({len(drift)} file(s)): run `python docs/build.py "
                                     "--text` and commit docs/text/")
            else:
                write_text(rendered, args.text_out or TEXT_DIR)
                print(f"docs/build.py: wrote the plain-text rendering of {len(rendered)} "
                      f"pages into {args.text_out or TEXT_DIR}")
    except BuildError as exc:
        print(f"docs/build.py: error: {exc}", file=sys.stderr)
        return 1
    pages = sum(1 for p in out.rglob("*.html") if ".doctrees" not in p.parts)
    print(f"docs/build.py: ok: {pages} pages in {out} (diagrams by mermaid-cli {version}) "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
