"""Loading the project's single sources of truth for the docs.

Everything generated on the site comes from files in the repository (requirements,
vectors, the OpenAPI document) or from the installed package (failure classes, the
conformance check registry). Files are parsed once per build and cached by mtime.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from keyflows.spec import yamlfile

REQUIREMENT_ID = re.compile(r"\b(?:API|KD|KP|ENV|SC|LOCK|HC)-[1-9][0-9]*\b")
LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")


class DataError(Exception):
    """A source file is missing or malformed; reported as a Sphinx warning."""


@dataclass(frozen=True)
class Requirement:
    id: str
    flow: str
    step: str
    level: str
    text: str
    # Every other key of the entry (e.g. its coverage class), kept so that new keys in
    # the registry reach the pages that want them without breaking the others.
    extra: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


@dataclass(frozen=True)
class VectorFile:
    path: Path
    name: str          # file name, e.g. "key-derivation.fxakeys.yaml"
    flow: str
    profile: str
    header: dict[str, Any]
    cases: list[dict[str, Any]]


@dataclass(frozen=True)
class Check:
    id: str
    requirements: tuple[str, ...]
    summary: str = ""


_cache: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}


def _load(path: Path, kind: str, parse: Any) -> Any:
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise DataError(f"{path} does not exist") from exc
    key = (str(path), kind)
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    text = path.read_text(encoding="utf-8")
    try:
        value = parse(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid {kind}: {exc}") from exc
    _cache[key] = (stamp, value)
    return value


def load_yaml(path: Path) -> Any:
    # libyaml's parser, refusing repeated keys, as everything that reads the project's YAML.
    return _load(path, "YAML", yamlfile.load)


def load_json_or_yaml(path: Path) -> Any:
    if path.suffix == ".json":
        return _load(path, "JSON", json.loads)
    return load_yaml(path)


# --- paths ----------------------------------------------------------------------------------

def root(config: Any) -> Path:
    return Path(config.keyflows_root).resolve()


def requirements_path(config: Any) -> Path:
    return root(config) / str(config.keyflows_requirements_file)


def openapi_path(config: Any) -> Path:
    return root(config) / str(config.keyflows_openapi_file)


def vectors_dir(config: Any) -> Path:
    return root(config) / str(config.keyflows_vectors_dir)


# --- requirements -----------------------------------------------------------------------------

def requirements(config: Any) -> dict[str, Requirement]:
    """Every requirement by ID, in file order."""
    path = requirements_path(config)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: top level must be a mapping of ID -> requirement")
    out: dict[str, Requirement] = {}
    for rid, entry in raw.items():
        if not isinstance(rid, str) or not REQUIREMENT_ID.fullmatch(rid):
            raise DataError(f"{path}: malformed requirement ID {rid!r}")
        if not isinstance(entry, dict) or not {"flow", "step", "level", "text"} <= set(entry):
            raise DataError(f"{path}: {rid} needs flow, step, level and text")
        if entry["level"] not in LEVELS:
            raise DataError(f"{path}: {rid} has level {entry['level']!r}, not one of {LEVELS}")
        extra = tuple((str(k), v) for k, v in entry.items()
                      if k not in ("flow", "step", "level", "text"))
        out[rid] = Requirement(id=rid, flow=str(entry["flow"]), step=str(entry["step"]),
                               level=str(entry["level"]),
                               text=" ".join(str(entry["text"]).split()), extra=extra)
    return out


# --- vectors ----------------------------------------------------------------------------------

def vector_file_names(config: Any, flow: str | None = None) -> list[str]:
    """Vector files of one flow (or of all flows): the main profile first."""
    folder = vectors_dir(config)
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.glob("*.yaml") if p.is_file())
    if flow is not None:
        names = [n for n in names if n == f"{flow}.yaml" or n.startswith(f"{flow}.")]
    return sorted(names, key=lambda n: (n.count("."), n))


def vector_file(config: Any, name: str) -> VectorFile:
    path = vectors_dir(config) / name
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: top level must be a mapping")
    cases = raw.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise DataError(f"{path}: 'cases' must be a list of mappings")
    for i, case in enumerate(cases):
        if "id" not in case:
            raise DataError(f"{path}: case #{i} has no id")
    header = {k: v for k, v in raw.items() if k != "cases"}
    flow = str(raw.get("flow") or name.split(".")[0])
    profile = str(raw.get("profile") or (name.split(".")[1] if name.count(".") > 1 else "v1"))
    return VectorFile(path=path, name=name, flow=flow, profile=profile, header=header,
                      cases=cases)


# --- the installed package ----------------------------------------------------------------------

def failure_classes() -> dict[str, str]:
    try:
        module = importlib.import_module("keyflows.spec.errors")
    except ImportError as exc:
        raise DataError(f"cannot import keyflows.spec.errors: {exc}") from exc
    classes = getattr(module, "FAILURE_CLASSES", None)
    if not isinstance(classes, dict):
        raise DataError("keyflows.spec.errors.FAILURE_CLASSES is not a dict")
    return dict(classes)


_REGISTRY = "keyflows.conformance.registry"


def _missing_part(exc: ImportError) -> bool:
    """The conformance runner (or one of its check modules) is not written yet."""
    name = exc.name or ""
    return name == "keyflows" or name.startswith("keyflows.conformance")


def conformance_checks() -> tuple[list[Check] | None, str]:
    """(checks, note). checks is None when the registry is not there (yet).

    A registry (or check module) that is absent is normal while the runner is being
    written; one that is present but fails otherwise is a bug and raises DataError.
    """
    try:
        module = importlib.import_module(_REGISTRY)
        all_checks = getattr(module, "all_checks", None)
        if all_checks is None:
            return None, f"{_REGISTRY} has no all_checks()"
        checks = [Check(id=str(c.id), requirements=tuple(c.requirements),
                        summary=str(getattr(c, "summary", "") or ""))
                  for c in all_checks()]
    except ImportError as exc:
        if _missing_part(exc):
            return None, f"{exc.name} is not importable yet ({exc})"
        raise DataError(f"listing conformance checks failed: {exc!r}") from exc
    except Exception as exc:
        raise DataError(f"listing conformance checks failed: {exc!r}") from exc
    return checks, f"{len(checks)} checks from {_REGISTRY}.all_checks()"
