"""The HTTP API reference, generated from spec/openapi.yaml at build time.

`.. keyflows-openapi::` renders every operation of the document (method, path, summary,
description, authentication, parameters, request body schema, responses) and every
component schema. `.. keyflows-operations::` renders a compact, linked list of the
operations matching `:paths:` (fnmatch patterns) or `:tags:`, for the flow chapters.
A missing or malformed document fails the build.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from keyflows_sphinx import data
from keyflows_sphinx.util import (
    blocks,
    html_id,
    inline_text,
    joined,
    logger,
    make_ref,
    note_generated,
    register_anchor,
    section,
    table,
)

METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")


class OpenAPIError(data.DataError):
    pass


class Resolver:
    """Follows $ref: local JSON pointers and relative files (JSON or YAML)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc = data.load_yaml(path)
        if not isinstance(self.doc, dict) or "paths" not in self.doc:
            raise OpenAPIError(f"{path}: not an OpenAPI document (no 'paths')")
        self.files: set[Path] = {path}

    def _pointer(self, doc: Any, pointer: str, ref: str) -> Any:
        node = doc
        for part in [p for p in pointer.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise OpenAPIError(f"{self.path}: $ref {ref} does not resolve") from exc
        return node

    def deref(self, obj: Any, base: Path | None = None) -> tuple[Any, Path, str | None]:
        """(target, file the target lives in, component schema name if it is one)."""
        base = base or self.path
        name = None
        for _ in range(32):
            if not (isinstance(obj, dict) and isinstance(obj.get("$ref"), str)):
                return obj, base, name
            ref = obj["$ref"]
            file_part, _, pointer = ref.partition("#")
            if file_part:
                if "://" in file_part:
                    raise OpenAPIError(f"{self.path}: $ref {ref} is not a local file")
                base = (base.parent / file_part).resolve()
                if not base.is_file():
                    raise OpenAPIError(f"{self.path}: $ref {ref} names a missing file")
                self.files.add(base)
            doc = self.doc if base == self.path else data.load_json_or_yaml(base)
            name = (pointer.rsplit("/", 1)[1]
                    if base == self.path and pointer.startswith("/components/schemas/")
                    else None)
            obj = self._pointer(doc, pointer, ref)
        raise OpenAPIError(f"{self.path}: $ref chain too long")


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    out = []
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method in METHODS:
            if isinstance(item.get(method), dict):
                out.append((method, path, item[method], item))
    return out


def op_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def op_anchor(method: str, path: str, op: dict[str, Any]) -> str:
    if op.get("operationId"):
        return html_id("op", str(op["operationId"]))
    return html_id("op", method, path.replace("{", "").replace("}", ""))


def schema_anchor(name: str) -> str:
    return html_id("schema", name)


class _Renderer:
    def __init__(self, directive: SphinxDirective, resolver: Resolver, known: dict[str, Any]):
        self.d = directive
        self.r = resolver
        self.known = known
        self.component_schemas = set((resolver.doc.get("components") or {}).get("schemas") or {})

    def warn(self, message: str) -> None:
        logger.warning(message, location=self.d.get_location(), type="keyflows",
                       subtype="openapi")

    def text(self, value: Any) -> list[nodes.Node]:
        return blocks(str(value or ""), known=self.known, warn=self.warn)

    def inline(self, value: Any) -> list[nodes.Node]:
        return inline_text(" ".join(str(value or "").split()), known=self.known, warn=self.warn)

    # --- schemas ---

    def type_label(self, schema: Any, base: Path | None = None, depth: int = 0) -> list[nodes.Node]:
        if depth > 8:
            return [nodes.Text("…")]
        if isinstance(schema, dict) and "$ref" in schema:
            target, new_base, name = self.r.deref(schema, base)
            if name and name in self.component_schemas and new_base == self.r.path:
                return [make_ref("schema", name, nodes.literal("", name))]
            return self.type_label(target, new_base, depth + 1)
        if not isinstance(schema, dict):
            return [nodes.Text("any")]
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list):
                parts = [self.type_label(s, base, depth + 1) for s in schema[key]]
                out: list[nodes.Node] = [nodes.Text("one of " if key == "oneOf" else "any of ")]
                for i, part in enumerate(parts):
                    if i:
                        out.append(nodes.Text(" | "))
                    out.extend(part)
                return out
        if isinstance(schema.get("allOf"), list):
            return joined([n for s in schema["allOf"] for n in self.type_label(s, base,
                                                                               depth + 1)],
                          " & ")
        if "const" in schema:
            return [nodes.literal("", _json(schema["const"]))]
        typ = schema.get("type")
        if isinstance(typ, list):
            label = " | ".join(str(t) for t in typ)
        elif typ == "array":
            return [nodes.Text("array of "), *self.type_label(schema.get("items", {}), base,
                                                               depth + 1)]
        elif typ:
            label = str(typ)
        elif "properties" in schema:
            label = "object"
        else:
            label = "any"
        if schema.get("format"):
            label += f" ({schema['format']})"
        return [nodes.Text(label)]

    def constraints(self, schema: dict[str, Any]) -> list[nodes.Node]:
        """Enum, bounds, pattern and default of a schema, values as literals."""
        parts: list[list[nodes.Node]] = []
        if "enum" in schema:
            parts.append([nodes.Text("one of "), *joined(
                [nodes.literal("", _json(v)) for v in schema["enum"]])])
        for key, label in (("minLength", "min length"), ("maxLength", "max length"),
                           ("minimum", "minimum"), ("maximum", "maximum"),
                           ("exclusiveMinimum", "greater than"),
                           ("exclusiveMaximum", "less than"), ("minItems", "min items"),
                           ("maxItems", "max items"), ("pattern", "pattern"),
                           ("default", "default")):
            if key in schema:
                value = schema[key]
                shown = str(value) if key != "default" else _json(value)
                parts.append([nodes.Text(f"{label} "), nodes.literal("", shown)])
        return joined([nodes.inline("", "", *p) for p in parts], "; ")

    def describe(self, schema: dict[str, Any]) -> list[nodes.Node]:
        out = self.inline(schema.get("description", ""))
        extra = self.constraints(schema)
        if extra:
            out.append(nodes.inline("", "", nodes.Text(" (" if out else "("), *extra,
                                    nodes.Text(")"), classes=["keyflows-constraints"]))
        return out

    def property_rows(self, schema: Any, base: Path | None, prefix: str = "",
                      depth: int = 0, note: str = "") -> list[list[Any]]:
        schema, base, _ = self.r.deref(schema, base)
        if not isinstance(schema, dict) or depth > 6:
            return []
        rows: list[list[Any]] = []
        required = set(schema.get("required") or [])
        for name, prop in (schema.get("properties") or {}).items():
            full = f"{prefix}{name}"
            target, tbase, ref_name = self.r.deref(prop, base)
            desc = self.describe(target if isinstance(target, dict) else {})
            if note:
                desc = [nodes.emphasis("", note + " "), *desc]
            rows.append([nodes.literal("", full), self.type_label(prop, base),
                         "yes" if name in required else "no", desc])
            if ref_name and ref_name in self.component_schemas and tbase == self.r.path:
                continue  # documented in its own schema section
            if isinstance(target, dict):
                if target.get("properties"):
                    rows.extend(self.property_rows(target, tbase, full + ".", depth + 1))
                elif target.get("type") == "array" and isinstance(target.get("items"), dict):
                    rows.extend(self.property_rows(target["items"], tbase, full + "[].",
                                                   depth + 1))
                for key in ("oneOf", "anyOf"):
                    for i, variant in enumerate(target.get(key) or [], 1):
                        vt, vb, vname = self.r.deref(variant, tbase)
                        if vname and vname in self.component_schemas and vb == self.r.path:
                            continue
                        rows.extend(self.property_rows(vt, vb, full + ".", depth + 1,
                                                       note=f"(variant {i})"))
        return rows

    def schema_body(self, schema: Any, base: Path | None = None) -> list[nodes.Node]:
        target, tbase, _ = self.r.deref(schema, base)
        out: list[nodes.Node] = []
        if not isinstance(target, dict):
            return out
        label = nodes.paragraph("", "", nodes.Text("Type: "), *self.type_label(schema, base))
        rows = self.property_rows(target, tbase)
        variants = target.get("oneOf") or target.get("anyOf") or []
        if not rows and variants:
            for i, variant in enumerate(variants, 1):
                rows.extend(self.property_rows(variant, tbase, note=f"(variant {i})"))
        out.append(label)
        if rows:
            out.append(table(["member", "type", "required", "description"], rows,
                             classes=["keyflows-schema-table"]))
            if target.get("additionalProperties") is False:
                out.append(nodes.paragraph("", "No other members are allowed.",
                                           classes=["keyflows-closed-schema"]))
        elif self.constraints(target):
            out.append(nodes.paragraph("", "", nodes.Text("Constraints: "),
                                       *self.constraints(target)))
        return out

    # --- operations ---

    def security(self, op: dict[str, Any]) -> list[nodes.Node]:
        reqs = op.get("security", self.r.doc.get("security"))
        if not reqs:
            return [nodes.Text("none")]
        schemes = (self.r.doc.get("components") or {}).get("securitySchemes") or {}
        names = []
        for alternative in reqs:
            if not alternative:
                names.append("none (optional)")
            for scheme_name in alternative:
                scheme, _, _ = self.r.deref(schemes.get(scheme_name, {}))
                kind = scheme.get("scheme") or scheme.get("type") or ""
                names.append(f"{scheme_name} ({kind})" if kind and kind != scheme_name
                             else scheme_name)
        return [nodes.Text(" or ".join(names))]

    def parameters(self, op: dict[str, Any], item: dict[str, Any]) -> list[list[Any]]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in [*(item.get("parameters") or []), *(op.get("parameters") or [])]:
            param, _, _ = self.r.deref(raw)
            merged[(param.get("in", ""), param.get("name", ""))] = param
        rows = []
        for (where, name), param in merged.items():
            schema = param.get("schema", {})
            target, _, _ = self.r.deref(schema)
            desc = self.inline(param.get("description", ""))
            extra = self.constraints(target) if isinstance(target, dict) else []
            if extra:
                desc.append(nodes.inline("", "", nodes.Text(" ("), *extra, nodes.Text(")"),
                                         classes=["keyflows-constraints"]))
            rows.append([nodes.literal("", name), where, self.type_label(schema),
                         "yes" if param.get("required") else "no", desc])
        return rows

    def operation(self, method: str, path: str, op: dict[str, Any],
                  item: dict[str, Any]) -> nodes.section:
        anchor = op_anchor(method, path, op)
        register_anchor(self.d.env, "op", op_key(method, path), anchor, warn=self.warn)
        sec = section(f"{method.upper()} {path}", anchor, classes=["keyflows-operation"])
        if op.get("summary"):
            sec += nodes.paragraph("", "", nodes.strong("", "", *self.inline(op["summary"])))
        sec.extend(self.text(op.get("description", "")))
        facts = nodes.field_list()
        facts += _field("Authentication", self.security(op))
        if op.get("operationId"):
            facts += _field("Operation ID", [nodes.literal("", str(op["operationId"]))])
        if op.get("tags"):
            facts += _field("Tags", [nodes.Text(", ".join(str(t) for t in op["tags"]))])
        reqs = op.get("x-requirements") or op.get("x-keyflows-requirements") or []
        if reqs:
            facts += _field("Requirements", joined(
                [make_ref("req", str(r), nodes.Text(str(r)), classes=["keyflows-req-ref"])
                 for r in reqs]))
            for r in reqs:
                if str(r) not in self.known:
                    self.warn(f"{op_key(method, path)} cites unknown requirement {r}")
        if op.get("deprecated"):
            facts += _field("Deprecated", [nodes.Text("yes")])
        sec += facts

        params = self.parameters(op, item)
        if params:
            sec += nodes.rubric("", "Parameters")
            sec += table(["name", "in", "type", "required", "description"], params,
                         classes=["keyflows-param-table"])
        if "requestBody" in op:
            body, bbase, _ = self.r.deref(op["requestBody"])
            sec += nodes.rubric("", "Request body")
            line = nodes.paragraph()
            line += nodes.Text("Required. " if body.get("required") else "Optional. ")
            line.extend(self.inline(body.get("description", "")))
            sec += line
            for ctype, media in (body.get("content") or {}).items():
                sec += nodes.paragraph("", "", nodes.Text("Content type "),
                                       nodes.literal("", ctype), nodes.Text(":"))
                if isinstance(media, dict) and "schema" in media:
                    sec.extend(self.schema_body(media["schema"], bbase))
        responses = op.get("responses") or {}
        if responses:
            sec += nodes.rubric("", "Responses")
            rows = []
            for status, raw in responses.items():
                resp, rbase, _ = self.r.deref(raw)
                content = resp.get("content") or {}
                kinds: list[nodes.Node] = []
                for ctype, media in content.items():
                    if kinds:
                        kinds.append(nodes.Text("; "))
                    kinds.append(nodes.literal("", ctype))
                    if isinstance(media, dict) and "schema" in media:
                        kinds.append(nodes.Text(" "))
                        kinds.extend(self.type_label(media["schema"], rbase))
                rows.append([nodes.literal("", str(status)), self.inline(resp.get("description")),
                             kinds or "no body"])
            sec += table(["status", "meaning", "body"], rows, classes=["keyflows-response-table"])
        return sec

    def schemas(self) -> nodes.section | None:
        schemas = (self.r.doc.get("components") or {}).get("schemas") or {}
        if not schemas:
            return None
        sec = section("Schemas", "schemas")
        for name, schema in schemas.items():
            anchor = schema_anchor(name)
            register_anchor(self.d.env, "schema", name, anchor, warn=self.warn)
            sub = section(name, anchor, classes=["keyflows-schema"])
            target, tbase, _ = self.r.deref(schema)
            if isinstance(target, dict):
                sub.extend(self.text(target.get("description", "")))
            sub.extend(self.schema_body(dict(target) if isinstance(target, dict) else {}, tbase))
            sec += sub
        return sec


