"""Every vector file through the independent JavaScript verifier.

`vectors/verifiers/node/verify.mjs` was written from the rendered specification and the
vector schemas, not from the Python generator, so a generator bug cannot verify itself
(pyca/cryptography's rule for home-made vectors). This is what `nox -s verify-js` runs.

Needs node >= 20 and npm; without them the tests skip with the reason, unless
KEYFLOWS_STRICT=1, where they fail. `npm ci` runs when node_modules is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "vectors"
NODE_DIR = VECTORS / "verifiers" / "node"
VERIFY = NODE_DIR / "verify.mjs"
STRICT = os.environ.get("KEYFLOWS_STRICT") == "1"

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: missing tools are failures)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the JavaScript vector verifier "
                     "(Debian: apt-get install nodejs npm)")
    assert node is not None and npm is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))  # type: ignore[union-attr]
    if major < 20:
        _unavailable(f"node {version} is too old for the verifier (needs >= 20)")
    if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


def _verify(node: str, *targets: Path, report: Path) -> tuple[subprocess.CompletedProcess[str],
                                                              dict[str, Any]]:
    done = subprocess.run([node, str(VERIFY), "--json", str(report), *map(str, targets)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"the verifier wrote no report:\n{done.stdout}\n{done.stderr}"
    return done, json.loads(report.read_text(encoding="utf-8"))


def test_every_vector_file_verifies(node: str, tmp_path: Path) -> None:
    done, report = _verify(node, VECTORS, report=tmp_path / "report.json")
    files = {entry["file"]: entry for entry in report["files"]}
    on_disk = sorted(p.stem for p in VECTORS.glob("*.yaml"))
    assert sorted(files) == on_disk
    for name in on_disk:
        entry = files[name]
        assert entry["status"] != "unsupported", f"{name}.yaml: unknown to the JS verifier"
        doc = yaml.load((VECTORS / f"{name}.yaml").read_text(encoding="utf-8"), Loader=Loader)
        assert entry["cases"] == len(doc["cases"]) == doc["number_of_cases"], name
        assert entry["disagreed"] == 0, (name, entry["problems"][:5])
        assert entry["agreed"] == entry["cases"], name
        assert entry["status"] == "agreed", (name, entry["problems"][:5])
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\d+ agreed, 0 disagreed", done.stdout, re.MULTILINE), done.stdout


def test_a_tampered_vector_is_a_disagreement(node: str, tmp_path: Path) -> None:
    """The verifier can fail: one changed output byte, one changed failure class."""
    source = (VECTORS / "key-derivation.yaml").read_text(encoding="utf-8")
    doc = yaml.load(source, Loader=Loader)
    valid = next(c for c in doc["cases"] if c["result"] == "valid")
    invalid = next(c for c in doc["cases"] if c["result"] == "invalid")
    kbr = valid["outputs"]["kbr"]
    tampered = source.replace(kbr, kbr[:-1] + ("0" if kbr[-1] != "0" else "1"), 1)
    start = tampered.index(f"- id: {invalid['id']}\n")
    block_end = tampered.index("\n- id: ", start + 1)
    block = tampered[start:block_end]
    wrong = "params" if invalid["failure"]["class"] != "params" else "length"
    tampered = (tampered[:start]
                + block.replace(f"class: {invalid['failure']['class']}", f"class: {wrong}")
                + tampered[block_end:])
    path = tmp_path / "key-derivation.yaml"
    path.write_text(tampered, encoding="utf-8")
    done, report = _verify(node, path, report=tmp_path / "report.json")
    assert done.returncode == 1
    (entry,) = report["files"]
    assert entry["disagreed"] == 2
    assert {p["id"] for p in entry["problems"]} == {valid["id"], invalid["id"]}


def test_an_unknown_file_fails_the_run(node: str, tmp_path: Path) -> None:
    path = tmp_path / "no-such-flow.yaml"
    path.write_text("flow: no-such-flow\nnumber_of_cases: 1\ncases:\n- id: x\n", encoding="utf-8")
    done, report = _verify(node, path, report=tmp_path / "report.json")
    assert done.returncode == 1
    assert report["files"][0]["status"] == "unsupported"
    assert "unsupported: no-such-flow" in done.stdout
