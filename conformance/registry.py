"""The check registry: every conformance check, its path-like id, flow and citations.

A check is a plain function taking a Probe. Its id is a path `flow/area/name` so that
`--select` globs pick groups of checks; the first segment is the flow it reports under.
Requirement IDs are validated against spec/requirements.yaml at import time, so a check
can never cite a requirement that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyflows.spec.requirements import require_known

if TYPE_CHECKING:
    from keyflows.conformance.probe import Probe

FLOWS = ("common", "key-derivation", "keypair-publication", "envelope", "session-challenge",
         "lock-layering", "hashchain")
"""Flows the runner reports under, in reporting order."""

KEYPAIR_PUBLICATION = "keypair-publication"

_CHECK_ID = re.compile(r"\A[a-z0-9-]+(/[a-z0-9-]+){2}\Z")

CheckFunc = Callable[["Probe"], None]


@dataclass(frozen=True)
class Check:
    id: str
    flow: str
    requirements: tuple[str, ...]
    needs: tuple[str, ...]
    """Flow names the server must advertise in /v1/capabilities for the check to apply."""
    func: CheckFunc
    summary: str


_REGISTRY: dict[str, Check] = {}


def check(check_id: str, *, requirements: tuple[str, ...],
          needs: tuple[str, ...] = (KEYPAIR_PUBLICATION,)) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check; its docstring's first paragraph is the human summary."""
    if not _CHECK_ID.match(check_id):
        raise ValueError(f"check id {check_id!r} is not flow/area/name")
    flow = check_id.split("/", 1)[0]
    if flow not in FLOWS:
        raise ValueError(f"check id {check_id!r} names an unknown flow")
    if not requirements:
        raise ValueError(f"check {check_id} cites no requirement")
    require_known(requirements)

    def register(func: CheckFunc) -> CheckFunc:
        if check_id in _REGISTRY:
            raise ValueError(f"duplicate check id {check_id}")
        paragraph = (func.__doc__ or check_id).strip().split("\n\n", 1)[0]
        summary = " ".join(paragraph.split())
        _REGISTRY[check_id] = Check(id=check_id, flow=flow, requirements=requirements,
                                    needs=needs, func=func, summary=summary)
        return func

    return register


def all_checks() -> list[Check]:
    """Every registered check, in run order (flow order, then definition order)."""
    # Imported for their registration side effect; kept here so importing the registry
    # alone stays cheap and cycle-free.
    from keyflows.conformance.checks import (  # noqa: F401
        common,
        contract,
        envelope,
        envelope_retention,
        generic,
        hashchain,
        hashchain_directory,
        key_derivation,
        keypair_continuity,
        keypair_mlkem,
        keypair_publication,
        limits,  # after the flows' modules, which it imports first
        lock_layering,
        session_challenge,
        session_challenge_pq,
    )

    order = {flow: i for i, flow in enumerate(FLOWS)}
    indexed = list(enumerate(_REGISTRY.values()))
    indexed.sort(key=lambda pair: (order[pair[1].flow], pair[0]))
    return [c for _, c in indexed]
