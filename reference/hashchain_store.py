"""Storage of the hashchain flow, in the reference server's database.

The log is stored as its entries and the hash of every perfect subtree of its Merkle
tree (table hashchain_nodes, keyed by level and index), so every root, inclusion proof,
consistency proof and tile is a few point lookups that keyflows.spec.hashchain_merkle
and hashchain_tiles turn into answers. Each append runs in one write transaction of the
shared Store (`BEGIN IMMEDIATE`, WAL, synchronous=FULL):

- appends are serialised: the transaction reads the size and inserts the next index,
  and the primary key on the index makes a second entry at one index impossible (HC-22);
- an append is durable before it is acknowledged, together with its nodes and the
  checkpoint the log signs for the new size (HC-22, HC-38);
- a keypair publication and its entry commit together (HC-29), through a hook the Store
  runs inside the publication's own transaction;
- a KeyInit is marked served in the transaction that selects it (HC-27).

Every decision (a second creation, an unknown identity, a stale last checkpoint, a
replayed KeyInit id or flush nonce) is a function of keyflows.spec.hashchain_uid; this
module reads what those functions need and stores what they accept. The log's signing
key is a server secret, sealed at rest (sealed_secrets.py), read in one place.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from keyflows.reference import hashchain_config
from keyflows.reference.sealed_secrets import ServerSecrets
from keyflows.reference.store import Store, canonical_json
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode_exact

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hashchain_meta (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS hashchain_log (
        idx INTEGER PRIMARY KEY,
        entry BLOB NOT NULL
    )""",
    # The hash of every perfect subtree: level 0 holds the leaf hashes (HC-5).
    """CREATE TABLE IF NOT EXISTS hashchain_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID""",
    # One checkpoint per size, signed by the log when the size is reached; `published`
    # once the witnesses were asked, its note then carrying their cosignatures (HC-43).
    """CREATE TABLE IF NOT EXISTS hashchain_checkpoints (
        size INTEGER PRIMARY KEY,
        note BLOB NOT NULL,
        published INTEGER NOT NULL DEFAULT 0
    )""",
    # The size each witness cosigned last, as the log knows it (HC-43).
    """CREATE TABLE IF NOT EXISTS hashchain_witness_sizes (
        vkey TEXT PRIMARY KEY,
        size INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # The current UID of each identity.
    """CREATE TABLE IF NOT EXISTS hashchain_uids (
        identity TEXT PRIMARY KEY,
        idx INTEGER NOT NULL,
        record_hash BLOB NOT NULL,
        uid TEXT NOT NULL
    ) WITHOUT ROWID""",
    # The repository: every UID ever accepted, sealed, by its public record index (HC-24).
    """CREATE TABLE IF NOT EXISTS hashchain_repository (
        record_index BLOB PRIMARY KEY,
        identity TEXT NOT NULL,
        idx INTEGER NOT NULL,
        sealed BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS hashchain_repository_identity
        ON hashchain_repository (identity, idx)""",
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

T = TypeVar("T")
PENDING, SERVED, FLUSHED = 0, 1, 2
LOG_KEY_SECRET = "hashchain.log-key"


def log_key_seed(secrets: ServerSecrets, random: RandomSource) -> bytes:
    """The log's Ed25519 seed: a server secret, sealed at rest, made on first use."""
    return secrets.get_or_create(LOG_KEY_SECRET, lambda: random(32))


def move_clear_seed(store: Store, secrets: ServerSecrets) -> None:
    """A database written before server secrets were sealed kept the log key in the clear
    in hashchain_meta: seal it, then erase the row (secure_delete) and the WAL's copy."""
    row = store.read(lambda db: db.execute(
        "SELECT value FROM hashchain_meta WHERE name = 'server_seed'").fetchone())
    if row is None:
        return
    if secrets.get(LOG_KEY_SECRET) is None:
        secrets.put(LOG_KEY_SECRET, bytes(row[0]))
    with store.write() as db:
        db.execute("DELETE FROM hashchain_meta WHERE name = 'server_seed'")
    store.checkpoint()


@dataclass(frozen=True)
class Appended:
    index: int
    entry: bytes
    record_hash: bytes


def node_reader(db: sqlite3.Connection) -> merkle.NodeReader:
    """A NodeReader over the stored perfect subtrees (inside the caller's transaction)."""
    def node(level: int, index: int) -> bytes:
        row = db.execute("SELECT hash FROM hashchain_nodes WHERE level = ? AND idx = ?",
                         (level, index)).fetchone()
        if row is None:
            raise LookupError(f"no stored node at level {level}, index {index}")
        return bytes(row[0])
    return node


def log_size(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT idx FROM hashchain_log ORDER BY idx DESC LIMIT 1").fetchone()
    return 0 if row is None else int(row[0]) + 1


class HashchainStore:
    """The log, the UID repository and the KeyInit pool on top of the reference Store."""

    def __init__(self, store: Store, *, origin: str, log_seed: bytes,
                 domains: tuple[str, ...], random: RandomSource = os.urandom,
                 publish_at_append: bool = False,
                 max_checkpoint_lag: int = hu.DEFAULT_MAX_CHECKPOINT_LAG) -> None:
        self.store = store
        self.max_checkpoint_lag = max_checkpoint_lag
        # With no witnesses a checkpoint is published when it is signed (HC-43 needs none).
        self.publish_at_append = publish_at_append
        self.origin = origin
        self.log_seed = log_seed
        self.log_key = primitives.ed25519_public_key(log_seed)
        self.verifier = hashchain_config.log_verifier(origin, self.log_key)
        self.domains = domains
        self.random = random

    @classmethod
    def attach(cls, store: Store, *, secrets: ServerSecrets, origin: str,
               domains: Sequence[str], random: RandomSource = os.urandom,
               publish_at_append: bool = False,
               max_checkpoint_lag: int = hu.DEFAULT_MAX_CHECKPOINT_LAG) -> HashchainStore:
        """Create the tables, make entry 0 on first use, and hook publication logging.
        The origin was checked with the configuration (hashchain_config.load)."""
        with store.write() as db:
            for statement in SCHEMA:
                db.execute(statement)
        move_clear_seed(store, secrets)
        seed = log_key_seed(secrets, random)
        with store.write() as db:
            row = db.execute("SELECT value FROM hashchain_meta WHERE name = 'origin'").fetchone()
            if row is None:
                db.execute("INSERT INTO hashchain_meta (name, value) VALUES (?, ?)",
                           ("origin", origin.encode("ascii")))
            else:
                origin = bytes(row[0]).decode("ascii")  # the stored origin wins
        self = cls(store, origin=origin, log_seed=seed, domains=tuple(domains), random=random,
                   publish_at_append=publish_at_append, max_checkpoint_lag=max_checkpoint_lag)
        with store.write() as db:
            if log_size(db) == 0:  # step 4: entry 0 introduces the log key (HC-6)
                self._append(db, hc.build_log_key_entry(
                    origin=origin, index=0, new_key=self.log_key, signer_seed=seed,
                    nonce=random(hc.NONCE_LEN)))
        store.publication_hooks.append(self._log_publication)
        return self

    # --- appends -----------------------------------------------------------------------

    def _append(self, db: sqlite3.Connection, entry: bytes) -> int:
        """Append one entry inside the caller's write transaction: the entry, the nodes it
        completes and the checkpoint of the new size, signed by the log (HC-5, HC-22).
        `entry` comes from a spec builder (hc.build_*_entry), which checks what goes into
        it and lays out the 129 bytes of its type (HC-1)."""
        index = log_size(db)
        db.execute("INSERT INTO hashchain_log (idx, entry) VALUES (?, ?)", (index, entry))
        node = node_reader(db)
        for level, i, value in merkle.completed_nodes(index, merkle.leaf_hash(entry), node):
            db.execute("INSERT INTO hashchain_nodes (level, idx, hash) VALUES (?, ?, ?)",
                       (level, i, value))
        checkpoint = note.Checkpoint(origin=self.origin, size=index + 1,
                                     root_hash=merkle.tree_root(index + 1, node))
        signed = note.sign_checkpoint(checkpoint, seeds=[self.log_seed])
        db.execute("INSERT INTO hashchain_checkpoints (size, note, published) VALUES (?, ?, ?)",
                   (index + 1, signed.to_bytes(), int(self.publish_at_append)))
        return index

    def append_entry(self, db: sqlite3.Connection, entry: bytes) -> int:
        """Append an entry laid out by a spec builder (e.g. a key-directory root,
        hc.build_directory_entry, HC-47) inside the caller's write transaction."""
        return self._append(db, entry)

    def _append_record(self, db: sqlite3.Connection, entry_type: int, subject: bytes,
                       record_hash: bytes) -> tuple[int, bytes]:
        built = hc.build_record_entry(entry_type=entry_type, subject=subject,
                                      record_hash=record_hash,
                                      nonce=self.random(hc.NONCE_LEN))
        return self._append(db, built.entry), built.entry

    def _log_publication(self, db: sqlite3.Connection, user_id: str, client_id: str,
                         key_version: int, record_text: str) -> None:
        """HC-29: the publication's entry, in the publication's own transaction."""
        record = json.loads(record_text)
        keys = record["public_keys"]
        record_hash = hu.publication_record_hash(
            user_id, client_id, key_version,
            b64url_decode_exact(keys["x25519"], 32, field="x25519"),
            b64url_decode_exact(keys["ed25519"], 32, field="ed25519"),
            b64url_decode_exact(record["binding_signature"], 64, field="binding_signature"))
        self._append_record(db, hc.TYPE_PUBLICATION, hu.publication_subject(user_id, client_id),
                            record_hash)

    # --- reads: the tree -----------------------------------------------------------------

    def size(self) -> int:
        return self.store.read(log_size)

    def tile(self, tile: tiles.Tile) -> bytes | None:
        """The bytes of a hash tile or entry bundle, None if the tree lacks it (HC-44)."""
        def query(db: sqlite3.Connection) -> bytes | None:
            if not tiles.available(tile, log_size(db)):
                return None
            if tile.level is not None:
                return tiles.tile_hashes(tile, node_reader(db))
            rows = db.execute("SELECT entry FROM hashchain_log WHERE idx >= ? AND idx < ?"
                              " ORDER BY idx", (tile.first_node, tile.first_node + tile.width)
                              ).fetchall()
            return tiles.entry_bundle([bytes(r[0]) for r in rows])

        return self.store.read(query)

    def read_tree(self, compute: Callable[[int, merkle.NodeReader], T]) -> T:
        """Run `compute(size, node)` on one consistent view of the tree."""
        return self.store.read(lambda db: compute(log_size(db), node_reader(db)))

    # --- checkpoints and witnesses ------------------------------------------------------------

    def latest_checkpoint(self) -> tuple[int, bytes, bool]:
        """(size, note, published) of the largest checkpoint."""
        row = self.store.read(lambda db: db.execute(
            "SELECT size, note, published FROM hashchain_checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone())
        return int(row[0]), bytes(row[1]), bool(row[2])

    def published_checkpoint(self) -> tuple[int, bytes] | None:
        """(size, note) of the largest checkpoint already put to the witnesses."""
        row = self.store.read(lambda db: db.execute(
            "SELECT size, note FROM hashchain_checkpoints WHERE published = 1"
            " ORDER BY size DESC LIMIT 1").fetchone())
        return None if row is None else (int(row[0]), bytes(row[1]))

    def tlog_proof(self, db: sqlite3.Connection, index: int) -> bytes:
        """The C2SP tlog-proof of entry `index` in the largest published checkpoint, read in
        the caller's transaction (note.parse_tlog_proof reads it; a key-directory lookup
        carries it). The entry must be in that checkpoint: publish first (reference/
        hashchain.tlog_proof does); else ParamsError (HC-36)."""
        row = db.execute("SELECT size, note FROM hashchain_checkpoints WHERE published = 1"
                         " ORDER BY size DESC LIMIT 1").fetchone()
        size, signed = int(row[0]), bytes(row[1])
        hashes = [merkle.range_hash(a, b, node_reader(db))
                  for a, b in merkle.inclusion_ranges(index, size)]
        return note.TlogProof(index=index, proof=tuple(hashes), checkpoint=signed).to_bytes()

    def mark_published(self, size: int, signed: bytes) -> None:
        with self.store.write() as db:
            db.execute("UPDATE hashchain_checkpoints SET note = ?, published = 1 WHERE size = ?",
                       (signed, size))

    def witness_size(self, vkey: str) -> int:
        row = self.store.read(lambda db: db.execute(
            "SELECT size FROM hashchain_witness_sizes WHERE vkey = ?", (vkey,)).fetchone())
        return 0 if row is None else int(row[0])

    def set_witness_size(self, vkey: str, size: int) -> None:
        with self.store.write() as db:
            db.execute("INSERT INTO hashchain_witness_sizes (vkey, size) VALUES (?, ?)"
                       " ON CONFLICT (vkey) DO UPDATE SET size = excluded.size", (vkey, size))

    # --- UIDs ---------------------------------------------------------------------------------

    def _current(self, db: sqlite3.Connection, identity: str) -> hu.Uid | None:
        row = db.execute("SELECT uid FROM hashchain_uids WHERE identity = ?",
                         (identity,)).fetchone()
        return None if row is None else hu.parse_uid(json.loads(row[0]))

    def current_uid(self, identity: str) -> hu.Uid | None:
        return self.store.read(lambda db: self._current(db, identity))

    def _check_last_checkpoint(self, db: sqlite3.Connection, last: hu.LastCheckpoint) -> None:
        node = node_reader(db)
        hu.check_last_checkpoint(last, root_at=lambda size: merkle.tree_root(size, node),
                                 log_size=log_size(db), max_lag=self.max_checkpoint_lag)

    def _record_uid(self, db: sqlite3.Connection, uid: hu.Uid, record_hash: bytes) -> Appended:
        identity = uid.content.identity
        index, entry = self._append_record(db, hc.TYPE_UID, identity.encode("ascii"),
                                           record_hash)
        uid_json = canonical_json(hu.uid_to_wire(uid))
        db.execute("INSERT INTO hashchain_uids (identity, idx, record_hash, uid)"
                   " VALUES (?, ?, ?, ?) ON CONFLICT (identity) DO UPDATE SET"
                   " idx = excluded.idx, record_hash = excluded.record_hash,"
                   " uid = excluded.uid",
                   (identity, index, record_hash, uid_json))
        db.execute("INSERT INTO hashchain_repository (record_index, identity, idx, sealed)"
                   " VALUES (?, ?, ?, ?)",
                   (hc.record_index_of(record_hash), identity, index, hu.seal_uid(uid)))
        for hook in self.store.uid_hooks:  # e.g. the key directory's "uid" leaf
            hook(db, identity, record_hash, uid_json)
        return Appended(index=index, entry=entry, record_hash=record_hash)

    def create_uid(self, uid: hu.Uid, record_hash: bytes) -> Appended:
        """Steps 10-11: a new identity (HC-19, HC-20, HC-21)."""
        with self.store.write() as db:
            hu.decide_create(self._current(db, uid.content.identity))
            self._check_last_checkpoint(db, uid.content.last_checkpoint)
            return self._record_uid(db, uid, record_hash)

    def update_uid(self, uid: hu.Uid, now: int) -> Appended:
        """Steps 10-11: an update, judged against the current UID inside the transaction,
        so two updates racing from the same UID cannot both chain to it (HC-17, HC-20)."""
        with self.store.write() as db:
            record_hash = hu.decide_update(self._current(db, uid.content.identity), uid,
                                           now=now, domains=self.domains)
            self._check_last_checkpoint(db, uid.content.last_checkpoint)
            return self._record_uid(db, uid, record_hash)

    def lookup(self, identity: str) -> list[int]:
        rows = self.store.read(lambda db: db.execute(
            "SELECT idx FROM hashchain_repository WHERE identity = ? ORDER BY idx",
            (identity,)).fetchall())
        return [int(r[0]) for r in rows]

    def fetch_uid(self, record_index: bytes) -> tuple[int, bytes, bytes] | None:
        """(index, entry, sealed UID) of a repository record."""
        def query(db: sqlite3.Connection) -> tuple[int, bytes, bytes] | None:
            row = db.execute("SELECT idx, sealed FROM hashchain_repository"
                             " WHERE record_index = ?", (record_index,)).fetchone()
            if row is None:
                return None
            entry = db.execute("SELECT entry FROM hashchain_log WHERE idx = ?",
                               (int(row[0]),)).fetchone()
            return int(row[0]), bytes(entry[0]), bytes(row[1])

        return self.store.read(query)

    # --- KeyInits ---------------------------------------------------------------------------

    def _sigkey_of(self, db: sqlite3.Connection, identity: str) -> bytes:
        current = self._current(db, identity)
        if current is None:
            raise hu.UnknownIdentity("this identity has no UID", requirement="HC-26")
        return current.content.sigkey

    def add_keyinits(self, identity: str, keyinits: Sequence[hu.KeyInit], now: int) -> int:
        """HC-25, HC-26: all or nothing, as the spec decides."""
        with self.store.write() as db:
            hu.decide_keyinits(keyinits, identity=identity,
                               current_sigkey=self._sigkey_of(db, identity), now=now,
                               known=lambda key_id: db.execute(
                                   "SELECT 1 FROM hashchain_keyinits WHERE key_id = ?",
                                   (key_id,)).fetchone() is not None)
            for ki in keyinits:
                db.execute("INSERT INTO hashchain_keyinits (key_id, identity, not_before,"
                           " not_after, keyinit) VALUES (?, ?, ?, ?, ?)",
                           (ki.key_id, identity, ki.not_before, ki.not_after,
                            canonical_json(hu.keyinit_to_wire(ki))))
            return len(keyinits)

    def take_keyinit(self, identity: str, now: int) -> str | None:
        """HC-27: select and mark served in one write transaction: never twice."""
        with self.store.write() as db:
            self._sigkey_of(db, identity)
            row = db.execute("SELECT key_id, keyinit FROM hashchain_keyinits"
                             " WHERE identity = ? AND state = ? AND not_before <= ?"
                             " AND not_after > ? ORDER BY not_after, key_id LIMIT 1",
                             (identity, PENDING, now, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE hashchain_keyinits SET state = ? WHERE key_id = ?",
                       (SERVED, row[0]))
            return str(row[1])

    def flush_keyinits(self, identity: str, request: hu.FlushRequest, now: int) -> int:
        """HC-28: for the path's identity, signed by its current SIGKEY, fresh, nonce never
        used before."""
        with self.store.write() as db:
            sigkey = self._sigkey_of(db, identity)
            seen = db.execute("SELECT 1 FROM hashchain_flush_nonces WHERE nonce = ?",
                              (request.nonce,)).fetchone() is not None
            hu.verify_flush(request, origin=self.origin, identity=identity,
                            current_sigkey=sigkey, now=now, nonce_seen=seen)
            db.execute("INSERT INTO hashchain_flush_nonces (nonce, identity, timestamp)"
                       " VALUES (?, ?, ?)", (request.nonce, identity, request.timestamp))
            cursor = db.execute("UPDATE hashchain_keyinits SET state = ? WHERE identity = ?"
                                " AND state = ?", (FLUSHED, identity, PENDING))
            return int(cursor.rowcount)