def _field(name: str, body: list[nodes.Node]) -> nodes.field:
    field = nodes.field()
    field += nodes.field_name(name, name)
    value = nodes.field_body()
    value += nodes.paragraph("", "", *body)
    field += value
    return field


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _resolver(directive: SphinxDirective) -> Resolver | None:
    path = data.openapi_path(directive.config)
    directive.env.note_dependency(str(path))
    note_generated(directive.env)
    try:
        resolver = Resolver(path)
    except data.DataError as exc:
        logger.warning(f"the HTTP API pages need {directive.config.keyflows_openapi_file}: {exc}",
                       location=directive.get_location(), type="keyflows", subtype="openapi")
        return None
    return resolver


def _known(directive: SphinxDirective) -> dict[str, Any]:
    try:
        return data.requirements(directive.config)
    except data.DataError:
        return {}


def _selected(ops: list[tuple[str, str, dict[str, Any], dict[str, Any]]],
              options: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    patterns = (options.get("paths") or "").split()
    tags = {t.strip() for t in (options.get("tags") or "").split(",") if t.strip()}
    if not patterns and not tags:
        return ops
    return [o for o in ops
            if any(fnmatch.fnmatchcase(o[1], p) for p in patterns)
            or tags & set(o[2].get("tags") or [])]


class OpenAPIDirective(SphinxDirective):
    option_spec: ClassVar[dict[str, Any]] = {"paths": directives.unchanged,
                                             "tags": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        resolver = _resolver(self)
        if resolver is None:
            return []
        try:
            return self._render(resolver)
        except data.DataError as exc:
            logger.warning(str(exc), location=self.get_location(), type="keyflows",
                           subtype="openapi")
            return []
        finally:
            for path in resolver.files:
                self.env.note_dependency(str(path))

    def _render(self, resolver: Resolver) -> list[nodes.Node]:
        renderer = _Renderer(self, resolver, _known(self))
        doc = resolver.doc
        info = doc.get("info") or {}
        out: list[nodes.Node] = []
        head = nodes.paragraph()
        head += nodes.Text(f"Generated from {self.config.keyflows_openapi_file} "
                           f"(OpenAPI {doc.get('openapi', '?')}): ")
        head += nodes.strong("", str(info.get("title", "")))
        head += nodes.Text(f", version {info.get('version', '?')}.")
        out.append(head)
        out.extend(renderer.text(info.get("description", "")))
        ops = _selected(_operations(doc), self.options)
        if not ops:
            renderer.warn("the OpenAPI document has no matching operations")
        # Group by first tag, in the order of the document's tag list.
        tag_order = [t.get("name") for t in doc.get("tags") or [] if isinstance(t, dict)]
        groups: dict[str, list[Any]] = {}
        for op in ops:
            tag = (op[2].get("tags") or ["Operations"])[0]
            groups.setdefault(tag, []).append(op)
        ordered = sorted(groups, key=lambda t: (tag_order.index(t) if t in tag_order
                                                else len(tag_order), ""))
        tag_docs = {t.get("name"): t for t in doc.get("tags") or [] if isinstance(t, dict)}
        for tag in ordered:
            sec = section(str(tag), html_id("tag", str(tag)))
            sec.extend(renderer.text((tag_docs.get(tag) or {}).get("description", "")))
            for method, path, op, item in groups[tag]:
                sec += renderer.operation(method, path, op, item)
            out.append(sec)
        if not self.options:
            schemas = renderer.schemas()
            if schemas is not None:
                out.append(schemas)
        return out


class OperationsDirective(SphinxDirective):
    """A linked summary of the operations a flow uses."""

    option_spec: ClassVar[dict[str, Any]] = {"paths": directives.unchanged,
                                             "tags": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        resolver = _resolver(self)
        if resolver is None:
            return []
        renderer = _Renderer(self, resolver, _known(self))
        try:
            ops = _selected(_operations(resolver.doc), self.options)
            if not ops:
                renderer.warn("no OpenAPI operation matches "
                              f"{self.options or 'this directive'}")
                return []
            rows = [[make_ref("op", op_key(m, p), nodes.literal("", f"{m.upper()} {p}")),
                     renderer.inline(op.get("summary", "")), renderer.security(op)]
                    for m, p, op, _ in ops]
        except data.DataError as exc:
            renderer.warn(str(exc))
            return []
        return [table(["operation", "summary", "authentication"], rows,
                      classes=["keyflows-operations-table"])]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("keyflows-openapi", OpenAPIDirective)
    app.add_directive("keyflows-operations", OperationsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
