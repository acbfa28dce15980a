"""JSON answers whose missing members fail a check with a message, not a KeyError.

A server under test may answer any shape. Checks index into answers as plain dicts and
lists; these subclasses keep that code simple while turning `answer["head"]["size"]` on
an answer without `size` into a ShapeError naming the exchange and the JSON path
("GET /v1/hashchain/head -> 200: the answer has no member 'size' at $.head"). The runner
grades a ShapeError as a failed check.
"""

from __future__ import annotations

import json
from typing import Any, SupportsIndex, overload


class ShapeError(LookupError):
    """The server's answer lacks a member or item a check needed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MissingMember(ShapeError, KeyError):
    """An object member is absent (still a KeyError for code that catches one)."""


class MissingItem(ShapeError, IndexError):
    """An array index is out of range (still an IndexError)."""


class JsonObject(dict[str, Any]):
    """A JSON object from an answer; a missing member raises MissingMember."""

    __slots__ = ("_path", "_where")

    def __init__(self, *args: Any, where: str = "", path: str = "$", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._where = where
        self._path = path

    def __missing__(self, key: str) -> Any:
        members = ", ".join(sorted(str(k) for k in self)[:12]) or "none"
        raise MissingMember(f"{self._where}: the answer has no member {key!r} at "
                            f"{self._path} (members: {members})")


class JsonArray(list[Any]):
    """A JSON array from an answer; an index out of range raises MissingItem."""

    __slots__ = ("_path", "_where")

    def __init__(self, *args: Any, where: str = "", path: str = "$") -> None:
        super().__init__(*args)
        self._where = where
        self._path = path

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        try:
            return super().__getitem__(index)
        except IndexError:
            raise MissingItem(f"{self._where}: the answer's array at {self._path} has "
                              f"{len(self)} items, no item {index}") from None


def tracked(value: Any, where: str, path: str = "$") -> Any:
    """The value with every object and array replaced by its tracking subclass."""
    if isinstance(value, dict):
        return JsonObject({k: tracked(v, where, f"{path}.{k}") for k, v in value.items()},
                          where=where, path=path)
    if isinstance(value, list):
        return JsonArray([tracked(v, where, f"{path}[{i}]") for i, v in enumerate(value)],
                         where=where, path=path)
    return value


def parse_answer(body: bytes, *, where: str) -> Any:
    """JSON from a server's answer, tracked; raises ValueError when it is not JSON (or
    nests deeper than Python's parser can follow)."""
    try:
        return tracked(json.loads(body), where)
    except RecursionError:
        raise ValueError("the JSON nests too deeply to parse") from None
