"""Test tiers.

`pytest -m "not slow"` (or `nox -s tests -- -m "not slow"`) is the quick tier: the
specification, primitives against their known-answer vectors, the vectors and their
files, the reference server in-process. It leaves out what starts processes, browsers
or tokens, and marks those tests `slow` here by module, so a new module of such tests is
slow by its name alone (any `test_conformance*.py`) or by one line below:

- the conformance runner against live servers (test_conformance*.py, test_schemathesis.py);
- the spec site in headless Chromium (test_docs.py);
- the JavaScript verifier under node (test_verify_js.py);
- the mutation harness (test_mutation_manifest.py);
- lock backends through moto_server and SoftHSM2 (test_server_lock.py);
- a server killed with SIGKILL (test_hashchain_durability.py);
- a copy of the package installed and run by another interpreter (test_vectors_authors.py).

A module may also mark itself (`pytestmark = pytest.mark.slow`).
"""

from __future__ import annotations

import pytest

SLOW_PREFIXES = ("test_conformance",)
SLOW_MODULES = frozenset({
    "test_schemathesis.py",
    "test_docs.py",
    "test_verify_js.py",
    "test_mutation_manifest.py",
    "test_server_lock.py",
    "test_hashchain_durability.py",
    "test_vectors_authors.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in SLOW_MODULES or name.startswith(SLOW_PREFIXES):
            item.add_marker(pytest.mark.slow)
