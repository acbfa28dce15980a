"""Requirements: `.. keyflows-requirement:: ID`, `.. keyflows-requirements:: FLOW`, :req:`ID`.

The single source of truth is spec/requirements.yaml. A requirement block carries the
HTML id `req-<ID>` so vectors, checks and reports can link to
`flows/<flow>.html#req-<ID>`. Unknown IDs fail the build (a warning under -W); so does a
flow whose chapter renders some of its requirements but not all of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective, SphinxRole

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    anchors_of_kind,
    html_id,
    inline_text,
    logger,
    make_ref,
    note_generated,
    register_anchor,
)


def requirement_block(directive: SphinxDirective, req: data.Requirement,
                      known: dict[str, data.Requirement]) -> nodes.container:
    anchor = html_id("req", req.id)
    level_class = "keyflows-level-" + req.level.lower().replace(" ", "-")
    block = nodes.container(ids=[anchor], classes=["keyflows-requirement", level_class])
    head = nodes.paragraph(classes=["keyflows-requirement-head"])
    head += nodes.strong(req.id, req.id, classes=["keyflows-req-id"])
    head += nodes.Text(" ")
    head += nodes.inline(req.level, req.level, classes=["keyflows-level", level_class])
    where = f"{req.flow}, step {req.step}" if req.step.isdigit() else f"{req.flow}, {req.step}"
    head += nodes.inline(where, " · " + where, classes=["keyflows-req-where"])
    head += nodes.Text(" ")
    head += make_ref("cov", req.id, "coverage", classes=["keyflows-req-coverage"],
                     title=f"vectors and conformance checks citing {req.id}")
    head += nodes.reference("", "¶", refuri="#" + anchor, classes=["headerlink"],
                            reftitle=f"Link to {req.id}")
    block += head

    def warn(message: str) -> None:
        logger.warning(f"{req.id}: {message}", location=directive.get_location(),
                       type="keyflows", subtype="requirement")

    block += nodes.paragraph("", "", *inline_text(req.text, known=known, warn=warn),
                             classes=["keyflows-requirement-text"])
    register_anchor(directive.env, "req", req.id, anchor, warn=warn)
    return block


def _load(directive: SphinxDirective) -> dict[str, data.Requirement] | None:
    path = data.requirements_path(directive.config)
    directive.env.note_dependency(str(path))
    note_generated(directive.env)
    try:
        return data.requirements(directive.config)
    except data.DataError as exc:
        logger.warning(str(exc), location=directive.get_location(), type="keyflows",
                       subtype="data")
        return None


class RequirementDirective(SphinxDirective):
    """One requirement, anchored as req-<ID>, with optional explanatory content."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        known = _load(self)
        if known is None:
            return []
        rid = self.arguments[0].strip()
        if rid not in known:
            logger.warning(f"unknown requirement {rid} (not in "
                           f"{self.config.keyflows_requirements_file})",
                           location=self.get_location(), type="keyflows", subtype="requirement")
            return []
        block = requirement_block(self, known[rid], known)
        if self.content:
            self.state.nested_parse(self.content, self.content_offset, block)
        return [block]


class RequirementsDirective(SphinxDirective):
    """All requirements of a flow, in registry order; `:step:` narrows to one step."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"step": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        known = _load(self)
        if known is None:
            return []
        flow = self.arguments[0].strip()
        selected = [r for r in known.values() if r.flow == flow
                    and ("step" not in self.options or r.step == self.options["step"])]
        if not selected:
            logger.warning(f"no requirements for flow {flow!r}"
                           + (f" step {self.options['step']!r}" if "step" in self.options
                              else ""),
                           location=self.get_location(), type="keyflows", subtype="requirement")
            return []
        return [requirement_block(self, r, known) for r in selected]


class RequirementRole(SphinxRole):
    """:req:`KD-3` links to the requirement (its chapter, else its coverage row)."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        rid = self.text.strip()
        path = data.requirements_path(self.config)
        self.env.note_dependency(str(path))
        note_generated(self.env)
        try:
            known = data.requirements(self.config)
        except data.DataError as exc:
            msg = self.inliner.reporter.error(str(exc), line=self.lineno)
            return [nodes.Text(rid)], [msg]
        if rid not in known:
            msg = self.inliner.reporter.error(
                f"unknown requirement {rid} (not in {self.config.keyflows_requirements_file})",
                line=self.lineno)
            return [nodes.literal(rid, rid)], [msg]
        req = known[rid]
        title = f"{req.level}: {req.text}"
        return [make_ref("req", rid, nodes.Text(rid), title=title,
                         classes=["keyflows-req-ref"])], []


def check_consistency(app: Sphinx, env: BuildEnvironment) -> None:
    """A flow whose chapter renders some of its requirements must render all of them."""
    try:
        known = data.requirements(app.config)
    except data.DataError:
        return  # already reported where it was used
    placed = anchors_of_kind(env, "req")
    flows: dict[str, list[str]] = {}
    for req in known.values():
        flows.setdefault(req.flow, []).append(req.id)
    for flow, ids in flows.items():
        shown = [rid for rid in ids if rid in placed]
        missing = [rid for rid in ids if rid not in placed]
        if shown and missing:
            docs = sorted({placed[rid][0] for rid in shown})
            logger.warning(f"flow {flow}: {', '.join(missing)} not rendered by any page "
                           f"(the flow's requirements are on {', '.join(docs)}); add a "
                           f"keyflows-requirement directive for each",
                           location=docs[0], type="keyflows", subtype="requirement")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-requirement", RequirementDirective)
    app.add_directive("keyflows-requirements", RequirementsDirective)
    app.add_role("req", RequirementRole())
    app.connect("env-check-consistency", check_consistency)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
