"""`.. mermaid::` diagrams, rendered to SVG at build time and inlined in the page.

A reader needs no JavaScript and no network: each page carries its diagrams as inline
SVG, so it works from file:// and with scripts off. The diagrams of every page are
rendered after reading, in one mermaid-cli run (headless Debian chromium through
puppeteer, see mermaid_cli.py), and cached by the digest of (mermaid-cli version,
mermaid configuration, diagram source): a rebuild renders only what changed.

HTML: a ``<figure class="keyflows-diagram">`` with the SVG (its ids made unique on the
page) and the diagram source folded beneath it. Text and other builders: the source as
a literal block, which is how the plain-text rendering of the specification shows it.

Options (those of sphinxcontrib-mermaid that matter here): ``:caption:``, ``:alt:``;
``:align:`` and ``:zoom:`` are accepted and ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx import mermaid_cli
from keyflows_sphinx.util import logger

RENDER_TIMEOUT = 600  # seconds for one mermaid-cli run over every changed diagram


class mermaid_diagram(nodes.General, nodes.Element):
    """A diagram: attributes code, caption, alt."""


class MermaidDirective(SphinxDirective):
    has_content = True
    optional_arguments = 1  # a .mmd file, relative to the page
    final_argument_whitespace = False
    option_spec: ClassVar[dict[str, Any]] = {
        "caption": directives.unchanged,
        "alt": directives.unchanged,
        "align": directives.unchanged,
        "zoom": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        if self.arguments:
            if self.content:
                return [self.state.document.reporter.warning(
                    "mermaid: give a file or content, not both", line=self.lineno)]
            _rel, path = self.env.relfn2path(self.arguments[0])
            self.env.note_dependency(path)
            try:
                code = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                return [self.state.document.reporter.warning(
                    f"mermaid: cannot read {self.arguments[0]}: {exc}", line=self.lineno)]
        else:
            code = "\n".join(self.content)
        code = code.strip("\n") + "\n"
        if not code.strip():
            return [self.state.document.reporter.warning("mermaid: empty diagram",
                                                         line=self.lineno)]
        node = mermaid_diagram(code=code, caption=self.options.get("caption", ""),
                               alt=self.options.get("alt", ""))
        self.set_source_info(node)
        _diagrams(self.env).setdefault(self.env.docname, []).append(
            (code, self.get_location()))
        return [node]


# --- the diagrams of the build --------------------------------------------------------------

def _diagrams(env: BuildEnvironment) -> dict[str, list[tuple[str, str]]]:
    if not hasattr(env, "keyflows_diagrams"):
        env.keyflows_diagrams = {}  # type: ignore[attr-defined]
    return env.keyflows_diagrams  # type: ignore[attr-defined,no-any-return]


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _diagrams(env).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: Iterable[str],
           other: BuildEnvironment) -> None:
    for docname in docnames:
        if docname in _diagrams(other):
            _diagrams(env)[docname] = _diagrams(other)[docname]


def mermaid_config(app: Sphinx) -> dict[str, Any]:
    return dict(app.config.keyflows_mermaid_config)


def digest(cli_version: str, config: dict[str, Any], code: str) -> str:
    material = json.dumps({"cli": cli_version, "config": config, "code": code},
                          sort_keys=True).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:24]


def svg_cache() -> Path:
    return mermaid_cli.cache_root() / "mermaid-svg"


def _render_all(app: Sphinx, env: BuildEnvironment) -> None:
    """After reading: render every diagram not in the SVG cache, in one run."""
    env.keyflows_rendered = {}  # type: ignore[attr-defined]
    if app.builder.format != "html":
        return
    wanted = [(code, where) for entries in _diagrams(env).values() for code, where in entries]
    if not wanted:
        return
    try:
        mmdc = mermaid_cli.ensure_installed(say=logger.info)
        cli_version = mermaid_cli.version()
    except mermaid_cli.MermaidCliError as exc:
        logger.warning(f"diagrams are not rendered: {exc}", type="keyflows",
                       subtype="mermaid")
        return
    config = mermaid_config(app)
    cache = svg_cache()
    cache.mkdir(parents=True, exist_ok=True)
    missing: dict[str, tuple[str, str]] = {}
    for code, where in wanted:
        key = digest(cli_version, config, code)
        env.keyflows_rendered[code] = key  # type: ignore[attr-defined]
        if not (cache / f"{key}.svg").is_file():
            missing.setdefault(key, (code, where))
    if not missing:
        return
    logger.info(f"keyflows docs: rendering {len(missing)} diagram(s) with mermaid-cli "
                f"{cli_version}")
    try:
        rendered = render(mmdc, config, [code for code, _ in missing.values()])
    except mermaid_cli.MermaidCliError:
        rendered = None
    if rendered is not None:
        for key, svg in zip(missing, rendered, strict=True):
            _store(cache / f"{key}.svg", svg)
        return
    # One diagram broke the batch: render them one by one to say which.
    for key, (code, where) in missing.items():
        try:
            _store(cache / f"{key}.svg", render(mmdc, config, [code])[0])
        except mermaid_cli.MermaidCliError as exc:
            logger.warning(f"mermaid diagram does not render: {exc}", location=where,
                           type="keyflows", subtype="mermaid")


def _store(path: Path, svg: str) -> None:
    staging = path.with_suffix(f".{id(svg)}.tmp")
    staging.write_text(svg, encoding="utf-8")
    staging.replace(path)


def render(mmdc: Path, config: dict[str, Any], codes: list[str]) -> list[str]:
    """SVG text of each diagram, in order, from one mermaid-cli run (a Markdown file
    with one fenced block per diagram)."""
    with tempfile.TemporaryDirectory(prefix="keyflows-mermaid-") as tmp:
        folder = Path(tmp)
        (folder / "puppeteer.json").write_text(json.dumps(mermaid_cli.puppeteer_config()),
                                               encoding="utf-8")
        (folder / "mermaid.json").write_text(json.dumps(config), encoding="utf-8")
        source = "".join(f"```mermaid\n{code}```\n\n" for code in codes)
        (folder / "in.md").write_text(source, encoding="utf-8")
        try:
            proc = subprocess.run(
                [str(mmdc), "-q", "-i", "in.md", "-o", "out.md", "-p", "puppeteer.json",
                 "-c", "mermaid.json", "-b", "white"],
                cwd=folder, capture_output=True, text=True, timeout=RENDER_TIMEOUT,
                check=False)
        except subprocess.TimeoutExpired as exc:
            raise mermaid_cli.MermaidCliError(
                f"mermaid-cli took more than {RENDER_TIMEOUT} s") from exc
        outputs = [folder / f"out-{i}.svg" for i in range(1, len(codes) + 1)]
        if proc.returncode != 0 or not all(p.is_file() for p in outputs):
            lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines()
                     if line.strip() and not line.startswith("    at ")]
            detail = next((line for line in lines if "rror" in line), None) or (
                lines[-1] if lines else "no output")
            raise mermaid_cli.MermaidCliError(
                f"mermaid-cli failed (exit {proc.returncode}): {detail}")
        return [p.read_text(encoding="utf-8") for p in outputs]


# --- inline SVG ------------------------------------------------------------------------------

_ID_ATTR = re.compile(r'\sid="([^"]+)"')
_REFERENCE = re.compile(r'url\(#([^)]+)\)|href="#([^"]+)"')


def inline_svg(svg: str, prefix: str, title: str = "") -> str:
    """The SVG made fit to sit in an HTML page beside others: mermaid names its root
    `my-svg` in every diagram and repeats ids such as an actor's name; here every id
    gets the diagram's prefix, and ids nothing refers to are dropped."""
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg).strip()
    svg = svg.replace("my-svg", prefix)
    referenced = {a or b for a, b in _REFERENCE.findall(svg)}

    def rename(match: re.Match[str]) -> str:
        value = match.group(1)
        if value.startswith(prefix):
            return match.group(0)
        if value in referenced:
            return f' id="{prefix}-{value}"'
        return ""

    svg = _ID_ATTR.sub(rename, svg)
    for value in referenced:
        if not value.startswith(prefix):
            svg = svg.replace(f"url(#{value})", f"url(#{prefix}-{value})")
            svg = svg.replace(f'href="#{value}"', f'href="#{prefix}-{value}"')
    if title:
        escaped = (title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        svg = re.sub(r"(<svg\b[^>]*>)", lambda m: f"{m.group(1)}<title>{escaped}</title>",
                     svg, count=1)
    return svg


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def visit_html(self: Any, node: mermaid_diagram) -> None:
    env = self.builder.env
    key = getattr(env, "keyflows_rendered", {}).get(node["code"])
    path = svg_cache() / f"{key}.svg" if key else None
    caption = node["caption"]
    self.body.append('<figure class="keyflows-diagram">\n')
    if path is not None and path.is_file():
        title = node["alt"] or caption
        self.body.append(inline_svg(path.read_text(encoding="utf-8"), f"kfd-{key[:12]}",
                                    title))
    else:  # a warning was given while rendering; show the source rather than nothing
        self.body.append('<pre class="keyflows-diagram-missing">'
                         f"{_html_escape(node['code'])}</pre>")
    if caption:
        self.body.append(f"<figcaption>{_html_escape(caption)}</figcaption>")
    self.body.append('<details class="keyflows-diagram-source"><summary>Diagram source '
                     '(mermaid)</summary><pre>' + _html_escape(node["code"]) +
                     "</pre></details>\n</figure>\n")
    raise nodes.SkipNode


def visit_text(self: Any, node: mermaid_diagram) -> None:
    """Plain text: the diagram's source, indented, under a one-line label."""
    self.new_state(0)
    label = f"Diagram: {node['caption']}" if node["caption"] else "Diagram (mermaid source):"
    self.add_text(label)
    self.end_state(wrap=False)
    self.new_state(4)
    self.add_text(node["code"].rstrip("\n"))
    self.end_state(wrap=False)
    raise nodes.SkipNode


def visit_other(self: Any, node: mermaid_diagram) -> None:
    raise nodes.SkipNode  # no diagrams in LaTeX, man or texinfo output


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("keyflows_mermaid_config", {}, "env", dict)
    app.add_node(mermaid_diagram, html=(visit_html, None), text=(visit_text, None),
                 latex=(visit_other, None), man=(visit_other, None),
                 texinfo=(visit_other, None))
    app.add_directive("mermaid", MermaidDirective)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-updated", _render_all)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
