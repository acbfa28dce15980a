"""`nox -s mutation [-- options]`: mutation testing of the conformance runner.

  --flow F            only sites of flow F (repeatable): common, key-derivation, ...
  --only ID           only this site, or every site whose id starts with ID (repeatable)
  --equivalents       run only the sites judged equivalent in equivalent.yaml (within the
                      selection) and report any the runner kills: a stale judgement
  --jobs N            mutants run at once (default 4: see DEFAULT_JOBS)
  --list              print the selected sites and exit
  --update-manifest   rewrite manifest.yaml from the code (judgements are kept) and exit
  --results FILE      the JSON results (default test-output/mutation/results.json, or
                      equivalents.json with --equivalents)
  --combine FILE...   print one report from the results of earlier runs (e.g. one run per
                      flow: `--flow F --results F.json`), later files winning per site
  --fail-under [PCT]  exit 1 when the score is under the bar (default bar: 90% overall
                      and 85% per flow; PCT replaces both); without it a finished run
                      exits 0

A default run does not run the sites listed in equivalent.yaml: each is reported as
"equivalent (listed, not run)" and counted as an equivalent mutant, as a listed mutant
that survives its run is. `--equivalents` runs exactly those sites, so a judgement the
runner has made stale (a listed mutant it now kills) cannot hide.

Exit status: 0 the run finished (and, with --fail-under, the score meets the bar: the
score overall and of every flow run at least the bar, equivalents at most 15% of the
population; with --equivalents, every listed mutant run survived), 1 with --fail-under
and the score under the bar, or with --equivalents and a listed mutant killed, 2 the run
could not start (manifest out of date, pristine run failing), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from keyflows.conformance.registry import FLOWS

from . import manifest
from .harness import (
    CHILDREN,
    KILLED,
    LISTED,
    SURVIVED,
    TIMEOUT,
    HarnessError,
    Outcome,
    Prepared,
    Retired,
    Workers,
    judge,
    prepare,
    snapshot,
)
from .report import OVERALL_BAR, render, summary, verdict
from .sites import EXCLUSION_RULES, ROOT, Site, discover, discover_all

DEFAULT_RESULTS = ROOT / "test-output" / "mutation" / "results.json"
DEFAULT_JOBS = 4
"""Mutants judged at once. A lane mostly waits (the runner's time checks sleep, requests
cross loopback): one whole conformance run costs about a quarter of a core, so on 2 cores
4 lanes judge a surviving mutant about as fast as 1 lane does (29 s against 25 s for the
pristine run alone, measured), and the whole population takes half the time of 2 lanes."""
EQUIVALENTS_RESULTS = ROOT / "test-output" / "mutation" / "equivalents.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nox -s mutation --",
                                     description="Mutation testing of the conformance runner.")
    parser.add_argument("--flow", action="append", default=[], choices=FLOWS)
    parser.add_argument("--only", action="append", default=[], metavar="ID")
    parser.add_argument("--equivalents", action="store_true")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--update-manifest", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--combine", nargs="+", type=Path, default=[], metavar="FILE")
    parser.add_argument("--fail-under", type=float, nargs="?", const=OVERALL_BAR,
                        default=None, metavar="PCT")
    args = parser.parse_args(argv)
    if args.equivalents and (args.fail_under is not None or args.combine):
        parser.error("--equivalents reports stale judgements (exit 1 if one is killed); "
                     "--fail-under and --combine score default runs")
    if args.results is None:
        args.results = EQUIVALENTS_RESULTS if args.equivalents else DEFAULT_RESULTS
    return args


def fail(message: str) -> int:
    print(f"mutation: {message}", file=sys.stderr)
    return 2


def select(sites: list[Site], entries: dict[str, manifest.Entry],
           args: argparse.Namespace) -> list[Site]:
    chosen = sites
    if args.flow:
        chosen = [s for s in chosen if entries[s.id].flow in args.flow]
    if args.only:
        chosen = [s for s in chosen if any(s.id == o or s.id.startswith(o) for o in args.only)]
    return chosen


def plan(chosen: list[Site], equivalent: dict[str, str],
         equivalents_mode: bool) -> tuple[list[Site], list[Site]]:
    """(the sites to run, the listed equivalents reported without a run). A default run
    skips every site listed in equivalent.yaml; --equivalents runs exactly those."""
    listed = [s for s in chosen if s.id in equivalent]
    if equivalents_mode:
        return listed, []
    return [s for s in chosen if s.id not in equivalent], listed


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Ctrl-C and a termination request both stop every server and runner of the run.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.update_manifest:
        for line in manifest.update(discover()) or ["manifest.yaml is up to date"]:
            print(line)
        return 0
    if args.list:
        return checked(*discover_all(), args, run=None)
    if args.combine:
        return combine(args)
    with tempfile.TemporaryDirectory(prefix="keyflows-mutation-") as tmp:
        work = Path(tmp)
        pristine = snapshot(work)
        return checked(*discover_all(pristine / "keyflows"), args, run=(pristine, work))


def excluded_lines(left_out: dict[str, list[Site]]) -> list[str]:
    """How many sites each named rule leaves out of the population."""
    return [f"not in the population, {rule}: {len(sites)} sites in "
            f"{len(EXCLUSION_RULES[rule])} functions (tests/mutation/sites.py)"
            for rule, sites in left_out.items()]


def checked(sites: list[Site], left_out: dict[str, list[Site]], args: argparse.Namespace,
            run: tuple[Path, Path] | None) -> int:
    """Check the population against the manifest; then list or run the selection."""
    current = manifest.entries(sites)
    stale = manifest.differences(current, manifest.committed())
    if stale:
        for line in stale[:20]:
            print(f"  {line}", file=sys.stderr)
        return fail(f"the manifest differs from the code in {len(stale)} place(s); run "
                    "`nox -s mutation -- --update-manifest` and commit the result "
                    "(add missing requirements to tests/mutation/overrides.yaml)")
    missing = manifest.problems(current)
    if missing:
        for line in missing[:20]:
            print(f"  {line}", file=sys.stderr)
        return fail(f"{len(missing)} site(s) without a known requirement")
    entries = {e.id: e for e in current}
    chosen = select(sites, entries, args)
    to_run, listed = plan(chosen, manifest.equivalents(), args.equivalents)
    if not to_run and not listed:
        return fail("no listed equivalent matches the selection" if args.equivalents
                    else "no site matches the selection")
    if run is None:
        skipped = {s.id for s in listed}
        for site in chosen if not args.equivalents else to_run:
            e = entries[site.id]
            note = "  (equivalent: listed, not run)" if site.id in skipped else ""
            print(f"{site.id}  {site.where}  [{e.requirement}, {e.flow}]  "
                  f"{site.description}{note}")
        print(f"{len(to_run)} sites to run"
              + (f", {len(listed)} listed as equivalent (not run)" if listed else "")
              + f" of a population of {len(entries)}")
        print("\n".join(excluded_lines(left_out)))
        return 0
    try:
        return execute(to_run, listed, entries, args, *run,
                       left_out={rule: len(found) for rule, found in left_out.items()})
    except KeyboardInterrupt:
        CHILDREN.stop_all()
        print("\nmutation: interrupted; every server and runner stopped", file=sys.stderr)
        return 130


def execute(chosen: list[Site], listed: list[Site], entries: dict[str, manifest.Entry],
            args: argparse.Namespace, pristine: Path, work: Path, *,
            left_out: dict[str, int]) -> int:
    started = time.monotonic()
    equivalent = manifest.equivalents()
    workers = Workers(pristine)
    try:
        outcomes = [not_run(site, entries[site.id]) for site in listed]
        if chosen:
            outcomes += _execute(chosen, entries, args, pristine, work, workers, equivalent)
    except HarnessError as exc:
        return fail(str(exc))
    finally:
        workers.close()
    return conclude(outcomes, entries, args, equivalent, started,
                    selected=len(chosen) + len(listed), left_out=left_out)


def not_run(site: Site, entry: manifest.Entry) -> Outcome:
    return Outcome(id=site.id, flow=entry.flow, requirement=entry.requirement,
                   where=site.where, mutation=site.description, status=LISTED,
                   reason="equivalent (listed, not run)")


def _execute(chosen: list[Site], entries: dict[str, manifest.Entry],
             args: argparse.Namespace, pristine: Path, work: Path, workers: Workers,
             equivalent: dict[str, str]) -> list[Outcome]:
    checks = workers.checks()
    baseline = judge(None, "common", None, pristine, work, workers, checks)
    if baseline.status != SURVIVED:
        raise HarnessError(f"the pristine server does not pass the runner: {baseline.reason}")
    shaky = f" (failed once, then passed alone: {', '.join(baseline.flaky)})" \
        if baseline.flaky else ""
    print(f"pristine run: every check passed in {baseline.seconds:.1f} s{shaky}; "
          f"{len(chosen)} mutants, {args.jobs} at a time", flush=True)
    outcomes: list[Outcome] = []
    pending: queue.SimpleQueue[Site] = queue.SimpleQueue()
    for site in chosen:
        pending.put(site)
    lock = threading.Lock()
    retired = Retired()
    # Each lane judges one mutant at a time while the next one's server starts.
    preparing = ThreadPoolExecutor(max_workers=max(1, args.jobs))

    def take() -> Future[Prepared] | None:
        try:
            site = pending.get_nowait()
        except queue.Empty:
            return None
        return preparing.submit(prepare, site, pristine, work)

    def lane() -> None:
        ahead = take()
        try:
            while ahead is not None and not CHILDREN.stopping:
                ready = ahead.result()
                ahead = take()
                site = ready.site
                assert site is not None
                outcome = judge(site, entries[site.id].flow, entries[site.id].requirement,
                                pristine, work, workers, checks, prepared=ready,
                                retire=retired.retire)
                with lock:
                    outcomes.append(outcome)
                    progress(len(outcomes), len(chosen), outcome, equivalent)
        finally:
            if ahead is not None:
                ahead.cancel()
                if not ahead.cancelled() and ahead.exception() is None:
                    retired.retire(ahead.result())

    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        for future in as_completed([pool.submit(lane) for _ in range(max(1, args.jobs))]):
            future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        CHILDREN.stop_all()
        pool.shutdown(wait=True)
        raise
    finally:
        preparing.shutdown(wait=True, cancel_futures=True)
        retired.join()
    pool.shutdown()
    return outcomes


def conclude(outcomes: list[Outcome], entries: dict[str, manifest.Entry],
             args: argparse.Namespace, equivalent: dict[str, str], started: float,
             selected: int, left_out: dict[str, int]) -> int:
    """Write the results, print the report; the exit status."""
    outcomes.sort(key=lambda o: o.where)
    wall = time.monotonic() - started
    report = summary(outcomes, equivalent, population=len(entries), left_out=left_out)
    report["wall_seconds"] = round(wall, 1)
    report["command"] = " ".join(["nox -s mutation --", *sys.argv[1:]])
    report["jobs"] = args.jobs
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"summary": report,
                                        "mutants": [o.as_json() for o in outcomes]},
                                       indent=2) + "\n", encoding="utf-8")
    # observed.yaml: only kills by a failing check against a running server show that a
    # requirement changes an HTTP answer (a server that cannot start shows nothing of it)
    killed: dict[str, int] = {}
    for o in outcomes:
        if o.status == KILLED and o.by_check and o.requirement:
            killed[o.requirement] = killed.get(o.requirement, 0) + 1
    manifest.record_observed(killed, complete=selected == len(entries)
                             and not args.equivalents)
    if args.equivalents:
        print(render_equivalents(outcomes, equivalent, report))
    else:
        print(render(outcomes, equivalent, report))
    print(f"results: {args.results} ({wall / 60:.1f} min with {args.jobs} jobs)")
    if args.equivalents:
        return 1 if report["equivalent_but_killed"] else 0
    return finish(report, args)


def render_equivalents(outcomes: list[Outcome], equivalent: dict[str, str],
                       report: dict[str, Any]) -> str:
    """The --equivalents report: which listed mutants still survive, which are killed."""
    stale = [o for o in outcomes if o.status in (KILLED, TIMEOUT)]
    out = [f"listed equivalents run: {len(outcomes)}; still survive: "
           f"{len(outcomes) - len(stale)}; killed: {len(stale)}"]
    if stale:
        out.append("killed, so NOT equivalent (remove from tests/mutation/equivalent.yaml "
                   "and count them as killed):")
        for o in stale:
            out.append(f"  {o.where}  [{o.requirement}]  {o.mutation}")
            out.append(f"      {o.id}  <- {', '.join(o.failed_checks[:2]) or o.reason}")
            out.append(f"      judged: {equivalent.get(o.id, '?')}")
    if report["flaky_checks"]:
        out.append("checks that failed, then passed alone on a fresh server of the same "
                   "mutant (not counted as kills): "
                   + ", ".join(report["flaky_checks"]))
    out.append(f"equivalent: {report['equivalent_listed']} listed of a population of "
               f"{report['population']} ({report['equivalent_share']}%)")
    return "\n".join(out)


def combine(args: argparse.Namespace) -> int:
    """One report from several results files, judged with today's equivalence file."""
    by_id: dict[str, Outcome] = {}
    commands = []
    for path in args.combine:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            by_id.update((m["id"], Outcome(**m)) for m in data["mutants"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return fail(f"{path}: not a results file of this harness ({exc})")
        commands.append(f"  {path}: {data['summary'].get('command', '?')}")
    entries = manifest.committed()
    listed = {e.id for e in entries}
    equivalent = manifest.equivalents()
    # a site skipped as a listed equivalent, whose judgement is gone since, has no verdict
    unjudged = sorted(o.id for o in by_id.values()
                      if o.status == LISTED and o.id in listed and o.id not in equivalent)
    outcomes = sorted((o for o in by_id.values() if o.id in listed and o.id not in unjudged),
                      key=lambda o: o.where)
    gone = len(by_id) - len(outcomes) - len(unjudged)
    sites = Counter(e.flow for e in entries if e.flow)
    report = summary(outcomes, equivalent, population=len(listed), sites=dict(sites),
                     left_out={rule: len(found)
                               for rule, found in discover_all()[1].items()})
    print("\n".join(["combined results of:", *commands]))
    if gone:
        print(f"({gone} results of sites no longer in the manifest left out)")
    if unjudged:
        print(f"({len(unjudged)} sites were not run as listed equivalents and are no longer "
              "listed: run them, e.g. --only " + unjudged[0] + ")")
    print(render(outcomes, equivalent, report))
    return finish(report, args)


def finish(report: dict[str, Any], args: argparse.Namespace) -> int:
    """The exit status: 0 unless --fail-under was given and the score is under it."""
    if args.fail_under is None:
        return 0
    met = verdict(report, args.fail_under)
    if not met:
        print(f"mutation: the score is under the bar of {args.fail_under:g}% "
              "(--fail-under)", file=sys.stderr)
    return 0 if met else 1


def progress(done: int, total: int, outcome: Outcome, equivalent: dict[str, str]) -> None:
    label = {KILLED: "killed", SURVIVED: "SURVIVED", TIMEOUT: "timeout",
             LISTED: "equivalent"}[outcome.status]
    if outcome.status == SURVIVED and outcome.id in equivalent:
        label = "equivalent"
    detail = ", ".join(outcome.failed_checks[:2]) if outcome.status == KILLED else ""
    print(f"[{done}/{total}] {label:<10} {outcome.where}  {outcome.mutation[:70]}"
          f"{f'  <- {detail}' if detail else ''} ({outcome.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
