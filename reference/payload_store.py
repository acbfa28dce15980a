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
        def commit(self, tx) -> None  # durable and visible under its name, inside
                                      # the database write transaction `tx` that makes
                                      # the message deliverable (files ignore tx)
        def abort(self) -> None    # discard; exiting the context without commit aborts

    class PayloadReader(Protocol):                      # a context manager
        size: int
        def read(self, n: int) -> bytes                 # b"" at the end

`name` is a message id in base64url (ENV-9), so it is safe as a file name. The server
marks a message deliverable only after commit() returns (ENV-26: durable before it
answers), and deletes the payload once every addressed device acknowledged it (ENV-16).

Two backends: FilePayloadStore (a directory beside the SQLite file) and
DatabasePayloadStore (1 MiB rows in the server's own database, so every process serving
one PostgreSQL database sees the same payloads).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

T = TypeVar("T")

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PARTIAL = ".partial-"


class PayloadWriter(Protocol):
    def __enter__(self) -> Self: ...
    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None: ...
    def write(self, piece: bytes) -> None: ...
    def commit(self, tx: sqlite3.Connection) -> None: ...
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

    def commit(self, tx: sqlite3.Connection) -> None:
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


# --- in the database ----------------------------------------------------------------------

class Database(Protocol):
    """The part of reference.store.Database this backend uses."""

    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...


DATABASE_SCHEMA = (
    # An upload in progress or done; its rows are chunks of 1 MiB in order.
    """CREATE TABLE IF NOT EXISTS envelope_payload_uploads (
        upload TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS envelope_payload_chunks (
        upload TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (upload, seq)
    )""",
    # A committed payload: its name points at its upload.
    """CREATE TABLE IF NOT EXISTS envelope_payloads (
        name TEXT PRIMARY KEY,
        upload TEXT NOT NULL,
        size INTEGER NOT NULL
    )""",
)
DATABASE_CHUNK = 1 << 20
# An upload neither committed nor aborted after this long was cut short by a crash.
STALE_UPLOAD_SECONDS = 24 * 3600


def _drop_upload(tx: sqlite3.Connection, upload: str) -> None:
    tx.execute("DELETE FROM envelope_payload_chunks WHERE upload = ?", (upload,))
    tx.execute("DELETE FROM envelope_payload_uploads WHERE upload = ?", (upload,))


class DatabaseWriter:
    """Each 1 MiB is one write transaction under an upload id no reader knows; commit
    writes the last rows and names the upload inside the caller's transaction, so a
    partial payload is never visible and a committed one is as durable as the database."""

    def __init__(self, db: Database, name: str, clock: Callable[[], float]) -> None:
        self._db = db
        self._name = name
        self._upload = secrets.token_hex(16)
        self._buffer = bytearray()
        self._seq = 0
        self._size = 0
        self._done = False
        with db.write() as tx:
            tx.execute("INSERT INTO envelope_payload_uploads (upload, started_at) VALUES (?, ?)",
                       (self._upload, int(clock())))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self._done:
            self.abort()

    def write(self, piece: bytes) -> None:
        self._buffer += piece
        self._size += len(piece)
        while len(self._buffer) >= DATABASE_CHUNK:
            chunk = bytes(self._buffer[:DATABASE_CHUNK])
            del self._buffer[:DATABASE_CHUNK]
            with self._db.write() as tx:
                self._insert(tx, chunk)

    def _insert(self, tx: sqlite3.Connection, chunk: bytes) -> None:
        tx.execute("INSERT INTO envelope_payload_chunks (upload, seq, data) VALUES (?, ?, ?)",
                   (self._upload, self._seq, chunk))
        self._seq += 1

    def commit(self, tx: sqlite3.Connection) -> None:
        if self._buffer:
            self._insert(tx, bytes(self._buffer))
        replaced = tx.execute("SELECT upload FROM envelope_payloads WHERE name = ?",
                              (self._name,)).fetchone()
        if replaced is not None:
            _drop_upload(tx, str(replaced[0]))
            tx.execute("DELETE FROM envelope_payloads WHERE name = ?", (self._name,))
        tx.execute("INSERT INTO envelope_payloads (name, upload, size) VALUES (?, ?, ?)",
                   (self._name, self._upload, self._size))
        self._buffer.clear()
        self._done = True

    def abort(self) -> None:
        self._buffer.clear()
        with self._db.write() as tx:
            _drop_upload(tx, self._upload)
        self._done = True


class DatabaseReader:
    """Reads one chunk row at a time. A payload deleted while it is being read (every
    device acknowledged it) ends early, as its rows are gone."""

    def __init__(self, db: Database, upload: str, size: int) -> None:
        self._db = db
        self._upload = upload
        self.size = size
        self._seq = 0
        self._buffer = b""
        self._offset = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._buffer = b""

    def read(self, n: int) -> bytes:
        if self._offset == len(self._buffer):
            seq = self._seq
            row = self._db.read(lambda tx: tx.execute(
                "SELECT data FROM envelope_payload_chunks WHERE upload = ? AND seq = ?",
                (self._upload, seq)).fetchone())
            if row is None:
                return b""
            self._buffer, self._offset, self._seq = bytes(row[0]), 0, seq + 1
        piece = self._buffer[self._offset:self._offset + n]
        self._offset += len(piece)
        return piece


class DatabasePayloadStore:
    """Payloads in the server's database (PostgreSQL: shared by every process serving
    it). Uploads a crash cut short are removed once they are a day old."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        with db.write() as tx:
            for statement in DATABASE_SCHEMA:
                tx.execute(statement)
            stale = tx.execute(
                "SELECT u.upload FROM envelope_payload_uploads u WHERE u.started_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM envelope_payloads p WHERE p.upload = u.upload)",
                (int(clock()) - STALE_UPLOAD_SECONDS,)).fetchall()
            for row in stale:
                _drop_upload(tx, str(row[0]))

    def writer(self, name: str) -> DatabaseWriter:
        return DatabaseWriter(self._db, _check_name(name), self._clock)

    def reader(self, name: str) -> DatabaseReader | None:
        row: Any = self._db.read(lambda tx: tx.execute(
            "SELECT upload, size FROM envelope_payloads WHERE name = ?",
            (_check_name(name),)).fetchone())
        return None if row is None else DatabaseReader(self._db, str(row[0]), int(row[1]))

    def delete(self, name: str) -> None:
        with self._db.write() as tx:
            row = tx.execute("SELECT upload FROM envelope_payloads WHERE name = ?",
                             (_check_name(name),)).fetchone()
            if row is not None:
                _drop_upload(tx, str(row[0]))
                tx.execute("DELETE FROM envelope_payloads WHERE name = ?", (name,))

    def names(self) -> Iterator[str]:
        rows = self._db.read(lambda tx: tx.execute(
            "SELECT name FROM envelope_payloads").fetchall())
        for row in rows:
            yield str(row[0])
