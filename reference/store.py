"""Storage of the reference server: SQLite (the embedded default) or PostgreSQL.

WAL journal with synchronous=FULL: a write acknowledged to a client survives a crash or
power loss. One connection guarded by a lock serves every thread of the process, and each
write runs in a `BEGIN IMMEDIATE` transaction, so two publications for the same
(user, client) — even from two processes sharing the file — are serialised and cannot
both win the version check (KP-8).

Records are stored as canonical JSON text and served back byte for byte (KP-9).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from keyflows.reference import envelope_store
from keyflows.reference.postgres import (
    PostgresBackend,
    PostgresError,
    Transaction,
    is_postgres_url,
)

T = TypeVar("T")

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS keypair_records (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (user_id, client_id)
    ) WITHOUT ROWID""",
    # The version of the last deleted record per (user, client): a deleted version can
    # never be published again (KP-8), so a replayed old record stays refused.
    """CREATE TABLE IF NOT EXISTS keypair_tombstones (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        last_version INTEGER NOT NULL,
        PRIMARY KEY (user_id, client_id)
    ) WITHOUT ROWID""",
    *envelope_store.SCHEMA,
)


class StoreError(Exception):
    """The database cannot be opened or used; the message is one line."""


def canonical_json(obj: Any) -> str:
    """The stored text form of a record: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


DATABASE_FILE_SUFFIXES = ("", "-wal", "-shm")


def prepare_database_file(path: Path) -> None:
    """Create the database file with mode 0600, or refuse one that group or others can
    access: the files hold every record, queue and digest of the server. SQLite gives its
    -wal and -shm files the mode of the database file; any existing one is checked too."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open database {str(path)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    for suffix in DATABASE_FILE_SUFFIXES:
        check_private_file(Path(str(path) + suffix))


