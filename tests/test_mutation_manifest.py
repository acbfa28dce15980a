"""The mutation population is listed in full, with requirements, and every mutant is real.

New refusal or enforcement code in reference/ (or in the spec/ functions it calls) makes
`test_manifest_lists_every_site` fail until `nox -s mutation -- --update-manifest` lists it,
with its requirement (tests/mutation/overrides.yaml where none can be inferred).
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

import pytest
from mutation import manifest
from mutation.harness import KILLED, SURVIVED, Workers, judge, snapshot
from mutation.report import EQUIVALENT_CAP
from mutation.serve_mutant import shadowed_modules
from mutation.sites import ROOT, Site, discover


@pytest.fixture(scope="module")
def sites() -> list[Site]:
    return discover()


def test_manifest_lists_every_site(sites: list[Site]) -> None:
    diff = manifest.differences(manifest.entries(sites), manifest.committed())
    assert not diff, ("the mutation manifest is out of date; run `nox -s mutation -- "
                      "--update-manifest` and commit it:\n  " + "\n  ".join(diff[:30]))


def test_every_site_has_a_known_requirement(sites: list[Site]) -> None:
    missing = manifest.problems(manifest.entries(sites))
    assert not missing, "\n".join(missing)


def test_site_ids_are_unique(sites: list[Site]) -> None:
    ids = [s.id for s in sites]
    assert len(ids) == len(set(ids))


def test_every_mutant_parses_and_differs(sites: list[Site]) -> None:
    sources: dict[str, bytes] = {}
    for site in sites:
        source = sources.setdefault(site.file, (ROOT / site.file).read_bytes())
        assert site.apply(source) != source, site.id
        ast.parse(site.mutated_scope(source), filename=site.id)


def test_the_population_covers_every_operator_and_both_layers(sites: list[Site]) -> None:
    assert {s.operator for s in sites} >= {"guard-false", "drop-raise", "drop-operand",
                                           "boundary", "drop-call", "accept"}
    assert {s.file.split("/")[0] for s in sites} == {"spec", "reference"}


def test_judgements_name_existing_sites_within_the_cap(sites: list[Site]) -> None:
    ids = {s.id for s in sites}
    equivalent = manifest.equivalents()
    assert set(equivalent) <= ids, set(equivalent) - ids
    assert all(reason.strip() and "\n" not in reason for reason in equivalent.values())
    assert 100.0 * len(equivalent) / len(sites) <= EQUIVALENT_CAP
    overrides = manifest.read_mapping(manifest.OVERRIDES)
    unused = [k for k in overrides if not any(i == k or i.startswith(k + ":") for i in ids)]
    assert not unused


def test_a_site_id_survives_an_unrelated_edit(sites: list[Site], tmp_path: Path) -> None:
    """Ids carry no line numbers: code added above a site leaves its id alone."""
    copy = tmp_path / "repo"
    for package in ("spec", "reference"):
        shutil.copytree(ROOT / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    auth = copy / "reference" / "auth.py"
    auth.write_text("# an unrelated comment\n\n" + auth.read_text(encoding="utf-8"),
                    encoding="utf-8")
    moved = discover(copy)
    assert [s.id for s in moved] == [s.id for s in sites]
    before = {s.id: s.line for s in sites if s.file == "reference/auth.py"}
    assert all(s.line == before[s.id] + 2 for s in moved if s.file == "reference/auth.py")


def test_shadowed_modules_names_a_module_outside_the_tree(tmp_path: Path) -> None:
    import keyflows.spec.encoding  # noqa: F401  (loaded from the working tree)

    assert any(name.startswith("keyflows.spec.encoding ")
               for name in shadowed_modules(tmp_path))
    assert not shadowed_modules(ROOT)  # the editable install loads from the working tree


@pytest.mark.slow
def test_a_mutant_server_runs_the_mutated_copy(sites: list[Site]) -> None:
    """End to end: the mutant that lets an unknown bearer token through is killed by a
    check citing its requirement, and the unmutated copy passes those checks, so the
    mutation is what kills it."""
    site = next(s for s in sites if s.id.startswith(
        "reference/auth.py:AccountClient.is_valid:accept:"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = snapshot(work)
        workers = Workers(base)
        try:
            checks = [c for c in workers.checks() if c.id.startswith("common/auth/")]
            killed = judge(site, "common", "API-3", base, work, workers, checks)
            pristine = judge(None, "common", "API-3", base, work, workers, checks)
        finally:
            workers.close()
    assert killed.status == KILLED, killed
    assert killed.phase == "requirement", killed
    assert any(c.startswith("common/auth/") for c in killed.failed_checks), killed
    assert pristine.status == SURVIVED, pristine


def test_runner_exitfirst_stops_after_the_first_failure() -> None:
    """The harness relies on --exitfirst: a killed mutant costs one failing check."""
    from typing import Any, cast

    from keyflows.conformance.account import AccountStore
    from keyflows.conformance.probe import CheckFailed, Probe, Session
    from keyflows.conformance.registry import Check
    from keyflows.conformance.runner import FAILED, PASSED, run_all

    ran: list[str] = []

    def make(name: str, fails: bool) -> Check:
        def func(t: Probe) -> None:
            ran.append(name)
            if fails:
                raise CheckFailed(f"{name} failed")
        return Check(id=f"common/x/{name}", flow="common", requirements=("API-2",),
                     needs=(), func=func, summary=name)

    checks = [make("a", False), make("b", True), make("c", False)]
    session = Session(base_url="http://127.0.0.1:9", http=cast(Any, None),
                      accounts=AccountStore(), capabilities={"flows": []})
    results = run_all(checks, session, known_failing=[], exitfirst=True).results
    assert [r.status for r in results if not r.not_run] == [PASSED, FAILED]
    assert ran == ["a", "b"] and results[2].not_run  # listed in reports, not run
    ran.clear()
    results = run_all(checks, session, known_failing=["common/x/b"], exitfirst=True).results
    assert len(results) == 3 and ran == ["a", "b", "c"]  # a known failure does not stop it


def test_a_score_under_the_bar_fails_only_when_asked(sites: list[Site], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A finished run exits 0 and prints the per-flow table; --fail-under makes a score
    under the bar exit 1 (here 1 killed of 2 counted = 50%)."""
    import json

    from mutation.__main__ import main
    from mutation.harness import Outcome

    entries = {e.id: e for e in manifest.entries(sites)}
    equivalent = manifest.equivalents()
    chosen = [s for s in sites if s.id not in equivalent and entries[s.id].flow == "common"]
    outcomes = [Outcome(id=site.id, flow="common", requirement=entries[site.id].requirement,
                        where=site.where, mutation=site.description, status=status)
                for site, status in zip(chosen[:2], (KILLED, SURVIVED), strict=True)]
    results = tmp_path / "common.json"
    results.write_text(json.dumps({"summary": {"command": "nox -s mutation -- --flow common"},
                                   "mutants": [o.as_json() for o in outcomes]}))
    assert main(["--combine", str(results)]) == 0
    out = capsys.readouterr().out
    assert "  common                     2          0       2      1        1  50.0%" in out
    assert "NOT met" in out and chosen[1].id in out
    assert main(["--combine", str(results), "--fail-under"]) == 1
    assert "under the bar of 90%" in capsys.readouterr().err
    assert main(["--combine", str(results), "--fail-under", "50"]) == 0


