"""Every vector file: how it is generated, where it is shipped, how it is checked.

Generation is followed by a self-check: each generated case is replayed through the
spec's consumer side (as `keyflows vectors verify` does with the shipped files), so a
mutation family that declares the wrong failure class never reaches a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from keyflows.vectors import (
    envelope,
    hashchain,
    key_derivation,
    keypair_publication,
    lock_layering,
    originals,
    session_challenge,
)
from keyflows.vectors.framework import (
    Outcome,
    VectorFile,
    describe_yaml_error,
    dump_json,
    iter_cases,
    load_yaml,
    run_verifier,
)

GENERATORS: dict[str, ModuleType] = {
    key_derivation.FLOW: key_derivation,
    keypair_publication.FLOW: keypair_publication,
    envelope.FLOW: envelope,
    hashchain.FLOW: hashchain,
    session_challenge.FLOW: session_challenge,
    lock_layering.FLOW: lock_layering,
}

FILE_NAMES = (
    "key-derivation.yaml",
    "key-derivation.fxakeys.yaml",
    "keypair-publication.yaml",
    "keypair-publication.fxakeys.yaml",
    "envelope.yaml",
    "hashchain.yaml",
    "hashchain.mute.yaml",
    "hashchain-directory.yaml",
    "session-challenge.yaml",
    "lock-layering.yaml",
    "lock-layering.trustbloc.yaml",
)


class VectorError(Exception):
    """A problem with the vectors, reported as one line."""


def generate_all(*, self_check: bool = True) -> list[VectorFile]:
    files: list[VectorFile] = []
    for module in GENERATORS.values():
        files.extend(module.generate())
    try:
        files = [originals.annotate(f) for f in files]
        originals.check_coverage(files)
    except originals.OriginalsError as exc:
        raise VectorError(str(exc)) from exc
    names = tuple(f.file_name for f in files)
    if names != FILE_NAMES:
        raise VectorError(f"generators produce {names}, the catalogue lists {FILE_NAMES}")
    for vector_file in files:
        try:
            vector_file.check_model()
        except ValueError as exc:
            raise VectorError(str(exc)) from exc
        if self_check:
            _self_check(vector_file)
    return files


def _self_check(vector_file: VectorFile) -> None:
    plain = vector_file.to_plain()
    for case in iter_cases(plain):
        outcome = verify_case(plain, case)
        if not outcome.agreed:
            raise VectorError(f"{vector_file.file_name}: generated case {case['id']} does not "
                              f"verify: {outcome.detail}")


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    module = GENERATORS.get(str(header.get("flow")))
    if module is None:
        return Outcome(False, f"no verifier for flow {header.get('flow')!r}")
    return run_verifier(module.verify_case, header, case)


@dataclass(frozen=True)
class Tally:
    cases: int
    agreed: int
    disagreements: list[tuple[str, str]]  # (case id, why)


def verify_file(plain: Mapping[str, Any]) -> Tally:
    cases = agreed = 0
    disagreements: list[tuple[str, str]] = []
    for case in iter_cases(plain):
        cases += 1
        outcome = verify_case(plain, case)
        if outcome.agreed:
            agreed += 1
        else:
            disagreements.append((str(case.get("id", f"#{cases}")), outcome.detail))
    return Tally(cases, agreed, disagreements)


# --- shipped files -----------------------------------------------------------------------------

def read_vector_text(name: str, directory: Path | None = None) -> str:
    """A shipped file's text (NAME may be schemas/bundle.json), from `directory` or from
    the installed package."""
    try:
        if directory is not None:
            return (directory / name).read_text(encoding="utf-8")
        return resources.files("keyflows.vectors").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        where = directory if directory is not None else "the keyflows package"
        raise VectorError(f"{name} is missing from {where} (run `keyflows vectors generate`)"
                          ) from exc


def parse_vector_text(name: str, text: str) -> dict[str, Any]:
    """A vector file's data; a YAML error is one line naming the line and column."""
    try:
        return load_yaml(text)
    except Exception as exc:  # yaml.YAMLError and friends: report, do not trace
        raise VectorError(f"{name}:{describe_yaml_error(exc)} (not valid YAML)") from exc


