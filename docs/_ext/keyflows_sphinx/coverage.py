"""`.. keyflows-coverage::`: which vectors and conformance checks cite each requirement.

Every ID of spec/requirements.yaml gets a row (HTML id `cov-<ID>`) listing the vector
cases (from every vectors/*.yaml) and the conformance checks
(keyflows.conformance.registry.all_checks()) that cite it; IDs cited by neither are
listed again in an "Uncovered requirements" section. When the check registry cannot be
imported yet the checks column stays empty and the page says so.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    html_id,
    joined,
    logger,
    make_ref,
    note_generated,
    register_anchor,
    section,
    table,
)


class CoverageDirective(SphinxDirective):
    def warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location(), type="keyflows",
                       subtype="coverage")

    def run(self) -> list[nodes.Node]:
        note_generated(self.env)
        self.env.note_dependency(str(data.requirements_path(self.config)))
        try:
            known = data.requirements(self.config)
        except data.DataError as exc:
            self.warn(str(exc))
            return []

        # Vector cases citing each requirement.
        by_vector: dict[str, list[tuple[data.VectorFile, str]]] = {rid: [] for rid in known}
        files = []
        for name in data.vector_file_names(self.config):
            self.env.note_dependency(str(data.vectors_dir(self.config) / name))
            try:
                vfile = data.vector_file(self.config, name)
            except data.DataError as exc:
                self.warn(str(exc))
                continue
            files.append(vfile)
            for case in vfile.cases:
                for rid in case.get("requirements") or []:
                    if rid not in known:
                        self.warn(f"{name}: case {case['id']} cites unknown requirement {rid}")
                        continue
                    by_vector[rid].append((vfile, str(case["id"])))

        # Conformance checks citing each requirement.
        by_check: dict[str, list[data.Check]] = {rid: [] for rid in known}
        try:
            checks, checks_note = data.conformance_checks()
        except data.DataError as exc:
            self.warn(str(exc))
            checks, checks_note = None, str(exc)
        for check in checks or []:
            for rid in check.requirements:
                if rid not in known:
                    self.warn(f"conformance check {check.id} cites unknown requirement {rid}")
                    continue
                by_check[rid].append(check)

        out: list[nodes.Node] = []
        covered_v = sum(1 for rid in known if by_vector[rid])
        covered_c = sum(1 for rid in known if by_check[rid])
        uncovered = [rid for rid in known if not by_vector[rid] and not by_check[rid]]
        summary = nodes.paragraph(classes=["keyflows-coverage-summary"])
        summary += nodes.Text(
            f"{len(known)} requirements; {covered_v} cited by vectors "
            f"({sum(len(f.cases) for f in files)} cases in {len(files)} files), "
            f"{covered_c} cited by conformance checks"
            + (f" ({len(checks)} checks)" if checks is not None else "")
            + f"; {len(uncovered)} cited by neither.")
        out.append(summary)
        if checks is None:
            note = nodes.admonition(classes=["keyflows-no-checks", "warning"])
            note += nodes.title("Conformance checks not listed", "Conformance checks not listed")
            note += nodes.paragraph("", "The conformance check registry could not be "
                                    f"loaded while building this page: {checks_note}. The "
                                    "checks column is empty; requirements below may be "
                                    "covered by checks that are not shown.")
            out.append(note)

        rows: list[list[Any]] = []
        row_ids: list[str | None] = []
        for rid, req in known.items():
            anchor = html_id("cov", rid)
            register_anchor(self.env, "cov", rid, anchor, warn=self.warn)
            row_ids.append(anchor)
            vec_nodes = [make_ref("vector", f"{vf.name}#{cid}", nodes.literal("", cid),
                                  title=vf.name)
                         for vf, cid in by_vector[rid]]
            vec_cell: list[nodes.Node] = joined(vec_nodes)
            if vec_nodes:
                vec_cell = [nodes.strong("", str(len(vec_nodes))), nodes.Text(": "), *vec_cell]
            check_cell: list[nodes.Node] = joined(
                [nodes.abbreviation("", "", nodes.literal("", c.id), explanation=c.summary)
                 if c.summary else nodes.literal("", c.id) for c in by_check[rid]])
            rows.append([
                make_ref("req", rid, nodes.strong("", rid), title=req.text,
                         classes=["keyflows-req-ref"]),
                req.level, f"{req.flow} · {req.step}", vec_cell, check_cell])
        out.append(table(["requirement", "level", "flow · step", "vector cases",
                          "conformance checks"], rows, row_ids=row_ids,
                         classes=["keyflows-coverage-table"], widths=[11, 9, 12, 42, 26]))

        sec = section("Uncovered requirements", "uncovered")
        if uncovered:
            sec += nodes.paragraph("", f"{len(uncovered)} requirements are cited by no vector "
                                   "case and no conformance check:")
            items = nodes.bullet_list()
            for rid in uncovered:
                item = nodes.list_item()
                item += nodes.paragraph("", "", make_ref("req", rid, nodes.strong("", rid),
                                                         classes=["keyflows-req-ref"]),
                                        nodes.Text(f" ({known[rid].level}, {known[rid].flow})"
                                                   f": {known[rid].text}"))
                items += item
            sec += items
        else:
            sec += nodes.paragraph("", "Every requirement is cited by a vector case or a "
                                   "conformance check.")
        self.state.document.note_implicit_target(sec, sec)
        out.append(sec)
        return out


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-coverage", CoverageDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
