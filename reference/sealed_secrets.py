"""Server secrets at rest: sealed, never in the clear in the database.

A server secret is a small value the server itself uses (the log's signing key, a
witness key, a vault key): whoever reads it can act as the server. Each one is stored in
the `server_secrets` table only as a blob sealed by a `Sealer`:

  - the configured server lock (file, AWS KMS or PKCS#11; see server_lock.py), bound by
    the lock's AAD / EncryptionContext to the secret's name and the purpose
    "server-secret" (LOCK-5), so a blob moved under another name fails to open;
  - with no server lock configured, a 32-byte key in a mode-0600 file beside the
    database (`<database>.key`, created on first use), used exactly as the file backend
    uses its master key. A reader of the database files alone learns no secret.

Each row records the sealer that made it. A server started with a server lock after
running without one re-seals the rows of the local key file under the lock on first use;
a row sealed by a sealer that is not configured refuses the start with one line.

Usage (one instance per server, `Services.secrets`):

    seed = secrets.get_or_create("hashchain.log-key", lambda: os.urandom(32))

`get_or_create` is atomic across processes sharing the database: every process gets the
value of the first one that stored it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from keyflows.reference.server_lock import (
    FileServerLock,
    ServerLock,
    ServerLockError,
    create_master_key_file,
    read_master_key_file,
)
from keyflows.reference.store import Database, StoreError
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import IDENTIFIER
from keyflows.spec.lock_layering import PURPOSE_SERVER_SECRET

KEY_FILE_SEALER = "key-file"
KEY_FILE_SUFFIX = ".key"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS server_secrets (
        name TEXT PRIMARY KEY,
        sealer TEXT NOT NULL,
        sealed BLOB NOT NULL
    )""",
)


class SecretsError(Exception):
    """A server secret cannot be sealed or opened; the message is one line."""


def default_key_file(db_path: Path) -> Path:
    """The local sealing key's file when no server lock is configured: beside the database."""
    return db_path.with_name(db_path.name + KEY_FILE_SUFFIX)


def open_key_file_sealer(path: Path) -> ServerLock:
    """The local key file's sealer, creating the 0600 file on first use. A file that
    group or others can read is refused, as the file backend refuses its master key."""
    try:
        if not path.exists():
            try:
                create_master_key_file(path)
            except ServerLockError:
                if not path.exists():  # another process may have just created it
                    raise
        return FileServerLock(read_master_key_file(path))
    except ServerLockError as exc:
        raise SecretsError(str(exc).replace("master key file", "secrets key file")) from None


def check_name(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"server secret names match ^[A-Za-z0-9._~-]{{1,64}}$: {name!r}")
    return name


class ServerSecrets:
    """Named server secrets in the database, sealed by one sealer."""

    def __init__(self, db: Database, sealer: ServerLock, *, sealer_name: str,
                 owns_sealer: bool = False, migrate_from: Path | None = None) -> None:
        self._db = db
        self._sealer = sealer
        self.sealer_name = sealer_name
        self._owns_sealer = owns_sealer
        self._migrate_from = migrate_from  # a local key file whose rows move under the lock
        with db.write() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    def get(self, name: str) -> bytes | None:
        """The secret's value, None if there is none."""
        check_name(name)
        row = self._db.read(lambda db: db.execute(
            "SELECT sealer, sealed FROM server_secrets WHERE name = ?", (name,)).fetchone())
        return None if row is None else self._open_row(name, str(row[0]), bytes(row[1]))

    def get_or_create(self, name: str, create: Callable[[], bytes]) -> bytes:
        """The secret's value; the first caller (of any process) stores create()'s."""
        existing = self.get(name)
        if existing is not None:
            return existing
        sealed = self._seal(name, create())
        with self._db.write() as db:
            db.execute("INSERT INTO server_secrets (name, sealer, sealed) VALUES (?, ?, ?)"
                       " ON CONFLICT (name) DO NOTHING", (name, self.sealer_name, sealed))
        stored = self.get(name)
        assert stored is not None
        return stored

    def put(self, name: str, value: bytes) -> None:
        """Store or replace a secret (rotation)."""
        sealed = self._seal(check_name(name), value)
        with self._db.write() as db:
            db.execute("INSERT INTO server_secrets (name, sealer, sealed) VALUES (?, ?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET sealer = excluded.sealer,"
                       " sealed = excluded.sealed", (name, self.sealer_name, sealed))

    def _seal(self, name: str, value: bytes) -> bytes:
        try:
            return self._sealer.seal(value, name, PURPOSE_SERVER_SECRET)
        except ServerLockError as exc:
            raise SecretsError(f"cannot seal server secret {name!r}: {exc}") from None

    def _open_row(self, name: str, sealer: str, sealed: bytes) -> bytes:
        if sealer == self.sealer_name:
            return _open_with(self._sealer, name, sealer, sealed)
        if sealer == KEY_FILE_SEALER and self._migrate_from is not None \
                and self._migrate_from.exists():
            # Started with a server lock after running without one: move the secret.
            local = open_key_file_sealer(self._migrate_from)
            try:
                value = _open_with(local, name, sealer, sealed)
            finally:
                local.close()
            self.put(name, value)
            return value
        raise SecretsError(f"server secret {name!r} is sealed by {sealer!r}, but this server"
                           f" is configured with {self.sealer_name!r}")

    def close(self) -> None:
        if self._owns_sealer:
            self._sealer.close()


def _open_with(sealer: ServerLock, name: str, sealer_name: str, sealed: bytes) -> bytes:
    try:
        return sealer.open(sealed, name, PURPOSE_SERVER_SECRET)
    except (SpecError, ServerLockError) as exc:
        raise SecretsError(f"server secret {name!r} does not open under {sealer_name!r}"
                           f" ({type(exc).__name__})") from None


def open_server_secrets(db: Database, *, db_path: Path | None, server_lock: ServerLock | None,
                        key_file: Path | None = None) -> ServerSecrets:
    """The server's secrets: sealed under `server_lock` when one is configured, else under
    the local key file (`key_file`, by default beside the SQLite database `db_path`; a
    database that is no file, PostgreSQL, needs a server lock or an explicit key file
    that every process shares)."""
    local = key_file or (default_key_file(db_path) if db_path is not None else None)
    try:
        if server_lock is not None:
            return ServerSecrets(db, server_lock, sealer_name=server_lock.name,
                                 migrate_from=local)
        if local is None:
            raise SecretsError("no server lock and no secrets key file: the server's"
                               " secrets would have nowhere to be sealed")
        return ServerSecrets(db, open_key_file_sealer(local), sealer_name=KEY_FILE_SEALER,
                             owns_sealer=True)
    except (sqlite3.Error, StoreError) as exc:
        raise SecretsError(f"cannot store server secrets: {exc}") from None
