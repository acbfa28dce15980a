#!/usr/bin/env python3
"""Build the keyflows spec site with no network at read time.

    python docs/build.py [--out DIR] [--doctrees DIR] [-- EXTRA SPHINX ARGS]

1. Make sure the pinned mermaid-cli is installed (docs/_node/package-lock.json, `npm ci`
   once into a shared cache; see docs/_ext/keyflows_sphinx/mermaid_cli.py). Diagrams are
   rendered to inline SVG during the build, so pages need no script and work from file://.
2. Run `sphinx-build -W --keep-going -E -b html docs docs/_build/html` (fresh environment).
3. Scan the built site for anything a reader's browser would fetch from another host
   (src= anywhere, <link href=>, imports in scripts, url()/@import in CSS) and for any
   reference at all to a known CDN; fail on one.

Exit status: 0 on success; 1 with one readable line on stderr on any failure.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
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


# --- main ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html",
                        help="output folder (default docs/_build/html)")
    parser.add_argument("--doctrees", type=Path, default=None,
                        help="doctree cache (default OUT/.doctrees)")
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
        cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html"]
        if args.doctrees is not None:
            cmd += ["-d", str(args.doctrees.resolve())]
        cmd += [*extra, str(DOCS), str(out)]
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
    except BuildError as exc:
        print(f"docs/build.py: error: {exc}", file=sys.stderr)
        return 1
    pages = sum(1 for p in out.rglob("*.html") if ".doctrees" not in p.parts)
    print(f"docs/build.py: ok: {pages} pages in {out} (diagrams by mermaid-cli {version}) "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
