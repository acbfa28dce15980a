"""Sessions: tests, lint, typecheck, vectors, conformance, docs, bench."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "vectors"]
nox.options.reuse_existing_virtualenvs = True

# The interpreter nox itself runs on: the machine needs no second Python.
PYTHON = None


# Test processes (pytest-xdist): much of the suite waits (servers, browsers, lifetimes
# running out), so two processes fill two cores. Whole files go to one process (their
# module fixtures run once). `nox -s tests -- -n 0` runs in one process.
TEST_WORKERS = ("-n", "2", "--dist", "loadfile")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (README's test command)."""
    session.install("-e", ".[test,docs]")
    session.run("pytest", *TEST_WORKERS, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "spec", "vectors", "reference", "conformance", "tests",
                "docs", "noxfile.py")


PACKAGES = ("spec", "vectors", "reference", "conformance")


def _namespace_root() -> Path:
    """A folder laid out as installed (keyflows/spec -> spec, ...) so mypy resolves
    `keyflows.*` imports to the source files; it cannot see through the editable hook."""
    root = Path(".nox/mypyroot")
    (root / "keyflows").mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        link = root / "keyflows" / name
        if not link.is_symlink():
            link.symlink_to(Path.cwd() / name, target_is_directory=True)
    return root


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[lint,test]")
    root = _namespace_root()
    modules = [arg for name in PACKAGES for arg in ("-p", f"keyflows.{name}")]
    session.run("mypy", "--config-file", str(Path.cwd() / "pyproject.toml"), *modules,
                env={"MYPYPATH": str(root.resolve())})
    # The tests too, strict as the packages: their helper modules (servers.py, the
    # broken servers, the mutation harness) are imported by name from tests/.
    session.run("mypy", "--config-file", str(Path.cwd() / "pyproject.toml"),
                "--explicit-package-bases", "tests",
                env={"MYPYPATH": f"{root.resolve()}:{Path('tests').resolve()}"})


@nox.session(python=PYTHON)
def vectors(session: nox.Session) -> None:
    """Regenerate every vector in memory; fail on any byte of drift or schema error."""
    session.install("-e", ".")
    session.run("keyflows", "vectors", "check")
    session.run("keyflows", "vectors", "verify")


@nox.session(name="verify-js", venv_backend="none")
def verify_js(session: nox.Session) -> None:
    """Every vector file through the independent JavaScript verifier (node >= 20, npm)."""
    node_dir = "vectors/verifiers/node"
    session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", node_dir, external=True)
    session.run("node", f"{node_dir}/verify.mjs", "vectors/", external=True)


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The conformance suite against the embedded reference server."""
    session.install(".")
    session.run("keyflows", "conformance", *session.posargs)


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation testing of the conformance runner: one reference server per mutated
    enforcement site, checked by the pristine runner; prints the score overall and per
    flow and the survivors. Options after `--`: --flow F, --only SITE, --jobs N, --list,
    --update-manifest (after adding enforcement code), --fail-under [PCT] (exit 1 under the
    bar of 90% overall and 85% per flow; without it a finished run exits 0), --results FILE,
    --combine FILE... (one table from several runs). See tests/mutation/README.md."""
    session.install("-e", ".")
    session.run("python", "-m", "mutation", *session.posargs,
                env={"PYTHONPATH": str(Path("tests").resolve())})


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the spec site offline, warnings as errors; fail if the committed plain-text
    rendering (docs/text/) is stale. `nox -s docs -- --text` rewrites it instead."""
    session.install("-e", ".[docs]")
    session.run("python", "docs/build.py", *(session.posargs or ["--check-text"]))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Envelope: 1 MiB to 10/100/1000 devices and back, beside `age` (Debian: apt-get
    install -y age). Prints a table; not a test. Options: --recipients, --repeat."""
    session.install("-e", ".")
    session.run("python", "tests/bench_envelope.py", *session.posargs)
    # Hashchain: 10,000,000 appends to the Merkle tree, proof sizes, inclusion and
    # consistency verification beside the bare SHA-256 calls (floor/ours >= 0.7), medians
    # of 5 interleaved rounds in CPU time; then 60 s of durable appends to the reference
    # server beside a SQLite commit floor; load printed (options: its --help).
    session.run("python", "tests/bench_hashchain.py")
    # Key directory of 1,000,000 identities, medians of 5 interleaved rounds in CPU time:
    # VRF and map proof generation apart, proof sizes, the directory's proof verification
    # beside the bare ECVRF verification and SHA-256 calls it needs (floor/ours >= 0.7),
    # an epoch of 1,000 changes, a history through the directory beside the scan of the
    # 1,000,000-entry log (options: its --help).
    session.run("python", "tests/bench_directory.py")
    # Reference server (Debian: apt-get install -y wrk): public-key GET beside a Starlette
    # hello-world (and the directory's keypair lookup beside it), owner GET beside the
    # public GET, queue read at 10,000 beside 10.
    session.run("python", "tests/bench_server.py")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The reference server under a minute of mixed traffic (publications, lookups,
    envelopes, ACKs, log appends) with its default limits: 0 errors and 0 5xx required;
    p50/p99 per kind and the server's memory before and after. Options: --seconds,
    --clients."""
    session.install("-e", ".")
    session.run("python", "tests/soak_server.py", *session.posargs)


@nox.session(name="conformance-hostile", python=PYTHON)
def conformance_hostile(session: nox.Session) -> None:
    """The runner with default options against a drip server and a 100 MB-body server:
    exit 1 within 5 minutes, peak memory under 300 MB, both reports parse."""
    session.install(".")
    session.run("python", "tests/soak_hostile.py")
