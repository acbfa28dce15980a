"""`nox -s mutation [-- options]`: mutation testing of the conformance runner.

  --flow F            only sites of flow F (repeatable): common, key-derivation, ...
  --only ID           only this site, or every site whose id starts with ID (repeatable)
  --jobs N            mutants run at once (default: the number of cores)
  --list              print the selected sites and exit
  --update-manifest   rewrite manifest.yaml from the code (judgements are kept) and exit
  --results FILE      the JSON results (default test-output/mutation/results.json)
  --combine FILE...   print one report from the results of earlier runs (e.g. one run per
                      flow: `--flow F --results F.json`), later files winning per site
  --fail-under [PCT]  exit 1 when the score is under the bar (default bar: 90% overall
                      and per flow; PCT replaces both); without it a finished run exits 0

Exit status: 0 the run finished (and, with --fail-under, the score meets the bar: the
score overall and of every flow run at least the bar, equivalents at most 15% of the
population), 1 with --fail-under and the score under the bar, 2 the run could not start
(manifest out of date, pristine run failing), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from keyflows.conformance.registry import FLOWS

from . import manifest
from .harness import (
    CHILDREN,
    KILLED,
    SURVIVED,
    TIMEOUT,
    HarnessError,
    Outcome,
    Workers,
    judge,
    snapshot,
)
from .report import OVERALL_BAR, render, summary, verdict
from .sites import ROOT, Site, discover

DEFAULT_RESULTS = ROOT / "test-output" / "mutation" / "results.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nox -s mutation --",
                                     description="Mutation testing of the conformance runner.")
    parser.add_argument("--flow", action="append", default=[], choices=FLOWS)
    parser.add_argument("--only", action="append", default=[], metavar="ID")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--update-manifest", action="store_true")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--combine", nargs="+", type=Path, default=[], metavar="FILE")
    parser.add_argument("--fail-under", type=float, nargs="?", const=OVERALL_BAR,
                        default=None, metavar="PCT")
    return parser.parse_args(argv)


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
        return checked(discover(), args, run=None)
    if args.combine:
        return combine(args)
    with tempfile.TemporaryDirectory(prefix="keyflows-mutation-") as tmp:
        work = Path(tmp)
        pristine = snapshot(work)
        return checked(discover(pristine / "keyflows"), args, run=(pristine, work))


def checked(sites: list[Site], args: argparse.Namespace,
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
    if not chosen:
        return fail("no site matches the selection")
    if run is None:
        for site in chosen:
            e = entries[site.id]
            print(f"{site.id}  {site.where}  [{e.requirement}, {e.flow}]  {site.description}")
        print(f"{len(chosen)} sites")
        return 0
    try:
        return execute(chosen, entries, args, *run)
    except KeyboardInterrupt:
        CHILDREN.stop_all()
        print("\nmutation: interrupted; every server and runner stopped", file=sys.stderr)
        return 130


def execute(chosen: list[Site], entries: dict[str, manifest.Entry],
            args: argparse.Namespace, pristine: Path, work: Path) -> int:
    started = time.monotonic()
    equivalent = manifest.equivalents()
    workers = Workers(pristine)
    try:
        return _execute(chosen, entries, args, pristine, work, workers, equivalent, started)
    except HarnessError as exc:
        return fail(str(exc))
    finally:
        workers.close()


def _execute(chosen: list[Site], entries: dict[str, manifest.Entry],
             args: argparse.Namespace, pristine: Path, work: Path, workers: Workers,
             equivalent: dict[str, str], started: float) -> int:
    checks = workers.checks()
    baseline = judge(None, "common", None, pristine, work, workers, checks)
    if baseline.status != SURVIVED:
        return fail(f"the pristine server does not pass the runner: {baseline.reason}")
    shaky = f" (failed once, then passed alone: {', '.join(baseline.flaky)})" \
        if baseline.flaky else ""
    print(f"pristine run: every check passed in {baseline.seconds:.1f} s{shaky}; "
          f"{len(chosen)} mutants, {args.jobs} at a time", flush=True)
    outcomes: list[Outcome] = []
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        futures = {pool.submit(judge, site, entries[site.id].flow,
                               entries[site.id].requirement, pristine, work, workers,
                               checks): site for site in chosen}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            progress(len(outcomes), len(chosen), outcome, equivalent)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        CHILDREN.stop_all()
        pool.shutdown(wait=True)
        raise
    pool.shutdown()
    outcomes.sort(key=lambda o: o.where)
    wall = time.monotonic() - started
    report = summary(outcomes, equivalent, population=len(entries))
    report["wall_seconds"] = round(wall, 1)
    report["command"] = " ".join(["nox -s mutation --", *sys.argv[1:]])
    report["jobs"] = args.jobs
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"summary": report,
                                        "mutants": [o.as_json() for o in outcomes]},
                                       indent=2) + "\n", encoding="utf-8")
    killed: dict[str, int] = {}
    for o in outcomes:
        if o.status in (KILLED, TIMEOUT) and o.requirement:
            killed[o.requirement] = killed.get(o.requirement, 0) + 1
    manifest.record_observed(killed, complete=len(chosen) == len(entries))
    print(render(outcomes, equivalent, report))
    print(f"results: {args.results} ({wall / 60:.1f} min with {args.jobs} jobs)")
    return finish(report, args)


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
    outcomes = sorted((o for o in by_id.values() if o.id in listed), key=lambda o: o.where)
    gone = len(by_id) - len(outcomes)
    equivalent = manifest.equivalents()
    sites = Counter(e.flow for e in entries if e.flow)
    report = summary(outcomes, equivalent, population=len(listed), sites=dict(sites))
    print("\n".join(["combined results of:", *commands]))
    if gone:
        print(f"({gone} results of sites no longer in the manifest left out)")
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
    label = {KILLED: "killed", SURVIVED: "SURVIVED", TIMEOUT: "timeout"}[outcome.status]
    if outcome.status == SURVIVED and outcome.id in equivalent:
        label = "equivalent"
    detail = ", ".join(outcome.failed_checks[:2]) if outcome.status == KILLED else ""
    print(f"[{done}/{total}] {label:<10} {outcome.where}  {outcome.mutation[:70]}"
          f"{f'  <- {detail}' if detail else ''} ({outcome.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
