#!/usr/bin/env python3
"""Build the keyflows spec site with no network at read time.

    python docs/build.py [--out DIR] [--doctrees DIR] [-- EXTRA SPHINX ARGS]

1. Make mermaid available locally: `npm install mermaid@11` into docs/_node/ unless it is
   already there, then copy the ESM bundle and its chunks into docs/_static/mermaid/
   (both folders are gitignored). conf.py points sphinxcontrib-mermaid at that copy.
2. Run `sphinx-build -W --keep-going -E -b html docs docs/_build/html` (fresh environment).
3. Scan the built site for anything a reader's browser would fetch from another host
   (src= anywhere, <link href=>, imports in scripts, url()/@import in CSS) and for any
   reference at all to a known CDN; fail on one.

Exit status: 0 on success; 1 with one readable line on stderr on any failure.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

DOCS = Path(__file__).resolve().parent
NODE_DIR = DOCS / "_node"
MERMAID_PACKAGE = "mermaid@11"
MERMAID_DIST = NODE_DIR / "node_modules" / "mermaid" / "dist"
STATIC_MERMAID = DOCS / "_static" / "mermaid"
CHUNKS = Path("chunks") / "mermaid.esm.min"

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


# --- 1. mermaid -------------------------------------------------------------------------

def ensure_mermaid() -> str:
    """Install mermaid under docs/_node if needed and sync it into _static; return its version."""
    bundle = MERMAID_DIST / "mermaid.esm.min.mjs"
    if not bundle.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError("npm is not on PATH and docs/_node has no mermaid; install npm "
                             "(Debian: apt-get install npm) or copy node_modules/mermaid there")
        NODE_DIR.mkdir(exist_ok=True)
        package_json = NODE_DIR / "package.json"
        if not package_json.exists():
            package_json.write_text(json.dumps(
                {"name": "keyflows-docs-assets", "private": True,
                 "description": "mermaid for the keyflows docs (installed by docs/build.py)"},
                indent=2) + "\n", encoding="utf-8")
        print(f"docs/build.py: npm install {MERMAID_PACKAGE} into {NODE_DIR}", flush=True)
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", MERMAID_PACKAGE],
            cwd=NODE_DIR, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not bundle.is_file():
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"npm install {MERMAID_PACKAGE} failed (exit {proc.returncode}): "
                             f"{detail}")
    package = json.loads((MERMAID_DIST.parent / "package.json").read_text("utf-8"))
    version = str(package["version"])

    wanted: dict[Path, Path] = {Path("mermaid.esm.min.mjs"): bundle}
    for chunk in sorted((MERMAID_DIST / CHUNKS).glob("*.mjs")):
        wanted[CHUNKS / chunk.name] = chunk
    if len(wanted) == 1:
        raise BuildError(f"mermaid {version} in {MERMAID_DIST} has no {CHUNKS} chunks")
    for rel, src in wanted.items():
        dst = STATIC_MERMAID / rel
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size or (
                dst.read_bytes() != src.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    (STATIC_MERMAID / "VERSION").write_text(version + "\n", encoding="utf-8")
    keep = {*wanted, Path("VERSION")}
    for existing in list(STATIC_MERMAID.rglob("*")):  # chunks of an older mermaid
        if existing.is_file() and existing.relative_to(STATIC_MERMAID) not in keep:
            existing.unlink()
    return version


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
        version = ensure_mermaid()
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
    print(f"docs/build.py: ok: {pages} pages in {out} (mermaid {version}, served locally) "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