def test_a_default_run_skips_listed_equivalents_and_equivalents_runs_only_them(
        sites: list[Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A default run reports every listed equivalent as "listed, not run" and counts it as
    equivalent; --equivalents runs exactly the listed ones and exits 1 when one is killed
    (a stale judgement). The runner is replaced by a verdict per site id."""
    from typing import Any, cast

    import mutation.__main__ as cli
    from mutation.harness import LISTED, Outcome, Prepared

    equivalent = manifest.equivalents()
    entries = {e.id: e for e in manifest.entries(sites)}
    flow = "session-challenge"
    in_flow = [s for s in sites if entries[s.id].flow == flow]
    listed = [s for s in in_flow if s.id in equivalent]
    assert listed and len(listed) < len(in_flow)
    stale = listed[0].id
    ran: list[str] = []

    def fake_prepare(site: Site | None, base: Path, workdir: Path) -> Prepared:
        return Prepared(site, workdir, cast(Any, None), None, 0)  # no server started

    def fake_judge(site: Site | None, flow: str | None, requirement: str | None,
                   *rest: object, **options: object) -> Outcome:
        if site is not None:
            ran.append(site.id)
        status = KILLED if site is None or site.id not in equivalent or site.id == stale \
            else SURVIVED
        return Outcome(id=site.id if site else "(pristine)", flow=flow,
                       requirement=requirement, where=site.where if site else "",
                       mutation=site.description if site else "",
                       status=SURVIVED if site is None else status)

    class NoWorkers:
        def __init__(self, pristine: Path) -> None:
            pass

        def checks(self) -> list[object]:
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(cli, "judge", fake_judge)
    monkeypatch.setattr(cli, "prepare", fake_prepare)
    monkeypatch.setattr(cli, "Workers", NoWorkers)
    monkeypatch.setattr(manifest, "record_observed", lambda *a, **k: None)

    def run(*options: str) -> int:
        args = cli.parse_args(["--flow", flow, "--jobs", "1", "--results",
                               str(tmp_path / "r.json"), *options])
        return cli.checked(sites, {}, args, run=(tmp_path, tmp_path))

    assert run() == 0
    assert sorted(ran) == sorted(s.id for s in in_flow if s.id not in equivalent)
    out = capsys.readouterr().out
    assert f"equivalent (listed, not run) ({len(listed)}):" in out
    import json
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"]["flows"][flow]["equivalent"] == len(listed)
    assert data["summary"]["equivalent_not_run"] == len(listed)
    assert sum(m["status"] == LISTED for m in data["mutants"]) == len(listed)
    assert data["summary"]["flows"][flow]["score"] == 100.0

    ran.clear()
    assert run("--equivalents") == 1  # one listed mutant is killed
    assert sorted(ran) == sorted(s.id for s in listed)
    out = capsys.readouterr().out
    assert "killed: 1" in out and stale in out

    ran.clear()
    assert run("--equivalents", "--only", listed[-1].id) == 0  # still survives
    assert ran == [listed[-1].id]
    with pytest.raises(SystemExit):
        cli.parse_args(["--equivalents", "--fail-under"])


def test_functions_left_out_exist_and_name_the_test_that_covers_them() -> None:
    """The functions each named rule leaves out (start-up only, stored rows only) exist,
    hold sites, are not in the population, and each names a test (or vector verifier)
    that exists: they are tested there instead of over HTTP."""
    from mutation.sites import EXCLUSION_RULES, discover_all, listed_in

    population, left_out = discover_all()
    for rule, functions in EXCLUSION_RULES.items():
        assert left_out[rule], rule
        assert all(listed_in(s.file, s.function, functions) for s in left_out[rule])
        assert not [s.id for s in population if listed_in(s.file, s.function, functions)]
        for function, test in functions.items():
            file, name = function.split(":")
            short = name.split(".")[-1]
            text = (ROOT / file).read_text(encoding="utf-8")
            assert f"def {short}(" in text or f"class {short}" in text, function
            test_file, *classes, test_name = test.split("::")
            test_text = (ROOT / test_file).read_text(encoding="utf-8")
            assert f"def {test_name}(" in test_text, test
            assert all(f"class {c}" in test_text for c in classes), test


def test_stored_row_functions_are_reached_only_from_stores() -> None:
    """A function left out as parsing only the server's own rows must stay unreachable
    from every reference/ module but the stores: a route calling it with request input
    would make its mutants observable again."""
    from mutation.sites import STORED_ROW_FUNCTIONS, reached_outside_stores

    assert not reached_outside_stores(), (
        "reached from a reference/ module other than a store; take them out of "
        f"STORED_ROW_FUNCTIONS: {sorted(reached_outside_stores())}")
    assert STORED_ROW_FUNCTIONS


def test_start_up_and_backend_functions_are_reached_only_from_there(tmp_path: Path) -> None:
    """A spec/ function left out as start-up only is reached from reference/ only by
    functions that run while the server starts; one left out as backend code only by the
    backends the mutation run's server does not use, and that server uses the key-file
    lock. Anything else calling them would make their mutants observable again."""
    from mutation.sites import (
        BACKEND_FUNCTIONS,
        BACKEND_SELECTORS,
        STARTUP_CALLERS,
        STARTUP_FUNCTIONS,
        listed_in,
        reference_callers,
        reference_mentions,
    )

    from keyflows.conformance.embedded import server_arguments

    callers = reference_callers()
    start_up = {f: w for f, w in STARTUP_FUNCTIONS.items() if f.startswith("reference/")}
    for rule, allowed in ((STARTUP_FUNCTIONS, {**start_up, **STARTUP_CALLERS}),
                          (BACKEND_FUNCTIONS, BACKEND_FUNCTIONS)):
        for function in (f for f in rule if f.startswith("spec/")):
            file, name = function.split(":", 1)
            reached_by = callers.get((file, name), set())
            assert reached_by, f"{function} is not reached from reference/ at all"
            others = sorted(c for c in reached_by
                            if not listed_in(c.split(":", 1)[0], c.split(":", 1)[1], allowed))
            assert not others, f"{function} is reached from {others}: take it out"
    mentions = reference_mentions()
    for function in (f for f in BACKEND_FUNCTIONS if f.startswith("reference/")):
        named_by = sorted(c for c in mentions.get(function, set())
                          if not listed_in(c.split(":", 1)[0], c.split(":", 1)[1],
                                           {**BACKEND_FUNCTIONS, **BACKEND_SELECTORS}))
        assert not named_by, f"{function} is named outside its backend by {named_by}"
    options = server_arguments(tmp_path, "http://127.0.0.1:9", tmp_path / "ready")
    assert "--master-key-file" in options and "--server-lock" not in options
    assert not options[options.index("--db") + 1].startswith("postgres")


def test_a_parameter_named_like_a_function_does_not_reach_it(tmp_path: Path) -> None:
    """A spec/ function the server never calls stays out of the population even when a
    reached function has a parameter or local of the same name."""
    from mutation.sites import discover

    (tmp_path / "spec").mkdir()
    (tmp_path / "reference").mkdir()
    (tmp_path / "spec" / "errors.py").write_text(
        "class SpecError(Exception):\n    pass\n", encoding="utf-8")
    (tmp_path / "spec" / "flow.py").write_text(
        "from keyflows.spec.errors import SpecError\n\n\n"
        "def helper(x):\n    if x:\n        raise SpecError('helper')\n\n\n"
        "def client_only(x):\n    if x:\n        raise SpecError('client')\n\n\n"
        "def served(client_only, y):\n    helper(y)\n    return client_only\n",
        encoding="utf-8")
    (tmp_path / "reference" / "route.py").write_text(
        "from keyflows.spec.flow import served\n\n\n"
        "def route(a):\n    return served(a, a)\n", encoding="utf-8")
    functions = {s.function for s in discover(tmp_path)}
    assert "helper" in functions and "client_only" not in functions


def test_a_method_is_reached_only_where_it_may_be_called(tmp_path: Path) -> None:
    """A reached class brings the methods Python calls itself (dunders, properties) and
    those reached code names on an object that may be of that class; a method named only
    on objects known to be something else (a library's value, another class) stays out,
    with the spec/ functions only it calls."""
    (tmp_path / "spec").mkdir()
    (tmp_path / "reference").mkdir()
    (tmp_path / "spec" / "errors.py").write_text(
        "class SpecError(Exception):\n    pass\n", encoding="utf-8")
    checks = "".join(
        f"def {name}(x):\n    if x:\n        raise SpecError('{name}')\n\n\n"
        for name in ("by_path", "by_size", "by_dunder", "by_property", "by_other"))
    (tmp_path / "spec" / "flow.py").write_text(
        "from keyflows.spec.errors import SpecError\n\n\n" + checks
        + "class Tile:\n"
        "    def __init__(self, n):\n        by_dunder(n)\n        self.n = n\n\n"
        "    @property\n    def full(self):\n        return by_property(self.n)\n\n"
        "    def path(self):\n        return by_path(self.n)\n\n"
        "    def size(self):\n        return by_size(self.n)\n\n\n"
        "class Other:\n    def path(self):\n        return by_other(1)\n\n\n"
        "def parse(text):\n    return Tile(len(text))\n", encoding="utf-8")
    route = ("from urllib.parse import urlsplit\n\n"
             "from keyflows.spec import flow\n\n\n"
             "def route(url: str, other: flow.Other, tile: flow.Tile):\n"
             "    parts = urlsplit(url)\n"
             "    made = flow.Tile(3)\n"
             "    return parts.path, url.strip().path, other.path(), made.size(), tile.full\n")
    (tmp_path / "reference" / "route.py").write_text(route, encoding="utf-8")
    functions = {s.function for s in discover(tmp_path)}
    assert functions == {"by_size", "by_dunder", "by_property", "by_other"}
    # an object of unknown provenance may be a Tile: its `.path` reaches Tile.path
    for unknown in ("flow.parse(text)", "next(iter([flow.Tile(1)]))", "[text].pop()",
                    "super()"):
        (tmp_path / "reference" / "route.py").write_text(
            route + f"\n\ndef other_route(text):\n    return {unknown}.path()\n",
            encoding="utf-8")
        assert "by_path" in {s.function for s in discover(tmp_path)}, unknown
    # a library's object the code keeps its own objects on (as on Starlette's app.state)
    (tmp_path / "reference" / "route.py").write_text(
        route + "\n\ndef keep(url: str):\n    bag = urlsplit(url)\n"
        "    bag.kept = flow.Tile(1)\n    return bag.kept.path()\n", encoding="utf-8")
    assert "by_path" in {s.function for s in discover(tmp_path)}


def test_tile_paths_are_made_by_clients_only() -> None:
    """The server parses tile paths; it never writes one (Tile.path is a client's)."""
    from mutation.reach import load_modules, reachable_spec
    from mutation.sites import EXCLUDED_FILES

    reached = reachable_spec(load_modules(ROOT), EXCLUDED_FILES)
    tiles = "spec/hashchain_tiles.py"
    assert {(tiles, "Tile"), (tiles, "Tile.cache_control"), (tiles, "Tile.partial"),
            (tiles, "parse_tile_path")} <= reached
    assert (tiles, "Tile.path") not in reached and (tiles, "encode_index") not in reached


def test_only_kills_by_a_check_feed_observed(sites: list[Site], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """observed.yaml takes a requirement only from a mutant a check killed on a running
    server: a mutant whose server never started (or exited), or whose run timed out,
    shows nothing about its requirement over HTTP."""
    import time

    from mutation import __main__ as cli
    from mutation.harness import TIMEOUT, Outcome, Phase, _killed

    def killed(phase: Phase, crash: str = "") -> Outcome:
        outcome = Outcome(id="x", flow="common", requirement="API-1", where="", mutation="",
                          status=SURVIVED)
        _killed(outcome, "requirement", phase, crash)
        return outcome

    by_check = killed(Phase(1, ["common/x/y"], 0, ""))
    assert by_check.status == KILLED and by_check.by_check
    startup = killed(Phase(2, [], 0, "cannot reach"), "; the server exited with status 1: x")
    exited = killed(Phase(1, ["common/x/y"], 0, ""), "; the server exited with status 1: x")
    timed_out = killed(Phase(None, [], 0, "the runner did not finish"))
    assert startup.status == exited.status == KILLED and timed_out.status == TIMEOUT
    assert not (startup.by_check or exited.by_check or timed_out.by_check)

    entries = {e.id: e for e in manifest.entries(sites)}
    chosen = [s for s in sites if s.id not in manifest.equivalents()][:4]
    outcomes = []
    for site, template in zip(chosen, (by_check, startup, exited, timed_out), strict=True):
        outcome = Outcome(**{**template.as_json(), "id": site.id,
                             "requirement": entries[site.id].requirement})
        outcomes.append(outcome)
    recorded: list[dict[str, int]] = []
    monkeypatch.setattr(manifest, "record_observed",
                        lambda killed, complete: recorded.append(killed))
    args = cli.parse_args(["--jobs", "1", "--results", str(tmp_path / "r.json")])
    cli.conclude(outcomes, entries, args, manifest.equivalents(), time.monotonic(),
                 selected=4, left_out={})
    capsys.readouterr()
    assert recorded == [{entries[chosen[0].id].requirement: 1}]
