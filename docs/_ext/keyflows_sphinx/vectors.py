"""Vector tables, the list of vector files, and the failure-class table.

`.. keyflows-vectors:: FLOW` renders one table per vector file of the flow
(`vectors/<flow>.yaml` and compat files `vectors/<flow>.<profile>.yaml`), captioned with
its profile and folded under its counts when long, followed by the file's flag glossary.
`.. keyflows-vector-files::` lists every vector file with links to its YAML, its JSON twin
and its schema, and the schema bundle; the build copies those files into the site
(`downloads/vectors/`), so the links work offline and from file://.
`.. keyflows-failure-classes::` renders keyflows.spec.errors.FAILURE_CLASSES.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    folded,
    html_id,
    html_only,
    inline_text,
    joined,
    logger,
    make_ref,
    note_generated,
    register_anchor,
    table,
)

DOWNLOADS = "downloads/vectors"
BUNDLE = "schemas/bundle.json"
FOLD_ABOVE = 12  # cases: longer tables are folded under their counts


def case_anchor(vfile: data.VectorFile, case_id: str) -> str:
    return html_id("vector", vfile.name.removesuffix(".yaml"), case_id)


def download(docname: str, relative: str, text: str) -> nodes.reference:
    """A link from page `docname` to a file the build copies under downloads/vectors/."""
    prefix = "../" * docname.count("/")
    return nodes.reference(text, text, refuri=f"{prefix}{DOWNLOADS}/{relative}",
                           classes=["keyflows-download"])


def file_links(docname: str, vfile: data.VectorFile, folder: Path) -> list[nodes.Node]:
    stem = vfile.name.removesuffix(".yaml")
    links: list[nodes.Node] = [download(docname, vfile.name, "YAML")]
    if (folder / f"{stem}.json").is_file():
        links.append(download(docname, f"{stem}.json", "JSON"))
    if (folder / "schemas" / f"{stem}.schema.json").is_file():
        links.append(download(docname, f"schemas/{stem}.schema.json", "schema"))
    return joined(links, " · ")


def copy_downloads(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: every vector file, JSON twin and schema into the site."""
    if exception is not None or app.builder.format != "html":
        return
    folder = data.vectors_dir(app.config)
    target = Path(app.outdir) / DOWNLOADS
    for pattern in ("*.yaml", "*.json", "schemas/*.json"):
        for path in sorted(folder.glob(pattern)):
            destination = target / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