def check_private_file(path: Path) -> None:
    """A regular file that group and others cannot access (absent is fine)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot inspect {str(path)!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"database {str(path)!r} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise StoreError(f"database file {str(path)!r} is accessible by group or others"
                         f" (mode {mode:04o}); run: chmod 600 {path}")


def add_missing_columns(connection: sqlite3.Connection,
                        added: Sequence[tuple[str, str, str]]) -> None:
    """Columns added to a table after databases were created with it: (table, column,
    definition). Run before the schema, so its indexes may use them."""
    for table, column, definition in added:
        columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if columns and column not in columns:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def open_connection(target: Path | str, schema: Sequence[str],
                    added_columns: Sequence[tuple[str, str, str]] = ()) -> Backend:
    """The database behind a store: a postgresql:// URL (postgres.py), else an SQLite file,
    with `schema` created and `added_columns` added to older tables."""
    if is_postgres_url(target):
        try:
            return PostgresBackend.open(str(target), schema, added_columns)
        except PostgresError as exc:
            raise StoreError(str(exc)) from None
    return SqliteBackend.open(Path(target), schema, added_columns)


class Backend(Protocol):
    dialect: str
    reads_inline: bool

    def write(self) -> AbstractContextManager[Any]: ...

    def read(self, query: Callable[[Any], T]) -> T: ...

    def checkpoint(self) -> None: ...

    def close(self) -> None: ...


class SqliteBackend:
    """SQLite under WAL: one write connection shared by every thread, each write in one
    IMMEDIATE transaction under a lock (the write lock is taken before anything is read);
    reads on a connection of their own per thread, without the lock.

    WAL lets readers run beside the writer without waiting for it, so a short read is
    cheap enough to run on the event loop itself (`reads_inline`): no thread hop, and no
    wait behind a write's fsync."""

    dialect = "sqlite"
    reads_inline = True

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._path = str(connection.execute("PRAGMA database_list").fetchone()[2])
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    @classmethod
    def open(cls, path: Path, schema: Sequence[str],
             added_columns: Sequence[tuple[str, str, str]] = ()) -> SqliteBackend:
        """Open the database file in WAL mode with synchronous=FULL and create `schema`.

        Several connections (one per store) may share the file: WAL lets them. Deleted rows
        are overwritten (secure_delete), so what a row held does not linger in free pages."""
        prepare_database_file(path)
        try:
            connection = sqlite3.connect(str(path), isolation_level=None, timeout=30,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {str(path)!r}: {exc}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"database {str(path)!r} cannot use WAL (journal mode {mode})")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA secure_delete=ON")
            add_missing_columns(connection, added_columns)
            for statement in schema:
                connection.execute(statement)
        except sqlite3.Error as exc:
            connection.close()
            raise StoreError(f"cannot use database {str(path)!r}: {exc}") from None
        except StoreError:
            connection.close()
            raise
        return cls(connection)

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._open_reader()
        return query(reader)

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(self._path, isolation_level=None, timeout=30,
                                 check_same_thread=False)
        reader.execute("PRAGMA query_only=ON")
        with self._lock:
            self._readers.append(reader)
        self._local.reader = reader
        return reader

    def checkpoint(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Database:
    """What every store is built on (announced to the flows; keep to it):

        with db.write() as tx:          # one write transaction, serialised with every
            tx.execute(sql, params)     # other writer of the database (all processes);
            tx.executemany(sql, rows)   # committed on exit, rolled back on an exception
        db.read(lambda tx: tx.execute(sql, params).fetchone())   # outside any write
        db.reads_inline                 # True: a short read may run on the event loop
        db.add_missing_columns([(table, column, definition)])    # migrations

    SQL is the SQLite dialect with `?` placeholders, portable to PostgreSQL (postgres.py
    translates it): no PRAGMA, no rowid, no 2-argument max()/min(), JSON functions only
    as envelope_store uses them. A cursor offers fetchone, fetchall and rowcount."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.dialect = backend.dialect
        self.reads_inline = backend.reads_inline

    def close(self) -> None:
        self._backend.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on exit, rolled back on an error. (Typed as
        an sqlite3.Connection; on PostgreSQL it is postgres.Transaction, which offers the
        same execute / executemany.)"""
        with self._backend.write() as tx:
            yield tx

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on this thread's read connection, outside any write transaction
        (each statement sees the last committed state)."""
        return self._backend.read(query)

    def columns(self, tx: sqlite3.Connection, table: str) -> set[str]:
        """The column names of `table` (empty if there is no such table)."""
        if self.dialect == "postgresql":
            return PostgresBackend.columns_in(cast(Transaction, tx), table)
        return {str(row[1]) for row in tx.execute(f"PRAGMA table_info({table})")}

    def add_missing_columns(self, added: Sequence[tuple[str, str, str]]) -> None:
        """Add columns a table gained after databases were created with it."""
        with self.write() as tx:
            for table, column, definition in added:
                columns = self.columns(tx, table)
                if columns and column not in columns:
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def checkpoint(self) -> None:
        """Copy SQLite's WAL into the database file and empty it (after erasing a
        secret); nothing to do on PostgreSQL."""
        self._backend.checkpoint()

    # The names the flows' stores use today.
    _write = write
    _read = read


class Store(Database):
    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        # Run inside each publication's transaction, so what they write (the hashchain
        # flow's log entry, HC-29) commits or rolls back with the record.
        self.publication_hooks: list[
            Callable[[sqlite3.Connection, str, str, int, str], None]] = []
        # Run inside each deletion's transaction (the key directory's removed value).
        self.deletion_hooks: list[Callable[[sqlite3.Connection, str, str], None]] = []
        # Run inside each device list's transaction, with its signed bytes (the same).
        self.device_list_hooks: list[Callable[[sqlite3.Connection, str, str, bytes], None]] = []
        # Run inside the transaction that accepts a UID of the hashchain flow (HC-19):
        # (db, identity, record_hash, uid_json), uid_json the canonical JSON of the UID.
        self.uid_hooks: list[Callable[[sqlite3.Connection, str, bytes, str], None]] = []

    @classmethod
    def open(cls, target: Path | str) -> Store:
        """The store on an SQLite file or a postgresql:// database."""
        return cls(open_connection(target, SCHEMA, envelope_store.ADDED_COLUMNS))

    # --- envelope (its queries live in envelope_store.py) ------------------------------

    def envelope(self) -> envelope_store.EnvelopeTables:
        """The envelope flow's tables, on this store's connection and transactions."""
        return envelope_store.EnvelopeTables(self._write, self._read, self.device_list_hooks)

    def journal_mode(self) -> str:
        if self.dialect != "sqlite":
            return self.dialect
        return str(self._read(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]))

    # --- keypair-publication -----------------------------------------------------------

    def put_keypair(self, user_id: str, client_id: str, key_version: int, record: str,
                    decide: Callable[[str | None, int | None], None]) -> bool:
        """Store a record; True if created, False if it replaced one.

        `decide(live_record, last_deleted_version)` is the spec's decision over the stored
        state (KP-8, KP-15 .. KP-18); it runs inside the write transaction and its
        rejection leaves the state unchanged.
        """
        with self._write() as db:
            row = db.execute("SELECT record FROM keypair_records"
                             " WHERE user_id = ? AND client_id = ?",
                             (user_id, client_id)).fetchone()
            tomb = db.execute("SELECT last_version FROM keypair_tombstones"
                              " WHERE user_id = ? AND client_id = ?",
                              (user_id, client_id)).fetchone()
            decide(None if row is None else str(row[0]), None if tomb is None else int(tomb[0]))
            db.execute("INSERT INTO keypair_records (user_id, client_id, key_version, record)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, client_id) DO UPDATE SET"
                       " key_version = excluded.key_version, record = excluded.record",
                       (user_id, client_id, key_version, record))
            for hook in self.publication_hooks:
                hook(db, user_id, client_id, key_version, record)
            return row is None

    def get_keypair(self, user_id: str, client_id: str) -> str | None:
        row = self._read(lambda db: db.execute(
            "SELECT record FROM keypair_records WHERE user_id = ? AND client_id = ?",
            (user_id, client_id)).fetchone())
        return None if row is None else str(row[0])

    def get_keypair_and_version(self, user_id: str, client_id: str) -> tuple[str, int] | None:
        """The stored record and its key_version (stored beside it when it was written, so
        nobody parses the record to learn it)."""
        row = self._read(lambda db: db.execute(
            "SELECT record, key_version FROM keypair_records WHERE user_id = ? AND"
            " client_id = ?", (user_id, client_id)).fetchone())
        return None if row is None else (str(row[0]), int(row[1]))

    def delete_keypair(self, user_id: str, client_id: str,
                       decide: Callable[[str], None]) -> bool:
        """Delete a record, remembering its version; False if there was none.
        `decide(live_record)` is the spec's check of the deletion (KP-19), inside the
        transaction."""
        with self._write() as db:
            row = db.execute("SELECT key_version, record FROM keypair_records"
                             " WHERE user_id = ? AND client_id = ?",
                             (user_id, client_id)).fetchone()
            if row is None:
                return False
            decide(str(row[1]))
            db.execute("DELETE FROM keypair_records WHERE user_id = ? AND client_id = ?",
                       (user_id, client_id))
            db.execute("INSERT INTO keypair_tombstones (user_id, client_id, last_version)"
                       " VALUES (?, ?, ?) ON CONFLICT (user_id, client_id) DO UPDATE SET"
                       " last_version = CASE WHEN excluded.last_version >"
                       " keypair_tombstones.last_version THEN excluded.last_version"
                       " ELSE keypair_tombstones.last_version END",
                       (user_id, client_id, int(row[0])))
            for hook in self.deletion_hooks:
                hook(db, user_id, client_id)
            return True

    def list_apps(self, user_id: str) -> list[tuple[str, int]]:
        """(client_id, key_version) of every record of the user, sorted by client_id."""
        rows = self._read(lambda db: db.execute(
            "SELECT client_id, key_version FROM keypair_records WHERE user_id = ?"
            " ORDER BY client_id", (user_id,)).fetchall())
        return [(str(r[0]), int(r[1])) for r in rows]
