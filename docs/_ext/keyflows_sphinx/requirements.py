"""Requirements: `.. keyflows-requirement:: ID`, `.. keyflows-requirements:: FLOW`, :req:`ID`.

The single source of truth is spec/requirements.yaml. A requirement block carries the
HTML id `req-<ID>` so vectors, checks and reports can link to
`flows/<flow>.html#req-<ID>`. Unknown IDs fail the build (a warning under -W); so does a
flow whose chapter renders some of its requirements but not all of them.

Requirements are objects of the `keyflows` domain (object type `requirement`): the
site's search index lists each ID as an object pointing at its
block, and the site's search scorer (search-scorer.js) ranks the requirement whose ID is
the whole query first, so searching "ENV-14" lands on it; `:keyflows:req:`
cross-references them; the domain's index page (`keyflows-reqindex`) lists every
requirement by flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.builders import Builder
from sphinx.domains import Domain, Index, IndexEntry, ObjType
from sphinx.environment import BuildEnvironment
from sphinx.roles import XRefRole
from sphinx.util.docutils import SphinxDirective, SphinxRole
from sphinx.util.nodes import make_refnode

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    anchors_of_kind,
    html_id,
    html_only_inline,
    inline_text,
    logger,
    make_ref,
    note_generated,
    register_anchor,
)


def requirement_block(directive: SphinxDirective, req: data.Requirement,
                      known: dict[str, data.Requirement]) -> nodes.container:
    """The requirement's block, anchored `req-<ID>`, noted as a domain object."""
    anchor = html_id("req", req.id)
    level_class = "keyflows-level-" + req.level.lower().replace(" ", "-")
    block = nodes.container(ids=[anchor], classes=["keyflows-requirement", level_class])
    head = nodes.paragraph(classes=["keyflows-requirement-head"])
    head += nodes.strong(req.id, req.id, classes=["keyflows-req-id"])
    head += nodes.Text(" ")
    head += nodes.inline(req.level, req.level, classes=["keyflows-level", level_class])
    where = f"{req.flow}, step {req.step}" if req.step.isdigit() else f"{req.flow}, {req.step}"
    head += nodes.inline(where, " · " + where, classes=["keyflows-req-where"])
    head += html_only_inline(
        "", "", nodes.Text(" "),
        make_ref("cov", req.id, "coverage", classes=["keyflows-req-coverage"],
                 title=f"vectors and conformance checks citing {req.id}"),
        nodes.reference("", "¶", refuri="#" + anchor, classes=["headerlink"],
                        reftitle=f"Link to {req.id}"))
    block += head

    def warn(message: str) -> None:
        logger.warning(f"{req.id}: {message}", location=directive.get_location(),
                       type="keyflows", subtype="requirement")

    block += nodes.paragraph("", "", *inline_text(req.text, known=known, warn=warn),
                             classes=["keyflows-requirement-text"])
    register_anchor(directive.env, "req", req.id, anchor, warn=warn)
    domain = directive.env.get_domain(RequirementDomain.name)
    assert isinstance(domain, RequirementDomain)
    domain.note_requirement(req, directive.env.docname, anchor)
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


# --- the keyflows domain -----------------------------------------------------------------------

class RequirementIndex(Index):
    """Every rendered requirement, grouped by flow, linking to its block."""

    name = "reqindex"
    localname = "Requirement index"
    shortname = "requirements"

    def generate(self, docnames: Iterable[str] | None = None
                 ) -> tuple[list[tuple[str, list[IndexEntry]]], bool]:
        assert isinstance(self.domain, RequirementDomain)
        groups: dict[str, list[IndexEntry]] = {}
        for rid, (docname, anchor, flow, level, text) in self.domain.requirements.items():
            if docnames is not None and docname not in docnames:
                continue
            summary = text if len(text) <= 110 else text[:107] + "..."
            groups.setdefault(flow, []).append(
                IndexEntry(rid, 0, docname, anchor, level, "", summary))
        order = {flow: i for i, flow in enumerate(groups)}  # registry order of flows
        content = [(flow, entries) for flow, entries in
                   sorted(groups.items(), key=lambda item: order[item[0]])]
        return content, True


class RequirementDomain(Domain):
    """Requirements as objects: searchable, cross-referenceable, indexed."""

    name = "keyflows"
    label = "keyflows"
    object_types: ClassVar[dict[str, ObjType]] = {
        "requirement": ObjType("requirement", "req")}
    roles: ClassVar[dict[str, Any]] = {"req": XRefRole()}
    indices: ClassVar[list[type[Index]]] = [RequirementIndex]
    initial_data: ClassVar[dict[str, Any]] = {"requirements": {}}

    @property
    def requirements(self) -> dict[str, tuple[str, str, str, str, str]]:
        """ID -> (docname, anchor, flow, level, text)."""
        return self.data.setdefault("requirements", {})  # type: ignore[no-any-return]

    def note_requirement(self, req: data.Requirement, docname: str, anchor: str) -> None:
        self.requirements[req.id] = (docname, anchor, req.flow, req.level, req.text)

    def clear_doc(self, docname: str) -> None:
        for rid in [r for r, v in self.requirements.items() if v[0] == docname]:
            del self.requirements[rid]

    def merge_domaindata(self, docnames: set[str], otherdata: dict[str, Any]) -> None:
        for rid, value in otherdata.get("requirements", {}).items():
            if value[0] in docnames:
                self.requirements[rid] = value

    def resolve_xref(self, env: BuildEnvironment, fromdocname: str, builder: Builder,
                     typ: str, target: str, node: addnodes.pending_xref,
                     contnode: nodes.Element) -> nodes.reference | None:
        found = self.requirements.get(target.strip())
        if found is None:
            return None
        docname, anchor, _flow, level, text = found
        return make_refnode(builder, fromdocname, docname, anchor, contnode,
                            f"{level}: {text}")

    def resolve_any_xref(self, env: BuildEnvironment, fromdocname: str, builder: Builder,
                         target: str, node: addnodes.pending_xref, contnode: nodes.Element
                         ) -> list[tuple[str, nodes.reference]]:
        ref = self.resolve_xref(env, fromdocname, builder, "req", target, node, contnode)
        return [] if ref is None else [("keyflows:req", ref)]

    def get_objects(self) -> Iterator[tuple[str, str, str, str, str, int]]:
        for rid, (docname, anchor, _flow, _level, _text) in self.requirements.items():
            yield rid, rid, "requirement", docname, anchor, 1


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_domain(RequirementDomain)
    app.add_directive("keyflows-requirement", RequirementDirective)
    app.add_directive("keyflows-requirements", RequirementsDirective)
    app.add_role("req", RequirementRole())
    app.connect("env-check-consistency", check_consistency)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
