"""Coverage that means something: every requirement has a coverage class
(spec/requirements.yaml `coverage:`; none means `runner`), and the class holds.

- runner: a conformance check cites it (or it is listed in PENDING below, with the reason
  its check does not exist yet; the list may only shrink).
- vectors: a rule binding clients only; a vector case cites it.
- unobservable: nothing a client sees over HTTP changes; the registry says why.

Evidence of observability overrides the class: a requirement whose mutants the
conformance runner killed (tests/mutation/observed.yaml, written by `nox -s mutation`)
changes an HTTP answer, so it must be of class runner and cited by a check, PENDING or not.
Likewise a requirement cited by a check that a broken-server variant in tests/ fails
is observable: it may not be classed unobservable.
"""

from __future__ import annotations

from pathlib import Path

from keyflows.conformance.registry import all_checks
from keyflows.spec import yamlfile
from keyflows.spec.requirements import COVERAGE_CLASSES, registry

ROOT = Path(__file__).resolve().parent.parent
OBSERVED = ROOT / "tests" / "mutation" / "observed.yaml"

PENDING: dict[str, str] = {
}


def cited_by_checks() -> set[str]:
    return {rid for check in all_checks() for rid in check.requirements}


def cited_by_vectors() -> set[str]:
    out: set[str] = set()
    for path in sorted((ROOT / "vectors").glob("*.yaml")):
        for case in yamlfile.load(path.read_text(encoding="utf-8")).get("cases", []):
            out.update(case.get("requirements") or ())
    return out


def observed() -> set[str]:
    if not OBSERVED.exists():
        return set()
    data = yamlfile.load(OBSERVED.read_text(encoding="utf-8")) or {}
    return set(data)


def test_every_requirement_has_a_class() -> None:
    for req in registry().values():
        assert req.coverage in COVERAGE_CLASSES, req.id
        assert (req.coverage == "unobservable") == bool(req.reason), req.id
        assert "\n" not in req.reason, req.id


def test_runner_requirements_are_checked() -> None:
    checked = cited_by_checks()
    unchecked = [rid for rid, req in registry().items()
                 if req.coverage == "runner" and rid not in checked and rid not in PENDING]
    assert unchecked == [], "requirements of class runner without a check (write one, or " \
                            "class them in spec/requirements.yaml)"


def test_pending_only_shrinks() -> None:
    """An entry leaves PENDING as soon as its check exists or its class changes."""
    checked = cited_by_checks()
    known = registry()
    stale = [rid for rid in PENDING
             if rid not in known or rid in checked or known[rid].coverage != "runner"]
    assert stale == []


def test_vector_requirements_have_vectors() -> None:
    vectors = cited_by_vectors()
    missing = [rid for rid, req in registry().items()
               if req.coverage == "vectors" and rid not in vectors]
    assert missing == []


def test_observable_requirements_are_checked_by_the_runner() -> None:
    seen = observed()
    known = registry()
    checked = cited_by_checks()
    assert seen <= set(known), seen - set(known)
    misclassed = [rid for rid in sorted(seen) if known[rid].coverage != "runner"]
    assert misclassed == [], "a mutant of these changed an HTTP answer: class them runner"
    unchecked = [rid for rid in sorted(seen) if rid not in checked]
    assert unchecked == [], "a mutant of these changed an HTTP answer: they need a check"


BROKEN_VARIANT_MODULES = ("broken_servers", "broken_contract", "broken_generic",
                          "broken_envelope", "broken_hashchain", "broken_lock_layering",
                          "broken_session_challenge", "broken_directory",
                          "broken_hashchain_log")


def checks_broken_variants_fail() -> set[str]:
    """Every check id that some broken-server variant in tests/ must fail."""
    import importlib

    out: set[str] = set()
    for name in BROKEN_VARIANT_MODULES:
        for variant in importlib.import_module(name).VARIANTS:
            fails = variant.must_fail
            out.update((fails,) if isinstance(fails, str) else fails)
    return out


def test_requirements_a_broken_variant_shows_observable_are_not_unobservable() -> None:
    """A check that catches a broken server shows the rules it cites change an HTTP
    answer: none of them may be classed unobservable."""
    known = registry()
    by_id = {check.id: check for check in all_checks()}
    caught = checks_broken_variants_fail()
    assert caught <= set(by_id), sorted(caught - set(by_id))
    misclassed = sorted({(rid, check) for check in caught for rid in by_id[check].requirements
                         if rid in known and known[rid].coverage == "unobservable"})
    assert misclassed == [], "a broken-server variant is caught by a check citing these " \
                             "(requirement, check): class them runner"