class VectorsDirective(SphinxDirective):
    required_arguments = 1

    def warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location(), type="keyflows",
                       subtype="vectors")

    def run(self) -> list[nodes.Node]:
        flow = self.arguments[0].strip()
        note_generated(self.env)
        folder = data.vectors_dir(self.config)
        names = data.vector_file_names(self.config, flow)
        if not names:
            note = nodes.admonition(classes=["keyflows-no-vectors"])
            note += nodes.title("No vectors yet", "No vectors yet")
            note += nodes.paragraph("", "", nodes.Text(
                f"There are no vector files for {flow} yet (expected "), nodes.literal(
                    "", f"{self.config.keyflows_vectors_dir}/{flow}.yaml"), nodes.Text(")."))
            return [note]
        try:
            known = data.requirements(self.config)
        except data.DataError as exc:
            self.warn(str(exc))
            known = {}
        try:
            classes = data.failure_classes()
        except data.DataError as exc:
            self.warn(str(exc))
            classes = {}
        out: list[nodes.Node] = []
        for name in names:
            self.env.note_dependency(str(folder / name))
            try:
                vfile = data.vector_file(self.config, name)
            except data.DataError as exc:
                self.warn(str(exc))
                continue
            out.append(html_only("", *self.render(vfile, known, classes),
                                 text=self.pointer(vfile)))
        return out

    def pointer(self, vfile: data.VectorFile) -> str:
        """What the plain-text rendering says instead of the table: where the cases are
        (no counts, so the text changes with the prose, not with every regeneration)."""
        stem = vfile.name.removesuffix(".yaml")
        folder = self.config.keyflows_vectors_dir
        return (f"Test vectors, profile {vfile.profile}: {folder}/{vfile.name} (the same "
                f"data as JSON: {folder}/{stem}.json), validated by "
                f"{folder}/schemas/{stem}.schema.json. The HTML site shows them as tables.")

    def render(self, vfile: data.VectorFile, known: dict[str, data.Requirement],
               classes: dict[str, str]) -> list[nodes.Node]:
        header = vfile.header
        notes = header.get("notes") or {}
        if not isinstance(notes, dict):
            self.warn(f"{vfile.name}: notes must be a mapping flag -> {{description, effect}}")
            notes = {}
        anchor = html_id("vectors", vfile.name.removesuffix(".yaml"))
        register_anchor(self.env, "vectorfile", vfile.name, anchor, warn=self.warn)

        valid = sum(1 for c in vfile.cases if c.get("result") == "valid")
        invalid = sum(1 for c in vfile.cases if c.get("result") == "invalid")
        declared = header.get("number_of_cases")
        if declared is not None and declared != len(vfile.cases):
            self.warn(f"{vfile.name}: number_of_cases is {declared} but the file has "
                      f"{len(vfile.cases)} cases")

        intro = nodes.paragraph(classes=["keyflows-vectors-header"])
        intro += nodes.strong(f"Profile {vfile.profile}", f"Profile {vfile.profile}")
        intro += nodes.Text(": ")
        intro += nodes.literal("", f"{self.config.keyflows_vectors_dir}/{vfile.name}")
        details = [f"{len(vfile.cases)} cases ({valid} valid, {invalid} invalid)"]
        for key, label in (("schema", "schema"), ("schema_version", "schema version"),
                           ("spec_version", "spec"), ("generator", "generator")):
            if header.get(key) is not None:
                details.append(f"{label} {header[key]}")
        intro += nodes.Text(" — " + "; ".join(details) + ". ")
        intro += file_links(self.env.docname, vfile, data.vectors_dir(self.config))
        wrapper = nodes.container(ids=[anchor], classes=["keyflows-vectors"])
        wrapper += intro
        original = header.get("original")
        if isinstance(original, dict):
            wrapper.extend(self.original(original))

        rows: list[list[Any]] = []
        row_ids: list[str | None] = []
        seen: set[str] = set()
        for case in vfile.cases:
            cid = str(case["id"])
            if cid in seen:
                self.warn(f"{vfile.name}: duplicate case id {cid}")
            seen.add(cid)
            row_anchor = case_anchor(vfile, cid)
            register_anchor(self.env, "vector", f"{vfile.name}#{cid}", row_anchor)
            row_ids.append(row_anchor)
            result = str(case.get("result", ""))
            if result not in ("valid", "invalid"):
                self.warn(f"{vfile.name}: case {cid} has result {result!r}")
            failure = case.get("failure")
            failure_cell: list[nodes.Node] = []
            if isinstance(failure, dict) and failure.get("class"):
                fclass = str(failure["class"])
                if classes and fclass not in classes:
                    self.warn(f"{vfile.name}: case {cid} has unknown failure class {fclass}")
                failure_cell.append(make_ref("failure", fclass, nodes.literal("", fclass),
                                             title=classes.get(fclass, "")))
                if failure.get("step") is not None:
                    failure_cell.append(nodes.Text(f" at {failure['step']}"))
            elif result == "invalid":
                self.warn(f"{vfile.name}: invalid case {cid} names no failure class")
            reqs = [make_ref("req", str(r), nodes.Text(str(r)),
                             title=known[str(r)].text if str(r) in known else "",
                             classes=["keyflows-req-ref"])
                    for r in case.get("requirements") or []]
            flags = []
            for flag in case.get("flags") or []:
                flag = str(flag)
                if notes and flag not in notes:
                    self.warn(f"{vfile.name}: case {cid} uses flag {flag} missing from notes")
                note = notes.get(flag) or {}
                explanation = note.get("description", "") if isinstance(note, dict) else ""
                flags.append(nodes.abbreviation(flag, flag, explanation=explanation))
            rows.append([nodes.literal("", cid), result, failure_cell, joined(reqs),
                         joined(flags), str(case.get("comment") or "")])
        cases_table = table(["id", "result", "failure class", "requirements", "flags",
                             "comment"],
                            rows, title=f"{vfile.flow} vectors, profile {vfile.profile}",
                            row_ids=row_ids, classes=["keyflows-vector-table"],
                            widths=[27, 8, 12, 14, 15, 24])
        if len(rows) > FOLD_ABOVE:
            box = folded(summary=f"The {len(rows)} cases of {vfile.name} ({valid} valid, "
                                 f"{invalid} invalid)")
            box += cases_table
            wrapper += box
        else:
            wrapper += cases_table
        if notes:
            glossary = []
            for flag, note in notes.items():
                note = note if isinstance(note, dict) else {"description": str(note)}
                glossary.append([nodes.literal("", str(flag)),
                                 inline_text(str(note.get("description", "")), known=known),
                                 inline_text(str(note.get("effect", "")), known=known)])
            wrapper += table(["flag", "description", "effect"], glossary,
                             title=f"Flags of {vfile.name}", classes=["keyflows-flag-table"],
                             widths=[20, 40, 40])
        return [wrapper]


    def original(self, original: dict[str, Any]) -> list[nodes.Node]:
        """Which original the profile reproduces and which of its operations no vector
        covers."""
        para = nodes.paragraph(classes=["keyflows-original"])
        para += nodes.Text("Reproduces ")
        para += nodes.strong("", str(original.get("system", "")))
        para += nodes.Text(" at ")
        para += nodes.literal("", str(original.get("revision", ""))[:12])
        para += nodes.Text(f" (read: {original.get('sources', '')}). Negative cases the "
                           "original accepts carry the flag ")
        para += nodes.literal("", "StricterThanOriginal")
        para += nodes.Text("; those it rejects at another step carry ")
        para += nodes.literal("", "OriginalRejectsElsewhere")
        para += nodes.Text(". Operations of the original that no vector covers:")
        items = nodes.bullet_list(classes=["keyflows-not-covered"])
        for entry in original.get("not_covered") or []:
            item = nodes.list_item()
            item += nodes.paragraph("", "", nodes.strong("", str(entry.get("operation", ""))),
                                    nodes.Text(f": {entry.get('why', '')}"))
            items += item
        return [para, items] if len(items) else [para]


class FailureClassesDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        note_generated(self.env)
        try:
            classes = data.failure_classes()
        except data.DataError as exc:
            logger.warning(str(exc), location=self.get_location(), type="keyflows",
                           subtype="data")
            return []
        row_ids = []
        for name in classes:
            anchor = html_id("failure", name)
            register_anchor(self.env, "failure", name, anchor)
            row_ids.append(anchor)
        rows = [[nodes.literal("", name), inline_text(text, link_requirements=False)]
                for name, text in classes.items()]
        return [table(["class", "the consumer rejects because"], rows, row_ids=row_ids,
                      classes=["keyflows-failure-table"])]


class VectorFilesDirective(SphinxDirective):
    """Every vector file with links to its YAML, JSON and schema, then the bundle."""

    def run(self) -> list[nodes.Node]:
        note_generated(self.env)
        folder = data.vectors_dir(self.config)
        docname = self.env.docname
        rows: list[list[Any]] = []
        for name in data.vector_file_names(self.config):
            self.env.note_dependency(str(folder / name))
            try:
                vfile = data.vector_file(self.config, name)
            except data.DataError as exc:
                logger.warning(str(exc), location=self.get_location(), type="keyflows",
                               subtype="vectors")
                continue
            stem = name.removesuffix(".yaml")
            page = make_ref("vectorfile", name, nodes.literal("", stem))
            rows.append([page, vfile.flow, vfile.profile, file_links(docname, vfile, folder)])
        folder_name = self.config.keyflows_vectors_dir
        out: list[nodes.Node] = [html_only(
            "", table(["file", "flow", "profile", "download"], rows,
                      classes=["keyflows-vector-files"]),
            text=f"The files: {folder_name}/<flow>.yaml and {folder_name}/<flow>.<profile>"
                 f".yaml, each with its JSON twin (.json) and its schema "
                 f"{folder_name}/schemas/<name>.schema.json.")]
        if (folder / BUNDLE).is_file():
            para = nodes.paragraph()
            para += nodes.Text("Every schema in one document: ")
            para += download(docname, BUNDLE, BUNDLE)
            para += nodes.Text(". Validate any vector file, YAML or JSON, against it alone: "
                               "it applies the schema the file's ")
            para += nodes.literal("", "schema")
            para += nodes.Text(" member names, and embeds every schema with its own ")
            para += nodes.literal("", "$id")
            para += nodes.Text(", so no registry needs the ")
            para += nodes.literal("", "urn:")
            para += nodes.Text(" identifiers.")
            out.append(para)
        return out


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-vector-files", VectorFilesDirective)
    app.connect("build-finished", copy_downloads)
    app.add_directive("keyflows-vectors", VectorsDirective)
    app.add_directive("keyflows-failure-classes", FailureClassesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
