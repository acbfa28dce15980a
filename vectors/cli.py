"""`keyflows vectors generate | check | verify`.

- generate: rewrite every vector file canonically (into the source tree by default).
- check: regenerate in memory, fail on any byte of drift or any schema error.
- verify: replay every shipped case through the spec's consumer side.

Every failure is one readable line (plus, for drift, a diff excerpt), never a traceback.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from keyflows.vectors import catalog
from keyflows.vectors.framework import VectorFile, iter_cases

DIFF_LINES = 40

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Turn any failure into `Error: <one line>` and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except catalog.VectorError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:  # the promise is one line, whatever went wrong
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def source_tree_dir() -> Path:
    """The vectors/ directory of a source checkout, where `generate` writes by default."""
    import keyflows.vectors as package

    here = Path(package.__file__ or "").resolve().parent
    if (here.parent / "pyproject.toml").is_file() and os.access(here, os.W_OK):
        return here
    raise click.ClickException(
        f"keyflows is installed as a package ({here}), not run from a source checkout: "
        "pass --dir DIR to write the vector files elsewhere")


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
    """Rewrite every vector file canonically."""
    target = directory if directory is not None else source_tree_dir()
    files = catalog.generate_all()
    target.mkdir(parents=True, exist_ok=True)
    for vector_file in files:
        path = target / vector_file.file_name
        path.write_bytes(vector_file.dump().encode("utf-8"))
        click.echo(f"wrote {path}: {_counts(vector_file)}")


@vectors_command.command("check")
@_DIR_OPTION
@_one_line_errors
def check(directory: Path | None) -> None:
    """Regenerate in memory; fail on any byte of drift or schema error."""
    failed = False
    for vector_file in catalog.generate_all():
        name = vector_file.file_name
        shipped = catalog.read_vector_text(name, directory)
        generated = vector_file.dump()
        if shipped != generated:
            failed = True
            click.echo(f"{name}: drift: the shipped file differs from the generator "
                       "(run `keyflows vectors generate` and review the diff)", err=True)
            click.echo(_diff_excerpt(name, shipped, generated), err=True, nl=False)
        errors = catalog.schema_errors(catalog.parse_vector_text(name, shipped))
        for error in errors[:10]:
            click.echo(f"{name}: schema error {error}", err=True)
        if errors:
            failed = True
            more = len(errors) - 10
            if more > 0:
                click.echo(f"{name}: ... and {more} more schema errors", err=True)
        if shipped == generated and not errors:
            click.echo(f"{name}: ok, {_counts(vector_file)}")
    if failed:
        sys.exit(1)


@vectors_command.command("verify")
@_DIR_OPTION
@_one_line_errors
def verify(directory: Path | None) -> None:
    """Replay every case through the spec's consumer side."""
    failed = False
    for name in catalog.FILE_NAMES:
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
    plain = vector_file.to_plain()
    results = [case["result"] for case in iter_cases(plain)]
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
