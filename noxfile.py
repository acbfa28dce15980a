"""Sessions: tests, lint, typecheck, vectors, conformance, docs, bench."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "vectors"]
nox.options.reuse_existing_virtualenvs = True

# The interpreter nox itself runs on: the machine needs no second Python.
PYTHON = None


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (README's test command)."""
    session.install("-e", ".[test,docs]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "spec", "vectors", "reference", "conformance", "tests",
                "docs", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("mypy", "spec", "vectors", "reference", "conformance")


@nox.session(python=PYTHON)
def vectors(session: nox.Session) -> None:
    """Regenerate every vector in memory; fail on any byte of drift or schema error."""
    session.install("-e", ".")
    session.run("keyflows", "vectors", "check")
    session.run("keyflows", "vectors", "verify")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The conformance suite against the embedded reference server."""
    session.install(".")
    session.run("keyflows", "conformance", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the spec site offline, warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("python", "docs/build.py")
