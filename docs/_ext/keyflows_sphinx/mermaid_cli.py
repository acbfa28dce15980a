"""mermaid-cli, pinned by docs/_node/package-lock.json, installed once per lockfile.

The install (about 500 MB of node_modules, no browser: puppeteer drives Debian's
chromium) lives in a cache shared by every checkout on the machine and keyed by the
lockfile's digest, so a changed pin installs beside the old one and CI can cache the
folder: `$KEYFLOWS_CACHE_DIR`, else `$XDG_CACHE_HOME/keyflows`, else `~/.cache/keyflows`.
Installing runs `npm ci` (the lockfile, exactly) under a file lock, into a temporary
folder renamed into place, so concurrent builds neither race nor see half an install.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[2] / "_node"
MANIFESTS = ("package.json", "package-lock.json")
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Chromium flags for a closed network: no sandbox (root in CI containers), no GPU, and
# none of the background traffic Chromium starts on its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions"]
_DONE = ".keyflows-installed"


class MermaidCliError(Exception):
    """mermaid-cli cannot be installed or run; the message is one line."""


def cache_root() -> Path:
    explicit = os.environ.get("KEYFLOWS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "keyflows"


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in MANIFESTS:
        path = NODE_DIR / name
        if not path.is_file():
            raise MermaidCliError(f"{path} is missing: the docs' npm pin is part of the "
                                  "repository")
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def install_dir() -> Path:
    return cache_root() / "mermaid-cli" / lock_digest()


def mmdc_path(folder: Path | None = None) -> Path:
    return (folder or install_dir()) / "node_modules" / ".bin" / "mmdc"


def chromium() -> str:
    explicit = os.environ.get("KEYFLOWS_CHROMIUM")
    if explicit:
        return explicit
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        raise MermaidCliError("chromium is not installed (Debian: apt-get install chromium); "
                              "it renders the diagrams")
    return found


def version(folder: Path | None = None) -> str:
    manifest = (folder or install_dir()) / "node_modules" / "@mermaid-js" / "mermaid-cli" / \
        "package.json"
    return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])


def is_installed() -> bool:
    folder = install_dir()
    return (folder / _DONE).is_file() and mmdc_path(folder).is_file()


def ensure_installed(say: object = print) -> Path:
    """The mmdc executable, installing the pinned mermaid-cli first if needed."""
    folder = install_dir()
    if is_installed():
        return mmdc_path(folder)
    npm = shutil.which("npm")
    if npm is None:
        raise MermaidCliError("npm is not on PATH (Debian: apt-get install npm); the docs "
                              "build installs the pinned mermaid-cli with it once")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be installing the same pin
        if is_installed():
            return mmdc_path(folder)
        if callable(say):
            say(f"keyflows docs: installing mermaid-cli (npm ci, {NODE_DIR / MANIFESTS[1]}) "
                f"into {folder}; once per pin")
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=folder.parent))
        try:
            for name in MANIFESTS:
                shutil.copyfile(NODE_DIR / name, staging / name)
            env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1",
                   "PUPPETEER_SKIP_CHROME_HEADLESS_SHELL_DOWNLOAD": "1"}
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"],
                cwd=staging, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not mmdc_path(staging).is_file():
                detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise MermaidCliError(f"npm ci of the docs' mermaid-cli pin failed "
                                      f"(exit {proc.returncode}): {detail}")
            (staging / _DONE).write_text(version(staging) + "\n", encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return mmdc_path(folder)


def puppeteer_config() -> dict[str, object]:
    return {"executablePath": chromium(), "args": CHROMIUM_ARGS, "headless": True}
