"""Where envelope payloads live: a small interface with a file backend beside SQLite.

A payload is opaque STREAM ciphertext of any size (ENV-23), written once as it arrives
and read back as it is served, so neither direction holds more than one piece in memory.

    class PayloadStore(Protocol):
        def writer(self, name: str) -> PayloadWriter   # a new payload, not visible yet
        def reader(self, name: str) -> PayloadReader | None
        def delete(self, name: str) -> None            # idempotent
        def names(self) -> Iterator[str]                # for sweeping orphans

    class PayloadWriter(Protocol):                      # a context manager
        def write(self, piece: bytes) -> None
        def commit(self) -> None   # durable (fsync'ed) and visible under its name
        def abort(self) -> None    # discard; exiting the context without commit aborts

    class PayloadReader(Protocol):                      # a context manager
        size: int
        def read(self, n: int) -> bytes                 # b"" at the end

`name` is a message id in base64url (ENV-9), so it is safe as a file name. The server
marks a message deliverable only after commit() returns (ENV-26: durable before it
answers), and deletes the payload once every addressed device acknowledged it (ENV-16).
A database backend (PostgreSQL) implements the same three classes over its own storage.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PARTIAL = ".partial-"


class PayloadWriter(Protocol):
    def __enter__(self) -> Self: ...
    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None: ...
    def write(self, piece: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class PayloadReader(Protocol):
    size: int

    def __enter__(self) -> Self: ...
    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None: ...
    def read(self, n: int) -> bytes: ...


class PayloadStore(Protocol):
    def writer(self, name: str) -> PayloadWriter: ...
    def reader(self, name: str) -> PayloadReader | None: ...
    def delete(self, name: str) -> None: ...
    def names(self) -> Iterator[str]: ...


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"not a payload name: {name!r}")
    return name


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileWriter:
    """Writes to a private temporary file; commit fsyncs it, renames it into place and
    fsyncs the directory, so a committed payload survives a crash and a partial one is
    never visible under its name."""

    def __init__(self, directory: Path, name: str) -> None:
        self._final = directory / name
        self._partial = directory / f"{name}{_PARTIAL}{secrets.token_hex(8)}"
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._done = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self._done:
            self.abort()

    def write(self, piece: bytes) -> None:
        view = memoryview(piece)
        while view:
            written = self._file.write(view)
            view = view[written or 0:]

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self._final)
        _fsync_directory(self._final.parent)
        self._done = True

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._partial.unlink()
        self._done = True


class FileReader:
    def __init__(self, path: Path) -> None:
        self._file = path.open("rb", buffering=0)
        self.size = os.fstat(self._file.fileno()).st_size

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._file.close()

    def read(self, n: int) -> bytes:
        return self._file.read(n) or b""


class FilePayloadStore:
    """One file per payload in a private directory beside the database (mode 0700,
    files 0600), named by message id."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.directory = directory
        for stale in directory.glob(f"*{_PARTIAL}*"):  # uploads a crash interrupted
            stale.unlink()

    @classmethod
    def beside(cls, db_path: Path) -> FilePayloadStore:
        return cls(db_path.with_name(db_path.name + ".payloads"))

    def writer(self, name: str) -> FileWriter:
        return FileWriter(self.directory, _check_name(name))

    def reader(self, name: str) -> FileReader | None:
        try:
            return FileReader(self.directory / _check_name(name))
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / _check_name(name)).unlink()

    def names(self) -> Iterator[str]:
        for path in self.directory.iterdir():
            if NAME.match(path.name):
                yield path.name
