"""The vector file model, its canonical YAML form, and the helpers verifiers share.

A vector file is a header (schema id and version, flow, profile, spec and generator
versions, where the randomness came from, a flag glossary) followed by cases. A case
carries every input (the random bytes included), every intermediate value, the outputs,
and for an invalid case the failure class and step that must reject it.

The canonical form is what `keyflows vectors generate` writes and `check` compares byte
for byte: PyYAML `safe_dump`, keys in model order, bytes as lowercase hex, wire records
as nested mappings, no line folding, an explicit document start and a trailing newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import yaml

from keyflows.spec import SPEC_VERSION, yamlfile
from keyflows.spec.errors import FAILURE_CLASSES, SpecError
from keyflows.spec.requirements import registry

SCHEMA_VERSION = "1"
GENERATOR_NAME = "keyflows-vectors"
DRBG_NAME = "keyflows-drbg-v1"
DRBG_CONSTRUCTION = (
    'block_i = SHA-256("keyflows-drbg-v1" || 0x00 || u16be(len(label)) || label || u64be(i)); '
    "the stream is block_0 || block_1 || ..., consumed in order"
)
# So long a line never folds: folding would make hex values span lines.
_YAML_WIDTH = 1 << 20

VALID = "valid"
INVALID = "invalid"


def schema_id(schema_name: str) -> str:
    """The $id of a vector schema, e.g. urn:keyflows:schema:vectors:key-derivation:1."""
    return f"urn:keyflows:schema:vectors:{schema_name}:{SCHEMA_VERSION}"


def generator_version() -> str:
    try:
        version = metadata.version("keyflows")
    except metadata.PackageNotFoundError:  # running from a tree that is not installed
        version = "0+unknown"
    return f"{GENERATOR_NAME} {version}"


@dataclass(frozen=True)
class Flag:
    """A glossary entry: what a flag marks and what an implementation must do."""

    description: str
    effect: str


@dataclass(frozen=True)
class Failure:
    """Where an invalid case must be rejected: failure class and flow step."""

    failure_class: str
    step: str

    def to_plain(self) -> dict[str, str]:
        return {"class": self.failure_class, "step": self.step}


@dataclass(frozen=True)
class Case:
    id: str
    comment: str
    flags: tuple[str, ...]
    requirements: tuple[str, ...]
    operation: str
    inputs: Mapping[str, Any]
    intermediates: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    failure: Failure | None = None

    @property
    def result(self) -> str:
        return VALID if self.failure is None else INVALID

    def to_plain(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "comment": self.comment,
            "flags": list(self.flags),
            "requirements": list(self.requirements),
            "operation": self.operation,
            "inputs": to_plain(self.inputs),
            "intermediates": to_plain(self.intermediates),
            "outputs": to_plain(self.outputs),
            "result": self.result,
            "failure": None if self.failure is None else self.failure.to_plain(),
        }


@dataclass(frozen=True)
class VectorFile:
    """One YAML file: a flow in one profile."""

    schema_name: str  # "key-derivation" or "key-derivation.fxakeys"
    flow: str
    profile: str
    source_labels: str
    notes: Mapping[str, Flag]
    cases: Sequence[Case]
    # Compatibility profiles: the original system, its revision and sources, and the
    # operations of it no file of the profile covers (vectors/originals.py).
    original: Mapping[str, Any] | None = None

    @property
    def file_name(self) -> str:
        return f"{self.schema_name}.yaml"

    @property
    def json_file_name(self) -> str:
        return f"{self.schema_name}.json"

    @property
    def schema_file_name(self) -> str:
        return f"{self.schema_name}.schema.json"

    def header(self) -> dict[str, Any]:
        return {
            "schema": schema_id(self.schema_name),
            "schema_version": SCHEMA_VERSION,
            "flow": self.flow,
            "profile": self.profile,
            "spec_version": SPEC_VERSION,
            "generator": generator_version(),
            "source": {"drbg": DRBG_NAME, "construction": DRBG_CONSTRUCTION,
                       "labels": self.source_labels},
            "notes": {name: {"description": f.description, "effect": f.effect}
                      for name, f in self.notes.items()},
            **({"original": to_plain(self.original)} if self.original is not None else {}),
        }

    def to_plain(self) -> dict[str, Any]:
        out = self.header()
        out["number_of_cases"] = len(self.cases)
        out["cases"] = [case.to_plain() for case in self.cases]
        return out

    def dump(self) -> str:
        return dump_yaml(self.to_plain())

    def dump_json(self) -> str:
        return dump_json(self.to_plain())

    def check_model(self) -> None:
        """Refuse to write a file whose cases break the model's own rules."""
        known = registry()
        seen: set[str] = set()
        for case in self.cases:
            where = f"{self.file_name}: case {case.id}"
            if case.id in seen:
                raise ValueError(f"{where}: duplicate id")
            seen.add(case.id)
            for flag in case.flags:
                if flag not in self.notes:
                    raise ValueError(f"{where}: flag {flag} is not in the glossary")
            for rid in case.requirements:
                if rid not in known:
                    raise ValueError(f"{where}: unknown requirement {rid}")
            if not case.requirements:
                raise ValueError(f"{where}: cites no requirement")
            if case.failure and case.failure.failure_class not in FAILURE_CLASSES:
                raise ValueError(f"{where}: unknown failure class {case.failure.failure_class}")


