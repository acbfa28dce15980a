"""Reading the project's YAML: libyaml's parser, safe types, and no repeated keys.

PyYAML keeps the last of two equal mapping keys without a word, while strict parsers
(and YAML 1.2 itself) reject the document: a file with a repeated key means different
things to different readers. Every YAML file the project ships is read through `load`.
"""

from __future__ import annotations

from typing import Any

import yaml

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (a MarkedYAMLError: it says where)."""


class StrictLoader(_Base):  # type: ignore[valid-type, misc]
    """The C safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<` merges; keys written beside it may override what it brings
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                raise DuplicateKeyError(
                    f"while constructing a mapping (first {key!r} at line {first.line + 1})",
                    node.start_mark, f"repeated key {key!r}", key_node.start_mark)
            seen[key] = key_node.start_mark
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                             StrictLoader.construct_mapping)


def load(text: str | bytes) -> Any:
    """One YAML document, as yaml.safe_load reads it, except that a repeated key in any
    mapping raises DuplicateKeyError."""
    return yaml.load(text, Loader=StrictLoader)


class YAMLFileError(ValueError):
    """A YAML file that does not parse, in one line: `NAME:LINE:COLUMN: problem`."""


def describe(exc: Exception) -> str:
    """`LINE:COLUMN: problem (context)` of a YAML error, 1-based as editors count."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or type(exc).__name__
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return " ".join(f"{where}{what}{context}".split())
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


def load_named(text: str | bytes, name: str) -> Any:
    """`load`, with any YAML error raised as one YAMLFileError line naming the file."""
    try:
        return load(text)
    except yaml.YAMLError as exc:
        raise YAMLFileError(f"{name}:{describe(exc)} (not valid YAML)") from exc
