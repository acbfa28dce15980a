"""The mutation score, overall and per flow, and the survivors."""

from __future__ import annotations

from collections import Counter
from typing import Any

from keyflows.conformance.registry import FLOWS

from .harness import KILLED, LISTED, SURVIVED, TIMEOUT, Outcome

OVERALL_BAR = 90.0
FLOW_BAR = 85.0
"""The acceptance bar: 90% overall and 85% for every flow; the report also names the flows
under FLOW_GOAL (some flows aim at 90% on their own)."""
FLOW_GOAL = 90.0
EQUIVALENT_CAP = 15.0


def is_equivalent(outcome: Outcome, equivalent: dict[str, str]) -> bool:
    """Counted as equivalent: listed and not run, or listed and survived its run."""
    return outcome.status == LISTED or (outcome.status == SURVIVED
                                        and outcome.id in equivalent)


def _score(outcomes: list[Outcome], equivalent: dict[str, str]) -> dict[str, Any]:
    killed = sum(o.status in (KILLED, TIMEOUT) for o in outcomes)
    judged = sum(is_equivalent(o, equivalent) for o in outcomes)
    counted = len(outcomes) - judged
    return {"mutants": len(outcomes), "killed": killed, "equivalent": judged,
            "survived": counted - killed,
            "score": round(100.0 * killed / counted, 1) if counted else 100.0}


def summary(outcomes: list[Outcome], equivalent: dict[str, str], *,
            population: int, sites: dict[str, int] | None = None,
            left_out: dict[str, int] | None = None) -> dict[str, Any]:
    """The score overall and per flow; `sites`: the number of listed sites per flow (a
    table then shows how many of them the outcomes cover); `left_out`: the sites each
    named rule of sites.py leaves out of the population."""
    flows = {flow: _score([o for o in outcomes if o.flow == flow], equivalent)
             for flow in FLOWS if any(o.flow == flow for o in outcomes)}
    for flow, count in (sites or {}).items():
        if flow in flows:
            flows[flow]["sites"] = count
    return {
        "overall": _score(outcomes, equivalent),
        "flows": flows,
        "population": population,
        "left_out": dict(left_out or {}),
        "equivalent_listed": len(equivalent),
        "equivalent_share": round(100.0 * len(equivalent) / population, 1) if population else 0,
        "equivalent_not_run": sum(o.status == LISTED for o in outcomes),
        "equivalent_but_killed": sorted(o.id for o in outcomes
                                        if o.id in equivalent and o.status in (KILLED, TIMEOUT)),
        "flaky_checks": dict(Counter(c for o in outcomes for c in o.flaky).most_common()),
    }


def verdict(report: dict[str, Any], bar: float | None = None) -> bool:
    """Whether the score meets the bar: `bar` overall and per flow when given, else
    OVERALL_BAR overall and FLOW_BAR per flow; equivalents within their cap."""
    overall, per_flow = (bar, bar) if bar is not None else (OVERALL_BAR, FLOW_BAR)
    return (report["overall"]["score"] >= overall
            and all(f["score"] >= per_flow for f in report["flows"].values())
            and report["equivalent_share"] <= EQUIVALENT_CAP)


def table(report: dict[str, Any]) -> list[str]:
    """The score per flow and overall as a fixed-width table."""
    head = f"  {'flow':<20} {'mutants':>7} {'equivalent':>10} {'counted':>7} " \
           f"{'killed':>6} {'survived':>8} {'score':>6}"
    if any("sites" in s for s in report["flows"].values()):
        head += "  sites listed"
    rows = [head, "  " + "-" * (len(head) - 2)]
    named = [*report["flows"].items(), ("overall", report["overall"])]
    for name, s in named:
        if name == "overall":
            rows.append(rows[1])
        rows.append(f"  {name:<20} {s['mutants']:>7} {s['equivalent']:>10} "
                    f"{s['mutants'] - s['equivalent']:>7} {s['killed']:>6} "
                    f"{s['survived']:>8} {s['score']:>5.1f}%"
                    + (f"  {s['sites']:>12}" if "sites" in s else ""))
    return rows


def render(outcomes: list[Outcome], equivalent: dict[str, str], report: dict[str, Any]) -> str:
    out = []
    survivors = [o for o in outcomes if o.status == SURVIVED and o.id not in equivalent]
    if survivors:
        out.append(f"survivors ({len(survivors)}):")
        for o in survivors:
            out.append(f"  {o.where}  [{o.requirement}]  {o.mutation}")
            out.append(f"      {o.id}" + (f"  ({o.skipped} checks skipped)" if o.skipped else ""))
    for title, status in (("equivalent (run, survived)", SURVIVED),
                          ("equivalent (listed, not run)", LISTED)):
        judged = [o for o in outcomes if o.status == status and o.id in equivalent]
        if judged:
            out.append(f"{title} ({len(judged)}):")
            for o in judged:
                out.append(f"  {o.where}  {o.mutation}")
                out.append(f"      because {equivalent[o.id]}")
    if report["equivalent_but_killed"]:
        out.append("judged equivalent but killed (remove from equivalent.yaml):")
        out += [f"  {i}" for i in report["equivalent_but_killed"]]
    if report["flaky_checks"]:
        out.append("checks that failed, then passed alone on a fresh server of the same mutant "
                   "(not counted as kills; worth making robust):")
        out += [f"  {check} ({n}x)" for check, n in report["flaky_checks"].items()]
    out.append("mutation score (killed / counted; counted = mutants - equivalent):")
    out += table(report)
    out.append(f"equivalent: {report['equivalent_listed']} listed of a population of "
               f"{report['population']} ({report['equivalent_share']}%, at most "
               f"{EQUIVALENT_CAP:.0f}%)")
    for rule, count in report.get("left_out", {}).items():
        out.append(f"not in the population, {rule}: {count} sites (tests/mutation/sites.py)")
    partial = report["overall"]["mutants"] < report["population"]
    out.append(f"bar: {OVERALL_BAR:.0f}% overall, {FLOW_BAR:.0f}% per flow: "
               + ("met" if verdict(report) else "NOT met")
               + (f" (for these {report['overall']['mutants']} of {report['population']} "
                  f"mutants only)" if partial else ""))
    under_goal = [f"{flow} {s['score']:.1f}%" for flow, s in report["flows"].items()
                  if s["score"] < FLOW_GOAL]
    if under_goal:
        out.append(f"flows under {FLOW_GOAL:.0f}%: {', '.join(under_goal)}")
    return "\n".join(out)
