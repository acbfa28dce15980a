"""The layering rules, read from the source: spec/ imports neither reference/ nor
conformance/ and is sans-I/O (no network, clock or global randomness); conformance/ never
imports reference/; every YAML file the project ships reads under the strict loader and
nothing reads YAML any other way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyflows.spec import yamlfile

ROOT = Path(__file__).resolve().parent.parent

# Modules that reach the network, the clock or a global random source.
IO_MODULES = ("socket", "ssl", "http", "urllib", "httpx", "requests", "asyncio", "select",
              "selectors", "subprocess", "time", "random", "secrets", "uvicorn", "starlette",
              "boto3", "pkcs11", "threading", "multiprocessing", "sqlite3")
# Calls that read the clock or a global random source, whatever module they come from.
IO_CALLS = ("urandom", "getrandom", "token_bytes", "token_hex", "token_urlsafe", "now",
            "utcnow", "today", "time", "monotonic", "perf_counter", "generate")


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import in the file, also inside functions."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in python_files(package):
        for line, module in imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return out


def test_spec_imports_neither_reference_nor_conformance() -> None:
    assert offenders("spec", ("keyflows.reference", "keyflows.conformance",
                              "keyflows.vectors")) == []


def test_conformance_never_imports_reference() -> None:
    assert offenders("conformance", ("keyflows.reference",)) == []


def test_spec_has_no_network_clock_or_global_randomness() -> None:
    assert offenders("spec", IO_MODULES) == []
    calls = []
    for path in python_files("spec"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else (
                    func.id if isinstance(func, ast.Name) else "")
                if name in IO_CALLS:
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno}: calls {name}()")
    assert calls == []


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The scanners are not vacuous: a planted import and call are reported."""
    planted = tmp_path / "bad.py"
    planted.write_text("import time\nfrom keyflows.reference import app\n"
                       "def f():\n    import os\n    return os.urandom(8)\n", encoding="utf-8")
    found = [m for _, m in imports(planted)]
    assert "time" in found and "keyflows.reference.app" in found
    tree = ast.parse(planted.read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.Attribute) and n.attr in IO_CALLS for n in ast.walk(tree))


SHIPPED_YAML = sorted(p for folder in ("spec", "vectors", "tests")
                      for p in (ROOT / folder).rglob("*.yaml") if "node_modules" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_reads_under_the_strict_loader(path: Path) -> None:
    yamlfile.load(path.read_text(encoding="utf-8"))


def test_the_strict_loader_refuses_a_repeated_key() -> None:
    with pytest.raises(yamlfile.DuplicateKeyError) as refused:
        yamlfile.load("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert refused.value.problem_mark is not None and refused.value.problem_mark.line == 3
    assert yamlfile.load("a: {b: 1}\nc: [1, {b: 2}]\n") == {"a": {"b": 1}, "c": [1, {"b": 2}]}
    assert yamlfile.StrictLoader.__mro__[1].__name__ == "CSafeLoader"


def test_nothing_reads_yaml_but_the_strict_loader() -> None:
    readers = []
    for package in ("spec", "vectors", "reference", "conformance", "docs/_ext"):
        for path in python_files(package):
            if path == ROOT / "spec" / "yamlfile.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id == "yaml" and node.attr in (
                            "load", "safe_load", "full_load", "unsafe_load", "load_all",
                            "safe_load_all"):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}: yaml.{node.attr}")
    assert readers == []