def parse_json_text(name: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VectorError(f"{name}:{exc.lineno}:{exc.colno}: {exc.msg} (not valid JSON)"
                          ) from exc
    if not isinstance(data, dict):
        raise VectorError(f"{name}: a vector file must be a JSON object")
    return data


# --- schemas --------------------------------------------------------------------------------------

BUNDLE_FILE = "schemas/bundle.json"
BUNDLE_ID = "urn:keyflows:schema:vectors:bundle:1"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every shipped JSON Schema by its $id, in file-name order."""
    out: dict[str, dict[str, Any]] = {}
    entries = sorted(resources.files("keyflows.vectors.schemas").iterdir(), key=lambda e: e.name)
    for entry in entries:
        if entry.name.endswith(".schema.json"):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            out[schema["$id"]] = schema
    return out


def schema_registry() -> Registry[Any]:
    resources_: list[tuple[str, Resource[Any]]] = [
        (sid, DRAFT202012.create_resource(schema)) for sid, schema in schemas().items()]
    return Registry().with_resources(resources_)


def _bundle_key(schema_id: str) -> str:
    # urn:keyflows:schema:vectors:<name>:<version> -> <name>
    return schema_id.split(":")[-2]


def schema_bundle() -> dict[str, Any]:
    """Every schema in one document a consumer loads without knowing any `urn:` id.

    Each schema is embedded under `$defs` with its own `$id` (a JSON Schema 2020-12
    compound document), so its `$ref`s resolve inside the bundle. The root accepts any
    vector file and applies the schema its `schema` member names.
    """
    embedded = schemas()
    file_ids = [sid for sid in embedded if "cases" in embedded[sid].get("properties", {})]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": BUNDLE_ID,
        "title": "keyflows vectors: every schema in one document",
        "description": (
            "Validate any keyflows vector file (YAML or JSON) against this document alone: "
            "it applies the schema named by the file's `schema` member. Each schema is "
            "embedded under $defs with its own $id, so no registry needs to know the urn: "
            "ids. Generated from vectors/schemas/*.schema.json by `keyflows vectors "
            "generate`."),
        "type": "object",
        "required": ["schema"],
        "properties": {"schema": {"enum": file_ids}},
        "allOf": [
            {"if": {"properties": {"schema": {"const": sid}}, "required": ["schema"]},
             "then": {"$ref": sid}}
            for sid in file_ids
        ],
        "$defs": {_bundle_key(sid): schema for sid, schema in embedded.items()},
    }


def dump_bundle() -> str:
    return dump_json(schema_bundle())


def schema_errors(plain: Mapping[str, Any]) -> list[str]:
    """Why a parsed vector file does not conform to the schema its header names; the
    best-matching error (jsonschema's relevance: the deepest, most specific) first."""
    schema = schemas().get(str(plain.get("schema")))
    if schema is None:
        return [f"names an unknown schema {plain.get('schema')!r}"]
    validator = Draft202012Validator(schema, registry=schema_registry())
    errors = sorted(validator.iter_errors(plain), key=_path_order)
    best = best_match(iter(errors))
    if best is not None:
        errors = [best, *(e for e in errors if e is not best)]
    out = [f"at /{'/'.join(str(p) for p in e.absolute_path)}: {_clip(e.message)}"
           for e in errors]
    cases = plain.get("cases")
    if isinstance(cases, list) and plain.get("number_of_cases") != len(cases):
        out.append(f"number_of_cases is {plain.get('number_of_cases')}, the file has "
                   f"{len(cases)} cases")
    return out


def _path_order(error: Any) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.absolute_path]


def _clip(message: str, limit: int = 160) -> str:
    # jsonschema quotes whole instances in some messages; one line is enough.
    line = " ".join(message.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
