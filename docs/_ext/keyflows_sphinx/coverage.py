"""`.. keyflows-coverage::`: which vectors and conformance checks cite each requirement.

The page opens with counts (overall and per flow). Every ID of spec/requirements.yaml
then gets a row (HTML id `cov-<ID>`) with the number of vector cases (from every
vectors/*.yaml) and of conformance checks (keyflows.conformance.registry.all_checks())
citing it, each list folded under its count; and its coverage class when the registry
gives one. IDs cited by neither are listed again in an "Uncovered requirements"
section. When the check registry cannot be imported yet the checks column stays empty
and the page says so.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    folded,
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

        out.append(self.per_flow(known, by_vector, by_check))

        rows: list[list[Any]] = []
        row_ids: list[str | None] = []
        for rid, req in known.items():
            anchor = html_id("cov", rid)
            register_anchor(self.env, "cov", rid, anchor, warn=self.warn)
            row_ids.append(anchor)
            vec_nodes = [make_ref("vector", f"{vf.name}#{cid}", nodes.literal("", cid),
                                  title=vf.name)
                         for vf, cid in by_vector[rid]]
            check_nodes = [
                nodes.abbreviation("", "", nodes.literal("", c.id), explanation=c.summary)
                if c.summary else nodes.literal("", c.id) for c in by_check[rid]]
            rows.append([
                make_ref("req", rid, nodes.strong("", rid), title=req.text,
                         classes=["keyflows-req-ref"]),
                req.level, f"{req.flow} · {req.step}",
                _class_cell(req, by_vector[rid], by_check[rid] if checks is not None else None),
                _folded_list(vec_nodes, "case", "cases"),
                _folded_list(check_nodes, "check", "checks")])
        out.append(table(["requirement", "level", "flow · step", "class", "vector cases",
                          "conformance checks"], rows, row_ids=row_ids,
                         classes=["keyflows-coverage-table"], widths=[13, 9, 18, 20, 20, 20]))

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


    def per_flow(self, known: dict[str, data.Requirement],
                 by_vector: dict[str, list[tuple[data.VectorFile, str]]],
                 by_check: dict[str, list[data.Check]]) -> nodes.table:
        flows: dict[str, list[str]] = {}
        for rid, req in known.items():
            flows.setdefault(req.flow, []).append(rid)
        rows: list[list[Any]] = []
        for flow, ids in flows.items():
            classes = [coverage_class(known[rid]) for rid in ids]
            rows.append([flow, str(len(ids)),
                         " / ".join(str(classes.count(c)) for c in CLASSES),
                         str(sum(1 for rid in ids if by_vector[rid])),
                         str(sum(1 for rid in ids if by_check[rid])),
                         str(sum(1 for rid in ids if not by_vector[rid] and not by_check[rid])),
                         str(sum(len(by_vector[rid]) for rid in ids)),
                         str(sum(len(by_check[rid]) for rid in ids))])
        return table(["flow", "requirements", "runner / vectors / unobservable",
                      "cited by vectors", "cited by checks", "cited by neither",
                      "citing cases", "citing checks"], rows,
                     title="Coverage by flow", classes=["keyflows-coverage-flows"])


# The coverage class of a requirement (spec/requirements.yaml, key `coverage`; none means
# runner): checked by the conformance runner, by vectors only (a client-side rule), or not
# observable over HTTP (with a one-line `reason`).
CLASSES = {
    "runner": "checked by the conformance runner",
    "vectors": "client side: checked by vectors",
    "unobservable": "not observable over HTTP",
}


def coverage_class(req: data.Requirement) -> str:
    return str(req.get("coverage") or "runner")


def _class_cell(req: data.Requirement, cases: list[Any], checks: list[Any] | None
                ) -> list[nodes.Node]:
    """The class, its reason, and a visible note when the class is not met yet (a runner
    requirement with no check, a vector requirement with no case)."""
    value = coverage_class(req)
    cell: list[nodes.Node] = [nodes.abbreviation(value, value,
                                                 explanation=CLASSES.get(value, value))]
    if req.get("reason"):
        cell.append(nodes.Text(f": {req.get('reason')}"))
    missing = ("no check yet" if value == "runner" and checks is not None and not checks
               else "no vector case yet" if value == "vectors" and not cases else "")
    if missing:
        cell += [nodes.Text(" "), nodes.inline("", f"({missing})", classes=["keyflows-gap"])]
    return cell


def _folded_list(items: list[nodes.Node], one: str, many: str) -> list[nodes.Node]:
    """`N cases`, the list folded under it; a dash when there is none."""
    if not items:
        return [nodes.inline("", "—", classes=["keyflows-none"])]
    box = folded(summary=f"{len(items)} {one if len(items) == 1 else many}")
    box += nodes.paragraph("", "", *joined(items))
    return [box]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-coverage", CoverageDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
