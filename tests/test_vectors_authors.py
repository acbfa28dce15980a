"""The spec author's path has no traps: with keyflows installed as a package (not
editable), `keyflows vectors generate` in an edited checkout refuses in one line instead
of regenerating the installed, unedited vectors (an empty diff); an error the
specification raises while it loads is one line naming where.

The installed package is laid out as `pip install .` lays it out (keyflows/<part>/ from
pyproject.toml's package-dir, a dist-info with the entry points) and run by a Python that
does not process .pth files (-S), so the editable install of this checkout is not seen.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _install_copy(target: Path) -> None:
    """What `pip install .` puts in site-packages, copied from this checkout."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for package, source in project["tool"]["setuptools"]["package-dir"].items():
        if package.count(".") != 1:
            continue  # sub-packages come with their parent's folder
        shutil.copytree(ROOT / source, target / package.replace(".", "/"),
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    dist_info = target / f"keyflows-{project['project']['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: keyflows\nVersion: {project['project']['version']}\n",
        encoding="utf-8")
    groups = {"console_scripts": project["project"]["scripts"],
              **project["project"]["entry-points"]}
    (dist_info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {ref}\n" for name, ref in entries.items()) + "\n"
        for group, entries in groups.items()), encoding="utf-8")


def _checkout_copy(target: Path) -> Path:
    """A checkout an author has edited: the sources, not installed anywhere."""
    target.mkdir()
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    for part in ("spec", "vectors"):
        shutil.copytree(ROOT / part, target / part,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    module = target / "spec" / "key_derivation.py"
    module.write_text(module.read_text(encoding="utf-8") + "\n# an author's edit\n",
                      encoding="utf-8")
    return target


def _keyflows(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dependencies = sysconfig.get_paths()["purelib"]
    code = (f"import sys; sys.path[:0] = [{str(site)!r}, {dependencies!r}]; "
            "sys.argv[0] = 'keyflows'; "
            "from keyflows.conformance.cli import main; main()")
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site-packages")
    _install_copy(site)
    return site


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_the_installed_copy_is_what_runs(installed: Path, tmp_path: Path) -> None:
    # Guards the test itself: the package imported is the copy, not this checkout.
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; import keyflows.spec as s; "
            "print(s.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(installed)],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.strip() == str(installed / "keyflows" / "spec" / "__init__.py")


@pytest.mark.parametrize("args", [(), ("--dir", "vectors")])
def test_generate_from_an_edited_checkout_refuses_in_one_line(
        installed: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    checkout = _checkout_copy(tmp_path / "checkout")
    before = _snapshot(checkout / "vectors")
    result = _keyflows(installed, checkout, "vectors", "generate", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(
        f"Error: the imported specification is {installed / 'keyflows' / 'spec'}, "
        f"not this checkout's {checkout.resolve() / 'spec'}: ")
    assert f"pip install -e {checkout.resolve()}" in result.stderr
    assert _snapshot(checkout / "vectors") == before  # nothing written


def test_check_from_an_edited_checkout_refuses_too(installed: Path, tmp_path: Path) -> None:
    checkout = _checkout_copy(tmp_path / "checkout")
    result = _keyflows(installed, checkout, "vectors", "check")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "not this checkout's" in result.stderr


def test_an_installed_package_generates_elsewhere(installed: Path, tmp_path: Path) -> None:
    # Outside any checkout, --dir is a legitimate target: a consumer regenerating.
    result = _keyflows(installed, tmp_path, "vectors", "generate", "--dir", "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert (out / "key-derivation.json").read_bytes() == (
        ROOT / "vectors" / "key-derivation.json").read_bytes()


def test_a_spec_error_while_loading_is_one_line(installed: Path, tmp_path: Path) -> None:
    broken = tmp_path / "site-packages"
    shutil.copytree(installed, broken)
    module = broken / "keyflows" / "spec" / "envelope.py"
    text = module.read_text(encoding="utf-8")
    # An author adds a label to the flow but forgets to register it (KD-7).
    marker = re.search(r"^    for label in \((LABEL_\w+),", text, re.MULTILINE)
    assert marker is not None, "spec/envelope.py no longer checks its labels (KD-7)"
    module.write_text(text.replace(marker.group(0), '    for label in ("keyflows unregistered",',
                                   1), encoding="utf-8")
    result = _keyflows(broken, tmp_path, "vectors", "check")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: the specification failed to load: RuntimeError: "
                               "envelope label 'keyflows unregistered' is not in ")
    assert lines[0].endswith(")") and "(spec/envelope.py:" in lines[0]


def test_a_yaml_error_in_the_registry_is_one_line_with_line_and_column(
        installed: Path, tmp_path: Path) -> None:
    broken = tmp_path / "site-packages"
    shutil.copytree(installed, broken)
    registry = broken / "keyflows" / "spec" / "requirements.yaml"
    lines = registry.read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines) if line.startswith("  flow: "))
    lines[number] += ": x"  # a hand edit gone wrong
    registry.write_text("\n".join(lines), encoding="utf-8")
    where = f"spec/requirements.yaml:{number + 1}:"
    for args in (("vectors", "check"), ("conformance", "--list")):
        result = _keyflows(broken, tmp_path, *args)
        assert result.returncode in (1, 2), args
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert where in result.stderr and "(not valid YAML)" in result.stderr, result.stderr
