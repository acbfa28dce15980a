"""`keyflows vectors generate | check | verify`.

- generate: rewrite every vector file canonically, YAML and its JSON twin, and the schema
  bundle (into the source tree by default).
- check: regenerate in memory, fail on any byte of drift (YAML, JSON, bundle), on a JSON
  file whose data differs from its YAML, or on any schema error.
- verify: replay every shipped case through the spec's consumer side.

Every failure is one readable line (plus, for drift, a diff excerpt), never a traceback:
the specification is imported inside the commands, so an error raised while it loads is
reported like any other.
"""

from __future__ import annotations

import difflib
import sys
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from keyflows.vectors.framework import VectorFile

DIFF_LINES = 40
SCHEMA_ERRORS_SHOWN = 10

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Turn any failure into `Error: <one line>` and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:  # the promise is one line, whatever went wrong
            raise click.ClickException(_one_line(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _one_line(exc: BaseException) -> str:
    # The catalogue may be the very module that failed to import: look, do not import.
    catalog = sys.modules.get("keyflows.vectors.catalog")
    if catalog is not None and isinstance(exc, catalog.VectorError):
        return str(exc)
    text = " ".join(str(exc).split())
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({_short_path(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {text}{where}"


def _short_path(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("spec", "vectors", "reference", "conformance"):
        if anchor in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor):])
    return filename


@contextmanager
def _loading_the_spec() -> Iterator[ModuleType]:
    """Import the vector catalogue (and through it the whole specification); an error the
    specification raises while it loads becomes one line naming where it was raised."""
    try:
        from keyflows.vectors import catalog
    except Exception as exc:
        raise click.ClickException(
            f"the specification failed to load: {_one_line(exc)}") from exc
    yield catalog


# --- which checkout, which spec ----------------------------------------------------------------

def _checkout_root(directory: Path) -> Path | None:
    """The keyflows source checkout `directory` is the root of, or None."""
    pyproject = directory / "pyproject.toml"
    if not (pyproject.is_file() and (directory / "spec" / "__init__.py").is_file()):
        return None
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return directory.resolve() if name == "keyflows" else None


def _imported_spec() -> Path:
    import keyflows.spec as spec

    return Path(spec.__file__ or "").resolve().parent


def _package_vectors() -> Path:
    import keyflows.vectors as package

    return Path(package.__file__ or "").resolve().parent


def _refuse_foreign_spec(root: Path, action: str) -> None:
    """Refuse when the imported specification is not `root`'s: the files would come from
    code the author is not editing (an empty diff after a real edit)."""
    imported = _imported_spec()
    if imported != root / "spec":
        raise click.ClickException(
            f"the imported specification is {imported}, not this checkout's {root / 'spec'}: "
            f"{action} would use the installed code, not your edits; install the checkout "
            f"editable (pip install -e {root}) and run it again")


def target_directory(directory: Path | None) -> Path:
    """Where `generate` writes, after refusing any target whose checkout is not the one
    the specification was imported from."""
    if directory is not None:
        resolved = directory.resolve()
        root = _checkout_root(resolved.parent) if resolved.name == "vectors" else None
        if root is not None:
            _refuse_foreign_spec(root, f"generating into {resolved}")
        return directory
    here = _package_vectors()
    cwd_root = _checkout_root(Path.cwd())
    if cwd_root is not None and cwd_root != here.parent:
        _refuse_foreign_spec(cwd_root, "generating")
    if _checkout_root(here.parent) is not None:
        return here
    raise click.ClickException(
        f"keyflows is installed as a package ({here}), not run from a source checkout: "
        "pass --dir DIR to write the vector files elsewhere")


def source_tree_dir() -> Path:
    """The vectors/ directory of a source checkout, where `generate` writes by default."""
    return target_directory(None)


def _refuse_checking_the_wrong_tree(directory: Path | None) -> None:
    """Without --dir, check reads the package's files: inside another checkout that would
    check the installed copy, not the files the author edited."""
    if directory is not None:
        return
    cwd_root = _checkout_root(Path.cwd())
    if cwd_root is not None and cwd_root != _package_vectors().parent:
        _refuse_foreign_spec(cwd_root, "checking")


_DIR_OPTION = click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Directory of the vector files (default for generate: the source tree's vectors/; "
         "for check and verify: the files shipped in the package).")


@click.group("vectors")
def vectors_command() -> None:
    """Generate, check and verify the test vectors."""


@vectors_command.command("generate")
@_DIR_OPTION
@_one_line_errors
def generate(directory: Path | None) -> None:
    """Rewrite every vector file (YAML and JSON) and the schema bundle canonically."""
    target = target_directory(directory)
    with _loading_the_spec() as catalog:
        files = catalog.generate_all()
        bundle = catalog.dump_bundle()
    target.mkdir(parents=True, exist_ok=True)
    for vector_file in files:
        path = target / vector_file.file_name
        path.write_bytes(vector_file.dump().encode("utf-8"))
        (target / vector_file.json_file_name).write_bytes(
            vector_file.dump_json().encode("utf-8"))
        click.echo(f"wrote {path} and {vector_file.json_file_name}: {_counts(vector_file)}")
    bundle_path = target / catalog.BUNDLE_FILE
    bundle_path.parent.mkdir(parents=True, exist_ok=True)
    bundle_path.write_bytes(bundle.encode("utf-8"))
    click.echo(f"wrote {bundle_path}: {len(catalog.schemas())} schemas")


_FILES_ARGUMENT = click.argument("names", nargs=-1, metavar="[FILE]...")


def _selected(names: tuple[str, ...], available: list[str]) -> list[str]:
    """The file names NAMES select (`envelope`, `envelope.yaml`, `hashchain.mute`); all
    when none is given."""
    if not names:
        return available
    stems = {name.removesuffix(".yaml"): name for name in available}
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".yaml").removesuffix(".json")
        if stem not in stems:
            raise click.ClickException(f"no vector file {name!r}; the files are "
                                       f"{', '.join(stems)}")
        chosen.append(stems[stem])
    return [name for name in available if name in chosen]


@vectors_command.command("check")
@_DIR_OPTION
@_FILES_ARGUMENT
@_one_line_errors
def check(directory: Path | None, names: tuple[str, ...]) -> None:
    """Regenerate in memory; fail on any byte of drift or schema error (of the named
    files only, if FILE is given: `keyflows vectors check envelope hashchain.mute`)."""
    _refuse_checking_the_wrong_tree(directory)
    failed = False
    with _loading_the_spec() as catalog:
        generated_files = catalog.generate_all()
    chosen = set(_selected(names, [f.file_name for f in generated_files]))
    for vector_file in (f for f in generated_files if f.file_name in chosen):
        problems = _check_file(catalog, vector_file, directory)
        failed = failed or bool(problems)
        if not problems:
            click.echo(f"{vector_file.file_name}: ok, {_counts(vector_file)}; "
                       f"{vector_file.json_file_name} holds the same data")
    shipped_bundle = catalog.read_vector_text(catalog.BUNDLE_FILE, directory)
    if shipped_bundle != catalog.dump_bundle():
        failed = True
        _drift(catalog.BUNDLE_FILE, shipped_bundle, catalog.dump_bundle())
    else:
        click.echo(f"{catalog.BUNDLE_FILE}: ok, {len(catalog.schemas())} schemas")
    if failed:
        sys.exit(1)


def _check_file(catalog: ModuleType, vector_file: VectorFile, directory: Path | None
                ) -> list[str]:
    """Report (to stderr) and return every problem of one file and its JSON twin."""
    problems: list[str] = []
    name, json_name = vector_file.file_name, vector_file.json_file_name
    shipped = catalog.read_vector_text(name, directory)
    if shipped != vector_file.dump():
        problems.append("drift")
        _drift(name, shipped, vector_file.dump())
    plain = catalog.parse_vector_text(name, shipped)
    errors = catalog.schema_errors(plain)
    if errors:
        problems.append("schema")
        click.echo(f"{name}: schema error {errors[0]}", err=True)
        for error in errors[1:SCHEMA_ERRORS_SHOWN]:
            click.echo(f"{name}:   also {error}", err=True)
        if len(errors) > SCHEMA_ERRORS_SHOWN:
            click.echo(f"{name}:   ... and {len(errors) - SCHEMA_ERRORS_SHOWN} more", err=True)
    shipped_json = catalog.read_vector_text(json_name, directory)
    if shipped_json != vector_file.dump_json():
        problems.append("json drift")
        _drift(json_name, shipped_json, vector_file.dump_json())
    if catalog.parse_json_text(json_name, shipped_json) != plain:
        problems.append("json differs")
        click.echo(f"{json_name}: its data differs from {name} (run `keyflows vectors "
                   "generate`)", err=True)
    return problems


def _drift(name: str, shipped: str, generated: str) -> None:
    click.echo(f"{name}: drift: the shipped file differs from the generator "
               "(run `keyflows vectors generate` and review the diff)", err=True)
    click.echo(_diff_excerpt(name, shipped, generated), err=True, nl=False)


@vectors_command.command("verify")
@_DIR_OPTION
@_FILES_ARGUMENT
@_one_line_errors
def verify(directory: Path | None, names: tuple[str, ...]) -> None:
    """Replay every case (of the named files, if FILE is given) through the spec's
    consumer side."""
    failed = False
    with _loading_the_spec() as catalog:
        chosen = _selected(names, list(catalog.FILE_NAMES))
    for name in chosen:
        plain = catalog.parse_vector_text(name, catalog.read_vector_text(name, directory))
        tally = catalog.verify_file(plain)
        disagreed = len(tally.disagreements)
        click.echo(f"{name}: {tally.cases} cases, {tally.agreed} agreed, {disagreed} disagreed")
        for case_id, why in tally.disagreements[:20]:
            click.echo(f"  {case_id}: {why}", err=True)
        if disagreed > 20:
            click.echo(f"  ... and {disagreed - 20} more", err=True)
        failed = failed or disagreed > 0
    if failed:
        sys.exit(1)


def _counts(vector_file: VectorFile) -> str:
    results = [case.result for case in vector_file.cases]
    positives = results.count("valid")
    return (f"{len(results)} cases ({positives} positive, {len(results) - positives} "
            "negative)")


def _diff_excerpt(name: str, shipped: str, generated: str) -> str:
    diff = list(difflib.unified_diff(shipped.splitlines(keepends=True),
                                     generated.splitlines(keepends=True),
                                     fromfile=f"shipped/{name}", tofile=f"generated/{name}",
                                     n=2))
    excerpt = diff[:DIFF_LINES]
    lines = [_clip_line(line) for line in excerpt]
    if len(diff) > DIFF_LINES:
        lines.append(f"... ({len(diff) - DIFF_LINES} more diff lines)\n")
    return "".join(lines)


def _clip_line(line: str, limit: int = 200) -> str:
    line = line.rstrip("\n")
    return (line if len(line) <= limit else line[:limit - 3] + "...") + "\n"
