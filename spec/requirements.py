"""The requirement registry, loaded from requirements.yaml (the single source of truth)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from keyflows.spec import yamlfile

REQUIREMENT_ID = re.compile(r"\A(API|KD|KP|ENV|SC|LOCK|HC)-[1-9][0-9]*\Z")


COVERAGE_CLASSES = ("runner", "vectors", "unobservable")
"""How a requirement is covered: a conformance check over HTTP (`runner`, the default),
vectors only because it binds clients (`vectors`), or nothing a client can observe over
HTTP (`unobservable`, with a one-line reason)."""


@dataclass(frozen=True)
class Requirement:
    id: str
    flow: str
    step: str
    level: str
    text: str
    coverage: str = "runner"
    reason: str = ""


@cache
def registry() -> dict[str, Requirement]:
    """Every requirement by ID, in the order of the registry file."""
    raw = yamlfile.load_named(resources.files("keyflows.spec").joinpath("requirements.yaml")
                              .read_text(encoding="utf-8"), "spec/requirements.yaml")
    out: dict[str, Requirement] = {}
    for rid, entry in raw.items():
        if not REQUIREMENT_ID.match(rid):
            raise ValueError(f"malformed requirement id {rid!r}")
        coverage = entry.get("coverage", "runner")
        if coverage not in COVERAGE_CLASSES:
            raise ValueError(f"{rid}: coverage must be one of {COVERAGE_CLASSES}")
        reason = str(entry.get("reason", ""))
        if (coverage == "unobservable") != bool(reason):
            raise ValueError(f"{rid}: a reason is given exactly when coverage is unobservable")
        out[rid] = Requirement(id=rid, flow=entry["flow"], step=str(entry["step"]),
                               level=entry["level"], text=entry["text"],
                               coverage=coverage, reason=reason)
    return out


def require_known(ids: tuple[str, ...] | list[str]) -> None:
    """Raise KeyError naming the first ID that is not in the registry."""
    known = registry()
    for rid in ids:
        if rid not in known:
            raise KeyError(f"unknown requirement id {rid}")
