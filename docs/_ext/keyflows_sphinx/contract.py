"""The HTTP contract's tables, from keyflows.spec.contract.

`.. keyflows-contract:: problems` (or `failure-classes`, `headers`, `limits`, `choices`)
renders one table of the registry; every row cites its requirement (a link).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx.util import html_id, inline_text, logger, make_ref, note_generated, table

TABLES = ("problems", "failure-classes", "headers", "limits", "choices")


def _req(rid: str | None) -> nodes.Node:
    if rid is None:
        return nodes.emphasis("", "left open")
    return make_ref("req", rid, nodes.Text(rid), classes=["keyflows-req-ref"])


class ContractDirective(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        note_generated(self.env)
        which = self.arguments[0]
        if which not in TABLES:
            self.warn(f"keyflows-contract: unknown table {which!r} (one of {', '.join(TABLES)})")
            return []
        try:
            module = importlib.import_module("keyflows.spec.contract")
        except ImportError as exc:
            self.warn(f"cannot import keyflows.spec.contract: {exc}")
            return []
        return [getattr(self, "render_" + which.replace("-", "_"))(module)]

    def warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location(), type="keyflows", subtype="data")

    def render_problems(self, c: ModuleType) -> nodes.Node:
        rows = [[nodes.literal("", p.uri), str(p.status), p.title, inline_text(p.when),
                 _req(p.requirement)] for p in c.PROBLEM_TYPES]
        ids = [html_id("problem", p.slug) for p in c.PROBLEM_TYPES]
        return table(["type", "status", "title", "answered when", "requirement"], rows,
                     row_ids=ids, classes=["keyflows-contract-table"],
                     widths=[28, 7, 17, 38, 10])

    def render_failure_classes(self, c: ModuleType) -> nodes.Node:
        rows = [[make_ref("failure", f.failure_class, nodes.literal("", f.failure_class)),
                 str(f.status), nodes.literal("", c.PROBLEMS[f.slug].uri), _req(f.requirement)]
                for f in c.FAILURE_STATUSES]
        return table(["failure class", "status", "problem type", "requirement"], rows,
                     classes=["keyflows-contract-table"], widths=[20, 10, 50, 20])

    def render_headers(self, c: ModuleType) -> nodes.Node:
        rows = [[nodes.literal("", h.header), h.answers, inline_text(h.value),
                 _req(h.requirement)] for h in c.HEADER_RULES]
        return table(["header", "on", "value", "requirement"], rows,
                     classes=["keyflows-contract-table"], widths=[18, 32, 38, 12])

    def render_limits(self, c: ModuleType) -> nodes.Node:
        rows = [[r.limit, nodes.literal("", r.advertised), str(r.status),
                 nodes.literal("", c.PROBLEMS[r.slug].uri) if r.slug else "(not a refusal: "
                 "the answer holds at most this many)", _req(r.requirement)]
                for r in c.LIMIT_RULES]
        return table(["limit", "advertised as", "status", "problem type", "requirement"], rows,
                     classes=["keyflows-contract-table"], widths=[24, 26, 8, 30, 12])

    def render_choices(self, c: ModuleType) -> nodes.Node:
        rows = [[ch.topic, inline_text(ch.rule), _req(ch.requirement)] for ch in c.CHOICES]
        return table(["question", "answer", "requirement"], rows,
                     classes=["keyflows-contract-table"], widths=[20, 68, 12])


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-contract", ContractDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
