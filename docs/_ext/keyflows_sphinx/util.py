"""Shared machinery: cross-page anchors, a pending-reference node, tables, inline text.

Generated content links across pages (a vector row to its requirement, a coverage row
to a vector case, a chapter to an API operation). Directives register every anchor they
create in the build environment as (kind, key) -> (docname, html id); a `kf_ref` node
left in the doctree is replaced by a real link once all pages have been read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

from keyflows_sphinx.data import REQUIREMENT_ID

logger = logging.getLogger("keyflows")

Warn = Callable[[str], None]
Cell: TypeAlias = "str | nodes.Node | Sequence[nodes.Node] | None"


class kf_ref(nodes.Inline, nodes.TextElement):
    """A link to (kind, key), resolved after reading: see resolve_refs()."""


class folded(nodes.General, nodes.Element):
    """Content a reader unfolds: HTML <details> with the `summary` attribute as its
    <summary>; other builders show the summary, then the content."""


def visit_folded_html(self: Any, node: folded) -> None:
    summary = (str(node["summary"]).replace("&", "&amp;").replace("<", "&lt;")
               .replace(">", "&gt;"))
    self.body.append(f'<details class="keyflows-folded"><summary>{summary}</summary>')


def depart_folded_html(self: Any, node: folded) -> None:
    self.body.append("</details>")


def visit_folded_text(self: Any, node: folded) -> None:
    self.add_text(str(node["summary"]) + ": ")


def depart_folded_other(self: Any, node: folded) -> None:
    pass


def visit_folded_other(self: Any, node: folded) -> None:
    pass


class html_only(nodes.General, nodes.Element):
    """Content for the HTML site only (generated tables whose numbers change with every
    regeneration of the vectors). In the plain-text rendering of the specification the
    `text` attribute stands in for it: a stable pointer, or nothing."""


class html_only_inline(nodes.Inline, nodes.TextElement):
    """Inline content for the HTML site only (the coverage link, the pilcrow)."""


def visit_passthrough(self: Any, node: nodes.Element) -> None:
    pass


def depart_passthrough(self: Any, node: nodes.Element) -> None:
    pass


def visit_html_only_text(self: Any, node: nodes.Element) -> None:
    text = str(node.get("text", ""))
    if text:
        self.new_state(0)
        self.add_text(text)
        self.end_state()
    raise nodes.SkipNode


def skip_node(self: Any, node: nodes.Element) -> None:
    raise nodes.SkipNode


def html_id(*parts: str) -> str:
    """An HTML id from parts, keeping case (req-KD-3), replacing unsafe characters."""
    return re.sub(r"[^A-Za-z0-9._:-]+", "-", "-".join(parts)).strip("-")


# --- the anchor registry in the build environment ---------------------------------------------

def _anchors(env: BuildEnvironment) -> dict[tuple[str, str], tuple[str, str]]:
    if not hasattr(env, "keyflows_anchors"):
        env.keyflows_anchors = {}  # type: ignore[attr-defined]
    return env.keyflows_anchors  # type: ignore[attr-defined,no-any-return]


def _docs(env: BuildEnvironment) -> set[str]:
    if not hasattr(env, "keyflows_docs"):
        env.keyflows_docs = set()  # type: ignore[attr-defined]
    return env.keyflows_docs  # type: ignore[attr-defined,no-any-return]


def note_generated(env: BuildEnvironment) -> None:
    """This page renders generated content: re-read it on every build."""
    _docs(env).add(env.docname)


def register_anchor(env: BuildEnvironment, kind: str, key: str, anchor: str,
                    warn: Warn | None = None) -> None:
    anchors = _anchors(env)
    existing = anchors.get((kind, key))
    if existing is not None and existing[0] != env.docname and warn is not None:
        warn(f"{kind} {key} is already rendered in {existing[0]}; render it once")
    elif existing is not None and existing[0] == env.docname and warn is not None:
        warn(f"{kind} {key} is rendered twice on this page")
    if existing is None or existing[0] != env.docname:
        anchors[(kind, key)] = (env.docname, anchor)
    note_generated(env)


def anchor_of(env: BuildEnvironment, kind: str, key: str) -> tuple[str, str] | None:
    return _anchors(env).get((kind, key))


def anchors_of_kind(env: BuildEnvironment, kind: str) -> dict[str, tuple[str, str]]:
    return {k: v for (kd, k), v in _anchors(env).items() if kd == kind}


def purge_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    anchors = _anchors(env)
    for key in [k for k, v in anchors.items() if v[0] == docname]:
        del anchors[key]
    _docs(env).discard(docname)


def merge_info(app: Sphinx, env: BuildEnvironment, docnames: Iterable[str],
               other: BuildEnvironment) -> None:
    names = set(docnames)
    for key, value in _anchors(other).items():
        if value[0] in names:
            _anchors(env)[key] = value
    _docs(env).update(_docs(other) & names)


def outdated(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str],
             removed: set[str]) -> list[str]:
    """Pages with generated content depend on files and code Sphinx does not track, so
    they are read again on every build, unless the build reuses the pages another
    builder read a moment ago (keyflows_reread_generated = 0: docs/build.py --text)."""
    if not app.config.keyflows_reread_generated:
        return []
    return sorted(d for d in _docs(env) if d in env.found_docs and d not in removed)


# --- resolving kf_ref ---------------------------------------------------------------------------

FALLBACKS = {"req": ("req", "cov")}


def make_ref(kind: str, key: str, content: Cell, *, title: str = "",
             classes: Sequence[str] = ()) -> kf_ref:
    node = kf_ref("", "", kind=kind, key=key, reftitle=title, classes=list(classes))
    for child in _inline(content):
        node += child
    return node


def resolve_refs(app: Sphinx, doctree: nodes.document, fromdocname: str) -> None:
    env = app.env
    for node in list(doctree.findall(kf_ref)):
        target = None
        for kind in FALLBACKS.get(node["kind"], (node["kind"],)):
            target = anchor_of(env, kind, node["key"])
            if target is not None:
                break
        children = [c.deepcopy() for c in node.children]
        if target is None:
            replacement: nodes.Node = nodes.inline("", "", *children, classes=node["classes"])
        else:
            docname, anchor = target
            if docname == fromdocname:
                uri = "#" + anchor
            else:
                try:
                    uri = app.builder.get_relative_uri(fromdocname, docname) + "#" + anchor
                except Exception:
                    uri = ""
            ref = nodes.reference("", "", *children, internal=True, refuri=uri,
                                  classes=node["classes"])
            if node.get("reftitle"):
                ref["reftitle"] = node["reftitle"]
            replacement = ref
        node.replace_self(replacement)


def visit_unresolved(self: Any, node: nodes.Node) -> None:
    """kf_ref is always resolved before writing; if one slips through, write its text."""


def depart_unresolved(self: Any, node: nodes.Node) -> None:
    pass


# --- inline text ------------------------------------------------------------------------------

_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<strong>[^*]+)\*\*"
    r"|\[(?P<ltext>[^\]]+)\]\((?P<lurl>[^)\s]+)\)"
    r"|(?P<req>" + REQUIREMENT_ID.pattern + r")"
)


def inline_text(text: str, *, known: Iterable[str] = (), warn: Warn | None = None,
                link_requirements: bool = True) -> list[nodes.Node]:
    """Plain text with a little markdown (`code`, **strong**, [text](url)) into nodes.

    Requirement IDs become links to where the requirement is rendered. Nothing here is
    parsed as reStructuredText, so no source text can produce markup warnings.
    """
    known_ids = set(known)
    out: list[nodes.Node] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos:m.start()]))
        pos = m.end()
        if m.group("code") is not None:
            out.append(nodes.literal(m.group("code"), m.group("code")))
        elif m.group("strong") is not None:
            out.append(nodes.strong(m.group("strong"), m.group("strong")))
        elif m.group("ltext") is not None:
            out.append(nodes.reference(m.group("ltext"), m.group("ltext"),
                                       refuri=m.group("lurl")))
        else:
            rid = m.group("req")
            if link_requirements and rid in known_ids:
                out.append(make_ref("req", rid, nodes.Text(rid), classes=["keyflows-req-ref"]))
            else:
                if link_requirements and warn is not None:
                    warn(f"text mentions unknown requirement {rid}")
                out.append(nodes.Text(rid))
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def blocks(text: str, **kwargs: Any) -> list[nodes.Node]:
    """Paragraphs and '-' bullet lists of a description."""
    out: list[nodes.Node] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if all(line[:2] in ("- ", "* ") for line in lines):
            bullets = nodes.bullet_list()
            for line in lines:
                item = nodes.list_item()
                item += nodes.paragraph("", "", *inline_text(line[2:], **kwargs))
                bullets += item
            out.append(bullets)
        else:
            out.append(nodes.paragraph("", "", *inline_text(" ".join(lines), **kwargs)))
    return out


def _inline(content: Cell) -> list[nodes.Node]:
    if content is None:
        return []
    if isinstance(content, str):
        return [nodes.Text(content)]
    if isinstance(content, nodes.Node):
        return [content]
    return list(content)


def joined(items: Sequence[nodes.Node], sep: str = ", ") -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for i, item in enumerate(items):
        if i:
            out.append(nodes.Text(sep))
        out.append(item)
    return out


# --- tables -----------------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, title: str | None = None,
          classes: Sequence[str] = (), row_ids: Sequence[str | None] | None = None,
          widths: Sequence[int] | None = None) -> nodes.table:
    """A docutils table; each cell is text, an inline node, a list of nodes or None."""
    tbl = nodes.table(classes=["keyflows-table", *classes])
    if title:
        tbl += nodes.title(title, title)
    group = nodes.tgroup(cols=len(headers))
    tbl += group
    # Declared widths, or widths from the content: HTML lays out auto tables itself, but
    # the plain-text writer sizes its columns by these numbers.
    for width in widths or _content_widths(headers, rows):
        group += nodes.colspec(colwidth=width)
    tbl["classes"].append("colwidths-auto" if widths is None else "colwidths-given")
    head = nodes.thead()
    group += head
    head += _row(headers)
    body = nodes.tbody()
    group += body
    for i, cells in enumerate(rows):
        row = _row(cells)
        if row_ids is not None and row_ids[i]:
            row["ids"].append(row_ids[i])
        body += row
    return tbl


def _content_widths(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> list[int]:
    widths = [max(len(h), 4) for h in headers]
    for cells in rows:
        for i, cell in enumerate(cells):
            text = "".join(n.astext() for n in _inline(cell))
            widths[i] = max(widths[i], min(len(text), 48))
    return widths


def _row(cells: Sequence[Cell]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        content = _inline(cell)
        if content and all(isinstance(c, nodes.Body) or isinstance(c, nodes.Structural)
                           for c in content):
            entry.extend(content)
        elif content:
            entry += nodes.paragraph("", "", *content)
        row += entry
    return row


def section(title: str, anchor: str, *, classes: Sequence[str] = ()) -> nodes.section:
    sec = nodes.section(ids=[anchor], names=[nodes.fully_normalize_name(title)],
                        classes=list(classes))
    sec += nodes.title(title, title)
    return sec


# --- ids never break across lines ---------------------------------------------------------------

def keep_ids_whole(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Wrap every requirement ID in running text (tables, literals, links included) in a
    `keyflows-nobreak` span, so a narrow column never splits `ENV-14` at its hyphen."""
    for text in list(doctree.findall(nodes.Text)):
        parent = text.parent
        if parent is None or isinstance(parent, nodes.FixedTextElement | nodes.raw):
            continue
        if "keyflows-nobreak" in parent.get("classes", ()):
            continue
        value = str(text)
        if not REQUIREMENT_ID.search(value):
            continue
        pieces: list[nodes.Node] = []
        pos = 0
        for m in REQUIREMENT_ID.finditer(value):
            if m.start() > pos:
                pieces.append(nodes.Text(value[pos:m.start()]))
            pieces.append(nodes.inline(m.group(0), m.group(0), classes=["keyflows-nobreak"]))
            pos = m.end()
        if pos < len(value):
            pieces.append(nodes.Text(value[pos:]))
        parent.replace(text, pieces)
