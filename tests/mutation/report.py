"""The mutation score, overall and per flow, and the survivors."""

from __future__ import annotations

from collections import Counter
from typing import Any

from keyflows.conformance.registry import FLOWS

from .harness import KILLED, SURVIVED, TIMEOUT, Outcome

OVERALL_BAR = 90.0
FLOW_BAR = 85.0
EQUIVALENT_CAP = 15.0


def _score(outcomes: list[Outcome], equivalent: dict[str, str]) -> dict[str, Any]:
    killed = sum(o.status in (KILLED, TIMEOUT) for o in outcomes)
    judged = sum(o.status == SURVIVED and o.id in equivalent for o in outcomes)
    counted = len(outcomes) - judged
    return {"mutants": len(outcomes), "killed": killed, "equivalent": judged,
            "survived": counted - killed,
            "score": round(100.0 * killed / counted, 1) if counted else 100.0}


def summary(outcomes: list[Outcome], equivalent: dict[str, str], *,
            population: int) -> dict[str, Any]:
    flows = {flow: _score([o for o in outcomes if o.flow == flow], equivalent)
             for flow in FLOWS if any(o.flow == flow for o in outcomes)}
    return {
        "overall": _score(outcomes, equivalent),
        "flows": flows,
        "population": population,
        "equivalent_listed": len(equivalent),
        "equivalent_share": round(100.0 * len(equivalent) / population, 1) if population else 0,
        "equivalent_but_killed": sorted(o.id for o in outcomes
                                        if o.id in equivalent and o.status != SURVIVED),
        "flaky_checks": dict(Counter(c for o in outcomes for c in o.flaky).most_common()),
    }


def verdict(report: dict[str, Any]) -> bool:
    return (report["overall"]["score"] >= OVERALL_BAR
            and all(f["score"] >= FLOW_BAR for f in report["flows"].values())
            and report["equivalent_share"] <= EQUIVALENT_CAP)


def _line(name: str, s: dict[str, Any]) -> str:
    return (f"  {name:<20} {s['score']:5.1f}%  killed {s['killed']:>4} of "
            f"{s['mutants'] - s['equivalent']:>4}  (survived {s['survived']}, "
            f"equivalent {s['equivalent']})")


def render(outcomes: list[Outcome], equivalent: dict[str, str], report: dict[str, Any]) -> str:
    out = []
    survivors = [o for o in outcomes if o.status == SURVIVED and o.id not in equivalent]
    if survivors:
        out.append(f"survivors ({len(survivors)}):")
        for o in survivors:
            out.append(f"  {o.where}  [{o.requirement}]  {o.mutation}")
            out.append(f"      {o.id}" + (f"  ({o.skipped} checks skipped)" if o.skipped else ""))
    judged = [o for o in outcomes if o.status == SURVIVED and o.id in equivalent]
    if judged:
        out.append(f"equivalent ({len(judged)}):")
        for o in judged:
            out.append(f"  {o.where}  {o.mutation}")
            out.append(f"      because {equivalent[o.id]}")
    if report["equivalent_but_killed"]:
        out.append("judged equivalent but killed (remove from equivalent.yaml):")
        out += [f"  {i}" for i in report["equivalent_but_killed"]]
    if report["flaky_checks"]:
        out.append("checks that failed once and then passed alone on the same server "
                   "(not counted as kills; worth making robust):")
        out += [f"  {check} ({n}x)" for check, n in report["flaky_checks"].items()]
    out.append("mutation score (killed / non-equivalent mutants):")
    out.append(_line("overall", report["overall"]))
    for flow, s in report["flows"].items():
        out.append(_line(flow, s))
    out.append(f"equivalent: {report['equivalent_listed']} listed of a population of "
               f"{report['population']} ({report['equivalent_share']}%, at most "
               f"{EQUIVALENT_CAP:.0f}%)")
    partial = report["overall"]["mutants"] < report["population"]
    out.append(f"bar: {OVERALL_BAR:.0f}% overall, {FLOW_BAR:.0f}% per flow: "
               + ("met" if verdict(report) else "NOT met")
               + (f" (for these {report['overall']['mutants']} of {report['population']} "
                  f"mutants only)" if partial else ""))
    return "\n".join(out)
