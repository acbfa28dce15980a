"""Storage of the hashchain flow, in the reference server's SQLite database.

It shares the Store's connection, lock and `BEGIN IMMEDIATE` transactions, so

- appends are serialised: each runs in one write transaction that reads the head and
  inserts the next position, and the primary key on `position` makes a second entry at one
  position impossible (HC-22);
- an append is durable before it is acknowledged: the transaction commits under WAL with
  synchronous=FULL before the route answers (HC-22);
- a keypair publication and its chain entry commit together (HC-29): the entry is appended
  by a hook the Store runs inside the publication's own transaction;
- a KeyInit is marked served in the transaction that selects it, so two concurrent fetches
  never get the same one (HC-27).

The keyserver's Ed25519 seed is a server secret, sealed at rest (sealed_secrets.py); the
log's origin is created with entry 0 and kept in `hashchain_meta`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from keyflows.reference.sealed_secrets import ServerSecrets
from keyflows.reference.store import Store, canonical_json
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec import primitives
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode_exact
from keyflows.spec.errors import ReplayError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hashchain_meta (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS hashchain_entries (
        position INTEGER PRIMARY KEY,
        entry BLOB NOT NULL,
        hash BLOB NOT NULL
    )""",
    # The current UID of each identity.
    """CREATE TABLE IF NOT EXISTS hashchain_uids (
        identity TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        record_hash BLOB NOT NULL,
        uid TEXT NOT NULL
    ) WITHOUT ROWID""",
    # The repository: every UID ever accepted, sealed, by its public record index (HC-24).
    """CREATE TABLE IF NOT EXISTS hashchain_repository (
        record_index BLOB PRIMARY KEY,
        identity TEXT NOT NULL,
        position INTEGER NOT NULL,
        sealed BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS hashchain_repository_identity
        ON hashchain_repository (identity, position)""",
    # state: 0 pending, 1 served, 2 flushed. Rows stay, so a key_id is never reused (HC-26).
    """CREATE TABLE IF NOT EXISTS hashchain_keyinits (
        key_id BLOB PRIMARY KEY,
        identity TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        keyinit TEXT NOT NULL,
        state INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS hashchain_keyinits_pending
        ON hashchain_keyinits (identity, state, not_after)""",
    """CREATE TABLE IF NOT EXISTS hashchain_flush_nonces (
        nonce BLOB PRIMARY KEY,
        identity TEXT NOT NULL,
        timestamp INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

PENDING, SERVED, FLUSHED = 0, 1, 2


LOG_KEY_SECRET = "hashchain.log-key"


def move_clear_seed(store: Store, secrets: ServerSecrets) -> None:
    """A database written before server secrets were sealed kept the log key in the clear
    in hashchain_meta: seal it, then erase the row (secure_delete) and the WAL's copy."""
    row = store._read(lambda db: db.execute(
        "SELECT value FROM hashchain_meta WHERE name = 'server_seed'").fetchone())
    if row is None:
        return
    if secrets.get(LOG_KEY_SECRET) is None:
        secrets.put(LOG_KEY_SECRET, bytes(row[0]))
    with store._write() as db:
        db.execute("DELETE FROM hashchain_meta WHERE name = 'server_seed'")
    store.checkpoint()


class UnknownIdentity(Exception):
    """The identity has no UID here (answered 404)."""


@dataclass(frozen=True)
class Appended:
    position: int
    entry: bytes
    record_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class Head:
    head: hc.SignedHead
    entry: bytes