def to_plain(value: Any) -> Any:
    """The YAML form of a value: bytes become lowercase hex, containers recurse."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes strings with control characters double-quoted, so a
    newline inside a value reads as \\n instead of spanning lines."""


# Plain scalars that a YAML 1.2 core-schema parser (js-yaml, Go, Rust) reads as a number,
# boolean or null. PyYAML follows YAML 1.1 and leaves some of them unquoted (hex such as
# "08" or "12e6"), so they are quoted explicitly: every reader must see a string.
_YAML12_NON_STRING = re.compile(
    r"\A(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    r"|true|True|TRUE|false|False|FALSE|null|Null|NULL|~)\Z")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(not ch.isprintable() for ch in value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if _YAML12_NON_STRING.match(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(plain: Mapping[str, Any]) -> str:
    text = yaml.dump(dict(plain), Dumper=_Dumper, sort_keys=False, width=_YAML_WIDTH,
                     allow_unicode=True, explicit_start=True, default_flow_style=False)
    return text if text.endswith("\n") else text + "\n"


def dump_json(plain: Mapping[str, Any]) -> str:
    """The JSON twin of a vector file: the same data as its YAML, member order kept."""
    return json.dumps(dict(plain), indent=2, ensure_ascii=False) + "\n"


def load_yaml(text: str) -> dict[str, Any]:
    """A vector file: libyaml's parser, safe types, a repeated key refused (yamlfile)."""
    data = yamlfile.load(text)
    if not isinstance(data, dict):
        raise ValueError("a vector file must be a YAML mapping")
    return data


def describe_yaml_error(exc: Exception) -> str:
    """One line for a YAML error: `LINE:COLUMN: problem (context)`, 1-based like editors."""
    return yamlfile.describe(exc)


# --- verification helpers -------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """Whether the spec's consumer side agrees with a case, and if not, why."""

    agreed: bool
    detail: str = ""


AGREED = Outcome(True)

CaseVerifier = Callable[[Mapping[str, Any]], Outcome]


def dispatch(verifiers: Mapping[tuple[str, str], CaseVerifier], header: Mapping[str, Any],
             case: Mapping[str, Any]) -> Outcome:
    """Replay a case through the verifier registered for its (profile, operation)."""
    profile, operation = str(header.get("profile", "")), str(case.get("operation", ""))
    verifier = verifiers.get((profile, operation))
    if verifier is None:
        return Outcome(False, f"no verifier for operation {operation!r} in profile {profile!r}")
    return verifier(case)


def hx(value: object, field_name: str = "value") -> bytes:
    """A hex field of a case as bytes (strict: lowercase, even length)."""
    if not isinstance(value, str):
        raise ValueError(f"{field_name} is not a hex string")
    data = bytes.fromhex(value)
    if data.hex() != value:
        raise ValueError(f"{field_name} is not canonical lowercase hex")
    return data


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """The path of the first difference between two plain values, or None."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                return f"{path}.{key}: missing from the recomputation"
            if key not in expected:
                return f"{path}.{key}: recomputed but absent from the case"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(e, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(expected) is not type(actual) or expected != actual:
        return f"{path or 'value'}: case has {_short(expected)}, spec gives {_short(actual)}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def compare(case: Mapping[str, Any], **computed: Mapping[str, Any]) -> Outcome:
    """Compare recomputed sections (intermediates=..., outputs=...) with the case."""
    for section, values in computed.items():
        found = first_difference(case.get(section), to_plain(values), section)
        if found:
            return Outcome(False, found)
    return AGREED


def expect_rejection(case: Mapping[str, Any], call: Callable[[], object]) -> Outcome:
    """An invalid case agrees iff the consumer raises the declared failure class,
    citing (if it cites one) a requirement the case lists."""
    failure = case.get("failure") or {}
    expected = failure.get("class")
    try:
        call()
    except SpecError as exc:
        if exc.failure_class != expected:
            return Outcome(False, f"rejected as {exc.failure_class} ({exc}), "
                                  f"case expects {expected}")
        if exc.requirement is not None and exc.requirement not in case.get("requirements", ()):
            return Outcome(False, f"rejected citing {exc.requirement}, which the case "
                                  f"does not list")
        return AGREED
    return Outcome(False, f"accepted, case expects failure class {expected}")


Verifier = Callable[[Mapping[str, Any], Mapping[str, Any]], Outcome]


def run_verifier(verify: Verifier, header: Mapping[str, Any],
                 case: Mapping[str, Any]) -> Outcome:
    """Run one case; a malformed case (or an unexpected error) is a disagreement."""
    try:
        return verify(header, case)
    except SpecError as exc:
        return Outcome(False, f"unexpected rejection: {exc.failure_class}: {exc}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Outcome(False, f"malformed case: {type(exc).__name__}: {exc}")


def iter_cases(plain: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    cases = plain.get("cases")
    if not isinstance(cases, list):
        raise ValueError("the file has no list of cases")
    for case in cases:
        if not isinstance(case, dict):
            raise ValueError("a case is not a mapping")
        yield case
