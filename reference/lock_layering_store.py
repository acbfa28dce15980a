"""SQLite storage of the lock-layering flow: keystores and their working keys.

Its own connection to the server's database file (WAL lets several connections share
it), so the flow's tables live apart from the other flows'. Records are the spec's JSON
records (keyflows.spec.lock_layering), stored as canonical JSON and parsed back with the
spec's parsers, so a row that does not match the record format is caught when read.

What is stored, per LOCK-9 and LOCK-13: a keystore's controller and scenario, its
capability root key sealed under the server lock, and either the user lock key sealed
under the server lock (scenario "server-held") or the lock check and the sealed
unlock-grant key (scenario "shares"); working keys, each version sealed under the user
lock. Never a share, a combined secret or a lock key in the clear. Deleted key ids are
remembered so a key id is never reused (LOCK-14).

Two tables serve every server process that shares the database (LOCK-24, LOCK-26): the
revocation ids of revoked capabilities, kept until the capability would have expired, and
the nonces of signed requests, kept until their signature would be too old anyway. A
nonce is claimed by one INSERT on a primary key, so of two processes racing to accept the
same replayed request exactly one wins. The SQL is portable to PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    """CREATE TABLE IF NOT EXISTS lock_revocations (
        keystore_id TEXT NOT NULL,
        revocation_id TEXT NOT NULL,
        not_after BIGINT NOT NULL,
        PRIMARY KEY (keystore_id, revocation_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lock_request_nonces (
        nonce_id TEXT NOT NULL PRIMARY KEY,
        keep_until BIGINT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS lock_request_nonces_keep ON lock_request_nonces (keep_until)",
)


class KeyIdTaken(Exception):
    """A freshly drawn key id is in use or was used before (astronomically unlikely)."""


class LockStore(Database):
    @classmethod
    def open(cls, path: Path | str) -> LockStore:
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

    def replace_key(self, record: spec.WorkingKeyRecord) -> bool:
        """Store a rotated key record in place; False if the key is gone."""
        with self._write() as db:
            return bool(db.execute(
                "UPDATE lock_working_keys SET record = ? WHERE keystore_id = ? AND key_id = ?",
                (canonical_json(record.to_json()), record.keystore_id,
                 record.key_id)).rowcount)

    def get_key(self, keystore_id: str, key_id: str) -> spec.WorkingKeyRecord | None:
        row = self._read(lambda db: db.execute(
            "SELECT record FROM lock_working_keys WHERE keystore_id = ? AND key_id = ?",
            (keystore_id, key_id)).fetchone())
        return None if row is None else spec.parse_working_key_record(
            _loads(row[0]), sealed_in_record=None)

    def list_keys(self, keystore_id: str) -> list[spec.WorkingKeyRecord]:
        rows = self._read(lambda db: db.execute(
            "SELECT record FROM lock_working_keys WHERE keystore_id = ? ORDER BY key_id",
            (keystore_id,)).fetchall())
        return [spec.parse_working_key_record(_loads(r[0]), sealed_in_record=None)
                for r in rows]

    def delete_key(self, keystore_id: str, key_id: str) -> bool:
        """Delete a key and remember its id; False if there was none."""
        with self._write() as db:
            gone = db.execute("DELETE FROM lock_working_keys WHERE keystore_id = ? AND"
                              " key_id = ?", (keystore_id, key_id)).rowcount
            if gone:
                db.execute("INSERT INTO lock_deleted_keys (keystore_id, key_id) VALUES (?, ?)"
                           " ON CONFLICT DO NOTHING", (keystore_id, key_id))
            return bool(gone)

    # --- revocations and request nonces ------------------------------------------------------

    def revoke(self, keystore_id: str, revocation_id: bytes, not_after: int, now: int) -> None:
        """Remember a revoked capability until it would have expired (LOCK-24)."""
        with self._write() as db:
            db.execute("DELETE FROM lock_revocations WHERE not_after <= ?", (now,))
            db.execute("INSERT INTO lock_revocations (keystore_id, revocation_id, not_after)"
                       " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                       (keystore_id, revocation_id.hex(), not_after))

    def revoked_among(self, keystore_id: str, revocation_ids: Sequence[bytes]) -> set[bytes]:
        """Which of these revocation ids are revoked in this keystore."""
        if not revocation_ids:
            return set()
        marks = ", ".join("?" for _ in revocation_ids)
        rows = self._read(lambda db: db.execute(
            f"SELECT revocation_id FROM lock_revocations WHERE keystore_id = ?"
            f" AND revocation_id IN ({marks})",
            (keystore_id, *(i.hex() for i in revocation_ids))).fetchall())
        return {bytes.fromhex(r[0]) for r in rows}

    def claim_nonce(self, nonce_id: bytes, keep_until: int, now: int) -> bool:
        """Record a signed request's nonce; False if it was seen before (a replay,
        LOCK-26). Expired nonces are dropped first: their requests are too old anyway."""
        with self._write() as db:
            db.execute("DELETE FROM lock_request_nonces WHERE keep_until < ?", (now,))
            return bool(db.execute(
                "INSERT INTO lock_request_nonces (nonce_id, keep_until) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING", (nonce_id.hex(), keep_until)).rowcount)


def _loads(text: object) -> object:
    return json.loads(str(text))
