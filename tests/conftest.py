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

from collections import Counter

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
    _unique_node_ids(items)
    # Slow modules first (each keeps its order): with two processes (`nox -s tests`),
    # the quick ones then fill the gaps instead of one long module ending the run alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give items that share a node id the id of their own name.

    Schemathesis (4.x under pytest 9) gives each operation's item the node id of the test
    function; pytest-xdist (`nox -s tests` runs two processes) schedules by node id and
    would run one operation of all."""
    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1 and item.parent is not None:
            item._id = item.parent.id.child(item.name)