class HashchainStore:
    """The chain, the UID repository and the KeyInit pool on top of the reference Store."""

    def __init__(self, store: Store, *, origin: str, server_seed: bytes,
                 domains: tuple[str, ...], random: RandomSource = os.urandom) -> None:
        self.store = store
        self.origin = origin
        self.server_seed = server_seed
        self.server_key = primitives.ed25519_public_key(server_seed)
        self.domains = domains
        self.random = random

    @classmethod
    def attach(cls, store: Store, *, secrets: ServerSecrets, origin: str,
               domains: Sequence[str], random: RandomSource = os.urandom) -> HashchainStore:
        """Create the tables, make entry 0 on first use, and hook publication logging."""
        hc.check_origin(origin)
        with store._write() as db:
            for statement in SCHEMA:
                db.execute(statement)
        move_clear_seed(store, secrets)
        seed = secrets.get_or_create(LOG_KEY_SECRET, lambda: random(32))
        with store._write() as db:
            rows = dict(db.execute("SELECT name, value FROM hashchain_meta").fetchall())
            if "origin" not in rows:
                entry = hc.build_server_key_entry(
                    origin=origin, position=0, new_key=primitives.ed25519_public_key(seed),
                    signer_seed=seed, nonce=random(hc.NONCE_LEN), prev_hash=hc.ZERO_HASH)
                db.execute("INSERT INTO hashchain_meta (name, value) VALUES (?, ?)",
                           ("origin", origin.encode("ascii")))
                db.execute("INSERT INTO hashchain_entries (position, entry, hash) VALUES (0, ?, ?)",
                           (entry, hc.entry_hash(entry)))
                rows = {"origin": origin.encode("ascii")}
        # The stored origin wins: old signatures cover it.
        self = cls(store, origin=bytes(rows["origin"]).decode("ascii"),
                   server_seed=seed, domains=tuple(domains), random=random)
        store.publication_hooks.append(self._log_publication)
        return self

    # --- reads ---------------------------------------------------------------------------

    def head(self, now: int) -> Head:
        """The last entry and a head over it, signed now (HC-8)."""
        row = self.store._read(lambda db: db.execute(
            "SELECT position, entry, hash FROM hashchain_entries ORDER BY position DESC LIMIT 1"
        ).fetchone())
        position, entry, digest = int(row[0]), bytes(row[1]), bytes(row[2])
        return Head(head=self._sign_head(position, digest, now), entry=entry)

    def _sign_head(self, position: int, digest: bytes, now: int) -> hc.SignedHead:
        return hc.sign_head(origin=self.origin, position=position, head_hash=digest,
                            timestamp=now, server_seed=self.server_seed)

    def entries(self, start: int, end: int, now: int) -> tuple[list[bytes], hc.SignedHead] | None:
        """Entries start..end (inclusive, clamped to the head) and a head at or after them,
        read in one transaction so the two agree (HC-23); None if start is past the head."""
        def query(db: sqlite3.Connection) -> tuple[list[bytes], int, bytes] | None:
            last = db.execute("SELECT position, hash FROM hashchain_entries"
                              " ORDER BY position DESC LIMIT 1").fetchone()
            if start > int(last[0]):
                return None
            rows = db.execute("SELECT entry FROM hashchain_entries WHERE position BETWEEN ? AND ?"
                              " ORDER BY position", (start, end)).fetchall()
            return [bytes(r[0]) for r in rows], int(last[0]), bytes(last[1])

        found = self.store._read(query)
        if found is None:
            return None
        rows, position, digest = found
        return rows, self._sign_head(position, digest, now)

    def lookup(self, identity: str) -> list[int]:
        rows = self.store._read(lambda db: db.execute(
            "SELECT position FROM hashchain_repository WHERE identity = ? ORDER BY position",
            (identity,)).fetchall())
        return [int(r[0]) for r in rows]

    def fetch_uid(self, record_index: bytes) -> tuple[int, bytes, bytes] | None:
        """(position, entry, sealed UID) of a repository record."""
        def query(db: sqlite3.Connection) -> tuple[int, bytes, bytes] | None:
            row = db.execute("SELECT position, sealed FROM hashchain_repository"
                             " WHERE record_index = ?", (record_index,)).fetchone()
            if row is None:
                return None
            entry = db.execute("SELECT entry FROM hashchain_entries WHERE position = ?",
                               (int(row[0]),)).fetchone()
            return int(row[0]), bytes(entry[0]), bytes(row[1])

        return self.store._read(query)

    def current_uid(self, identity: str) -> hc.Uid | None:
        row = self.store._read(lambda db: db.execute(
            "SELECT uid FROM hashchain_uids WHERE identity = ?", (identity,)).fetchone())
        return None if row is None else hc.parse_uid(json.loads(row[0]))

    # --- appends -----------------------------------------------------------------------------

    def _append(self, db: sqlite3.Connection, entry_type: int, subject: bytes,
                record_hash: bytes) -> tuple[int, bytes]:
        """Append one record entry inside the caller's write transaction (HC-22)."""
        last = db.execute("SELECT position, hash FROM hashchain_entries"
                          " ORDER BY position DESC LIMIT 1").fetchone()
        position = int(last[0]) + 1
        built = hc.build_record_entry(entry_type=entry_type, subject=subject,
                                      record_hash=record_hash, nonce=self.random(hc.NONCE_LEN),
                                      prev_hash=bytes(last[1]))
        db.execute("INSERT INTO hashchain_entries (position, entry, hash) VALUES (?, ?, ?)",
                   (position, built.entry, built.entry_hash))
        return position, built.entry

    def _check_last_entry(self, db: sqlite3.Connection, last: hc.LastEntry) -> None:
        head = db.execute("SELECT max(position) FROM hashchain_entries").fetchone()
        row = db.execute("SELECT hash FROM hashchain_entries WHERE position = ?",
                         (last.position,)).fetchone()
        hc.check_last_entry(last, hash_at=None if row is None else bytes(row[0]),
                            head_position=int(head[0]))

    def _record_uid(self, db: sqlite3.Connection, uid: hc.Uid, record_hash: bytes) -> Appended:
        identity = uid.content.identity
        position, entry = self._append(db, hc.TYPE_UID, identity.encode("ascii"), record_hash)
        db.execute("INSERT INTO hashchain_uids (identity, position, record_hash, uid)"
                   " VALUES (?, ?, ?, ?) ON CONFLICT (identity) DO UPDATE SET"
                   " position = excluded.position, record_hash = excluded.record_hash,"
                   " uid = excluded.uid",
                   (identity, position, record_hash, canonical_json(hc.uid_to_wire(uid))))
        db.execute("INSERT INTO hashchain_repository (record_index, identity, position, sealed)"
                   " VALUES (?, ?, ?, ?)",
                   (hc.record_index_of(record_hash), identity, position, hc.seal_uid(uid)))
        reply = hc.sign_uid_reply(origin=self.origin, position=position, entry=entry,
                                  record_hash=record_hash, server_seed=self.server_seed)
        return Appended(position=position, entry=entry, record_hash=record_hash,
                        signature=reply.signature)

    def create_uid(self, uid: hc.Uid, record_hash: bytes) -> Appended:
        """Steps 8-9: a new identity (HC-19, HC-20, HC-21)."""
        with self.store._write() as db:
            exists = db.execute("SELECT 1 FROM hashchain_uids WHERE identity = ?",
                                (uid.content.identity,)).fetchone()
            if exists is not None:
                raise ReplayError("this identity already has a UID", requirement="HC-20")
            self._check_last_entry(db, uid.content.last_entry)
            return self._record_uid(db, uid, record_hash)

    def update_uid(self, uid: hc.Uid, now: int) -> Appended:
        """Steps 8-9: an update, verified against the current UID inside the transaction,
        so two updates racing from the same UID cannot both chain to it (HC-17, HC-20)."""
        with self.store._write() as db:
            row = db.execute("SELECT uid FROM hashchain_uids WHERE identity = ?",
                             (uid.content.identity,)).fetchone()
            if row is None:
                raise UnknownIdentity(uid.content.identity)
            previous = hc.parse_uid(json.loads(row[0]))
            record_hash = hc.verify_uid_update(uid, previous, now=now, domains=self.domains)
            self._check_last_entry(db, uid.content.last_entry)
            return self._record_uid(db, uid, record_hash)

    def _log_publication(self, db: sqlite3.Connection, user_id: str, client_id: str,
                         key_version: int, record_text: str) -> None:
        """HC-29: the publication's entry, in the publication's own transaction."""
        record = json.loads(record_text)
        keys = record["public_keys"]
        record_hash = hc.publication_record_hash(
            user_id, client_id, key_version,
            b64url_decode_exact(keys["x25519"], 32, field="x25519"),
            b64url_decode_exact(keys["ed25519"], 32, field="ed25519"),
            b64url_decode_exact(record["binding_signature"], 64, field="binding_signature"))
        self._append(db, hc.TYPE_PUBLICATION, hc.publication_subject(user_id, client_id),
                     record_hash)

    # --- KeyInits ---------------------------------------------------------------------------

    def _sigkey_of(self, db: sqlite3.Connection, identity: str) -> bytes:
        row = db.execute("SELECT uid FROM hashchain_uids WHERE identity = ?",
                         (identity,)).fetchone()
        if row is None:
            raise UnknownIdentity(identity)
        return hc.parse_uid(json.loads(row[0])).content.sigkey

    def add_keyinits(self, identity: str, keyinits: Sequence[hc.KeyInit], now: int) -> int:
        """HC-25, HC-26: all or nothing, each signed by the current SIGKEY, key_ids new."""
        with self.store._write() as db:
            sigkey = self._sigkey_of(db, identity)
            seen: set[bytes] = set()
            for ki in keyinits:
                hc.verify_keyinit(ki, identity=identity, current_sigkey=sigkey, now=now)
                known = db.execute("SELECT 1 FROM hashchain_keyinits WHERE key_id = ?",
                                   (ki.key_id,)).fetchone()
                if known is not None or ki.key_id in seen:
                    raise ReplayError("a KeyInit key_id was published before",
                                      requirement="HC-26")
                seen.add(ki.key_id)
            for ki in keyinits:
                db.execute("INSERT INTO hashchain_keyinits (key_id, identity, not_before,"
                           " not_after, keyinit) VALUES (?, ?, ?, ?, ?)",
                           (ki.key_id, identity, ki.not_before, ki.not_after,
                            canonical_json(hc.keyinit_to_wire(ki))))
            return len(keyinits)

    def take_keyinit(self, identity: str, now: int) -> str | None:
        """HC-27: select and mark served in one write transaction: never twice."""
        with self.store._write() as db:
            if db.execute("SELECT 1 FROM hashchain_uids WHERE identity = ?",
                          (identity,)).fetchone() is None:
                raise UnknownIdentity(identity)
            row = db.execute("SELECT key_id, keyinit FROM hashchain_keyinits"
                             " WHERE identity = ? AND state = ? AND not_before <= ?"
                             " AND not_after > ? ORDER BY not_after, key_id LIMIT 1",
                             (identity, PENDING, now, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE hashchain_keyinits SET state = ? WHERE key_id = ?",
                       (SERVED, row[0]))
            return str(row[1])

    def flush_keyinits(self, request: hc.FlushRequest, now: int) -> int:
        """HC-28: signed by the current SIGKEY, fresh, nonce never used before."""
        with self.store._write() as db:
            sigkey = self._sigkey_of(db, request.identity)
            seen = db.execute("SELECT 1 FROM hashchain_flush_nonces WHERE nonce = ?",
                              (request.nonce,)).fetchone() is not None
            hc.verify_flush(request, origin=self.origin, identity=request.identity,
                            current_sigkey=sigkey, now=now, nonce_seen=seen)
            db.execute("INSERT INTO hashchain_flush_nonces (nonce, identity, timestamp)"
                       " VALUES (?, ?, ?)", (request.nonce, request.identity, request.timestamp))
            cursor = db.execute("UPDATE hashchain_keyinits SET state = ? WHERE identity = ?"
                                " AND state = ?", (FLUSHED, request.identity, PENDING))
            return int(cursor.rowcount)
