"""SQLite storage of the lock-layering flow: keystores and their working keys.

Its own connection to the server's database file (WAL lets several connections share
it), so the flow's tables live apart from the other flows'. Records are the spec's JSON
records (keyflows.spec.lock_layering), stored as canonical JSON and parsed back with the
spec's parsers, so a row that does not match the record format is caught when read.

What is stored, per LOCK-9 and LOCK-13: a keystore's controller and scenario, its
capability root key sealed under the server lock, and either the user lock key sealed
under the server lock (scenario "server-held") or the lock check (scenario "shares");
working keys sealed under the user lock. Never a share, a combined secret or a lock key
in the clear. Deleted key ids are remembered so a key id is never reused (LOCK-14).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from keyflows.reference.store import Database, canonical_json, open_connection
from keyflows.spec import lock_layering as spec

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lock_keystores (
        keystore_id TEXT NOT NULL PRIMARY KEY,
        controller TEXT NOT NULL,
        record TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lock_working_keys (
        keystore_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (keystore_id, key_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lock_deleted_keys (
        keystore_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        PRIMARY KEY (keystore_id, key_id)
    ) WITHOUT ROWID""",
)


class KeyIdTaken(Exception):
    """A freshly drawn key id is in use or was used before (astronomically unlikely)."""


class LockStore(Database):
    @classmethod
    def open(cls, path: Path) -> LockStore:
        return cls(open_connection(path, SCHEMA))

    # --- keystores ------------------------------------------------------------------------

    def add_keystore(self, record: spec.KeystoreRecord) -> None:
        with self._write() as db:
            db.execute("INSERT INTO lock_keystores (keystore_id, controller, record)"
                       " VALUES (?, ?, ?)",
                       (record.keystore_id, record.controller, canonical_json(record.to_json())))

    def get_keystore(self, keystore_id: str) -> spec.KeystoreRecord | None:
        row = self._read(lambda db: db.execute(
            "SELECT record FROM lock_keystores WHERE keystore_id = ?",
            (keystore_id,)).fetchone())
        return None if row is None else spec.parse_keystore_record(_loads(row[0]))

    # --- working keys ---------------------------------------------------------------------

    def add_key(self, record: spec.WorkingKeyRecord) -> None:
        """Store a new working key; KeyIdTaken if the id is or was in use."""
        with self._write() as db:
            used = db.execute(
                "SELECT 1 FROM lock_working_keys WHERE keystore_id = ? AND key_id = ?"
                " UNION SELECT 1 FROM lock_deleted_keys WHERE keystore_id = ? AND key_id = ?",
                (record.keystore_id, record.key_id, record.keystore_id,
                 record.key_id)).fetchone()
            if used is not None:
                raise KeyIdTaken(record.key_id)
            db.execute("INSERT INTO lock_working_keys (keystore_id, key_id, record)"
                       " VALUES (?, ?, ?)",
                       (record.keystore_id, record.key_id, canonical_json(record.to_json())))

    def get_key(self, keystore_id: str, key_id: str) -> spec.WorkingKeyRecord | None:
        row = self._read(lambda db: db.execute(
            "SELECT record FROM lock_working_keys WHERE keystore_id = ? AND key_id = ?",
            (keystore_id, key_id)).fetchone())
        return None if row is None else spec.parse_working_key_record(_loads(row[0]))

    def list_keys(self, keystore_id: str) -> list[spec.WorkingKeyRecord]:
        rows = self._read(lambda db: db.execute(
            "SELECT record FROM lock_working_keys WHERE keystore_id = ? ORDER BY key_id",
            (keystore_id,)).fetchall())
        return [spec.parse_working_key_record(_loads(r[0])) for r in rows]

    def delete_key(self, keystore_id: str, key_id: str) -> bool:
        """Delete a key and remember its id; False if there was none."""
        with self._write() as db:
            gone = db.execute("DELETE FROM lock_working_keys WHERE keystore_id = ? AND"
                              " key_id = ?", (keystore_id, key_id)).rowcount
            if gone:
                db.execute("INSERT OR IGNORE INTO lock_deleted_keys (keystore_id, key_id)"
                           " VALUES (?, ?)", (keystore_id, key_id))
            return bool(gone)


def _loads(text: object) -> object:
    return json.loads(str(text))
