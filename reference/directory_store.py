"""The key directory's tables (hashchain flow, directory steps 14-23).

Changes are queued inside the transaction that makes them (a keypair publication or
deletion, a device list, a UID) and published as the next epoch before the directory
answers anything (HC-98): each epoch's versions, map nodes and log entry are written in
one transaction, next to the log's own tables, and never rewritten, so every past epoch
keeps answering (its map is the rows with an epoch at most its own).

Every decision is the spec's: versions chain with hashchain_directory.next_version, the
map is hashchain_directory_map.apply / prove over a reader of these rows, the epoch's
number and time come from next_epoch and its log entry is laid out by epoch_entry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.reference.store import Database, canonical_json
from keyflows.spec import ecvrf
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_map as dmap

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS directory_pending (seq INTEGER NOT NULL,"
    " position BLOB NOT NULL, value_hash BLOB NOT NULL, value TEXT, PRIMARY KEY (seq))",
    "CREATE TABLE IF NOT EXISTS directory_labels (kind TEXT NOT NULL, name1 TEXT NOT NULL,"
    " name2 TEXT NOT NULL, beta BLOB NOT NULL, proof BLOB NOT NULL,"
    " PRIMARY KEY (kind, name1, name2))",
    "CREATE TABLE IF NOT EXISTS directory_epochs (epoch INTEGER NOT NULL,"
    " published_at INTEGER NOT NULL, map_root BLOB NOT NULL, log_index INTEGER NOT NULL,"
    " entry BLOB NOT NULL, PRIMARY KEY (epoch))",
    "CREATE TABLE IF NOT EXISTS directory_versions (position BLOB NOT NULL,"
    " version INTEGER NOT NULL, epoch INTEGER NOT NULL, value_hash BLOB NOT NULL,"
    " previous BLOB NOT NULL, leaf_value BLOB NOT NULL, value TEXT,"
    " PRIMARY KEY (position, version))",
    "CREATE INDEX IF NOT EXISTS directory_versions_epoch ON directory_versions"
    " (position, epoch)",
    "CREATE TABLE IF NOT EXISTS directory_nodes (depth INTEGER NOT NULL, prefix BLOB NOT NULL,"
    " epoch INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (depth, prefix, epoch))",
)

#: Appends an entry to the transparency log inside the caller's transaction (HC-47).
AppendEntry = Callable[[sqlite3.Connection, bytes], int]
Random = Callable[[int], bytes]


@dataclass(frozen=True)
class StoredEpoch:
    epoch: hd.Epoch
    log_index: int
    entry: bytes


@dataclass(frozen=True)
class StoredVersion:
    leaf: hd.LeafVersion
    value: object


class EpochMap:
    """The map of one epoch, read from the rows (hashchain_directory_map.MapReader)."""

    def __init__(self, db: sqlite3.Connection, epoch: int) -> None:
        self.db = db
        self.epoch = epoch

    def subtree(self, depth: int, prefix: bytes) -> dmap.Subtree:
        row = self.db.execute("SELECT hash FROM directory_nodes WHERE depth = ? AND prefix = ?"
                              " AND epoch <= ? ORDER BY epoch DESC LIMIT 1",
                              (depth, prefix, self.epoch)).fetchone()
        if row is not None:
            return dmap.Inner(bytes(row[0]))
        upper = dmap.upper_bound(prefix, depth)
        sql = ("SELECT DISTINCT position FROM directory_versions WHERE position >= ?"
               " AND epoch <= ?")
        params: tuple[Any, ...] = (prefix, self.epoch)
        if upper is not None:
            sql += " AND position < ?"
            params = (*params, upper)
        positions = self.db.execute(sql + " ORDER BY position LIMIT 2", params).fetchall()
        if not positions:
            return None
        if len(positions) > 1:
            raise RuntimeError("two leaves in a subtree without a stored node")  # corrupt
        position = bytes(positions[0][0])
        latest = latest_version(self.db, position, self.epoch)
        assert latest is not None
        return dmap.Leaf(position, latest.leaf.leaf_value)


def latest_version(db: sqlite3.Connection, position: bytes, epoch: int) -> StoredVersion | None:
    row = db.execute("SELECT version, epoch, value_hash, previous, value FROM directory_versions"
                     " WHERE position = ? AND epoch <= ? ORDER BY version DESC LIMIT 1",
                     (position, epoch)).fetchone()
    return None if row is None else _version(row)


def _version(row: Sequence[Any]) -> StoredVersion:
    leaf = hd.LeafVersion(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]))
    return StoredVersion(leaf, None if row[4] is None else json.loads(str(row[4])))


#: The head of the directory, in ONE statement (one snapshot, one round trip): the latest
#: epoch, whether changes wait, and the log's checkpoints an answer's proof is read in (the
#: largest published size, and whether the largest signed one is published: otherwise the
#: log's publisher puts it to the witnesses first). Every lookup reads it, never a copy
#: kept in the process, so processes sharing the database agree at once.
HEAD_SQL = (
    "SELECT epoch, published_at, map_root,"
    " CASE WHEN EXISTS (SELECT 1 FROM directory_pending) THEN 1 ELSE 0 END,"
    " (SELECT size FROM hashchain_checkpoints WHERE published = 1"
    " ORDER BY size DESC LIMIT 1),"
    " (SELECT published FROM hashchain_checkpoints ORDER BY size DESC LIMIT 1)"
    " FROM directory_epochs ORDER BY epoch DESC LIMIT 1")


@dataclass(frozen=True)
class Head:
    """What a request reads first (HC-88, HC-98): the latest epoch, whether changes wait
    for the next one, the size of the log's largest published checkpoint (0: none), and
    whether that is the log's largest checkpoint."""

    epoch: hd.Epoch
    pending: bool
    checkpoint: int
    checkpoint_current: bool


def read_head(db: sqlite3.Connection, vrf_public_key: bytes) -> Head | None:
    """The head; None before the first epoch."""
    return head_of(db.execute(HEAD_SQL).fetchone(), vrf_public_key)


def head_of(row: Sequence[Any] | None, vrf_public_key: bytes) -> Head | None:
    """The head a row of HEAD_SQL names (None: no epoch yet)."""
    if row is None:
        return None
    epoch = hd.Epoch(int(row[0]), int(row[1]), vrf_public_key, bytes(row[2]))
    published = 0 if row[4] is None else int(row[4])
    return Head(epoch, bool(row[3]), published, bool(row[5]))


def latest_epoch(db: sqlite3.Connection) -> StoredEpoch | None:
    row = db.execute("SELECT epoch FROM directory_epochs ORDER BY epoch DESC LIMIT 1").fetchone()
    return None if row is None else epoch_at(db, int(row[0]))


def epoch_at(db: sqlite3.Connection, epoch: int) -> StoredEpoch | None:
    row = db.execute("SELECT published_at, map_root, log_index, entry FROM directory_epochs"
                     " WHERE epoch = ?", (epoch,)).fetchone()
    if row is None:
        return None
    return StoredEpoch(hd.Epoch(epoch, int(row[0]), b"", bytes(row[1])), int(row[2]),
                       bytes(row[3]))


class DirectoryStore:
    """The directory on the reference Store's database, next to the log's tables."""

    def __init__(self, db: Database, *, vrf_secret_key: bytes, append_entry: AppendEntry,
                 random: Random, heartbeat: int) -> None:
        self.db = db
        # expanded once: each proof then spares a hash and a scalar multiplication
        self.vrf_key = ecvrf.expand(vrf_secret_key)
        self.vrf_public_key = self.vrf_key.public
        self.append_entry = append_entry
        self.random = random
        self.heartbeat = heartbeat
        # the last HEAD_SQL row read and the Head made from it (one tuple: threads swap it whole)
        self._last_head: tuple[Sequence[Any] | None, Head | None] = (None, None)
        with db.write() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    # --- changes (inside the transaction that makes them) ---------------------------------

    def queue(self, tx: sqlite3.Connection, label: hd.Label, value: object,
              value_bytes: bytes) -> None:
        """Step 16 (HC-83): a change, published with the next epoch: `value` as answers
        carry it (None removes) and its value bytes (step 15), both made from what the
        change's flow has just verified (its route checked the value for this label).
        Its position and value hash are computed now, in the change's transaction, so
        that publishing an epoch costs hashes only."""
        positioned = self._positioned(tx, label)
        row = tx.execute("SELECT MAX(seq) FROM directory_pending").fetchone()
        seq = 1 if row is None or row[0] is None else int(row[0]) + 1
        tx.execute("INSERT INTO directory_pending (seq, position, value_hash, value)"
                   " VALUES (?, ?, ?, ?)",
                   (seq, positioned.position, hd.value_hash(label.kind, value_bytes),
                    None if value is None else canonical_json(value)))

    @staticmethod
    def _names(label: hd.Label) -> tuple[str, str, str]:
        names = (*label.names, "")[:2]
        return label.kind, names[0], names[1]

    def _positioned(self, tx: sqlite3.Connection, label: hd.Label) -> hd.Positioned:
        """Step 14 (HC-80): the VRF proof of a label, proved once and kept (ECVRF-TAI
        proofs are deterministic, so a kept proof is the proof)."""
        found = self.known_position(tx, label)
        if found is not None:
            return found
        positioned = hd.prove_position(self.vrf_key, label)
        tx.execute("INSERT INTO directory_labels (kind, name1, name2, beta, proof)"
                   " VALUES (?, ?, ?, ?, ?)",
                   (*self._names(label), positioned.beta, positioned.proof))
        return positioned

    def known_position(self, tx: sqlite3.Connection, label: hd.Label) -> hd.Positioned | None:
        row = tx.execute("SELECT beta, proof FROM directory_labels WHERE kind = ? AND"
                         " name1 = ? AND name2 = ?", self._names(label)).fetchone()
        if row is None:
            return None
        return hd.Positioned(label=label, alpha=hd.vrf_input(label), proof=bytes(row[1]),
                             beta=bytes(row[0]))

    def positioned(self, label: hd.Label) -> hd.Positioned:
        """A lookup's VRF proof: kept for a label that changed, else proved now."""
        found = self.kept_position(label)
        return found if found is not None else hd.prove_position(self.vrf_key, label)

    def kept_position(self, label: hd.Label) -> hd.Positioned | None:
        """The kept VRF proof of a label that changed; None for any other (a short read,
        where positioned() may have to prove, which takes milliseconds)."""
        return self.db.read(lambda tx: self.known_position(tx, label))

    # --- epochs -----------------------------------------------------------------------------

    def head(self) -> Head | None:
        """The head (a short read): the one read every lookup makes before its answer.
        The row is read every time; only the Head made from it is reused while the row
        read stays the same (a Head is a function of its row alone, so it cannot be stale)."""
        row = self.db.read(lambda tx: tx.execute(HEAD_SQL).fetchone())
        last_row, last_head = self._last_head
        if row is not None and row == last_row:
            return last_head
        head = head_of(row, self.vrf_public_key)
        self._last_head = (row, head)
        return head

    def due(self, head: Head | None, now: int) -> bool:
        """HC-98: whether an epoch is due, when changes wait or the last one is a heartbeat
        old (the spec's epoch_due with interval 0: no change is answered before it is
        published)."""
        return hd.epoch_due(None if head is None else head.epoch,
                            pending=head is not None and head.pending, now=now, interval=0,
                            heartbeat=self.heartbeat)

    def publish_if_due(self, now: int) -> None:
        """HC-98: publish the next epoch if it is due, judged again inside the write
        transaction (another process may have published since the caller looked)."""
        with self.db.write() as tx:
            if self.due(read_head(tx, self.vrf_public_key), now):
                self._publish(tx, now)

    def _publish(self, tx: sqlite3.Connection, now: int) -> None:
        """Step 18 (HC-86, HC-87): apply the pending changes as the next epoch's versions,
        hash the map, and append the epoch's commitment to the log."""
        last = latest_epoch(tx)
        number, published_at = hd.next_epoch(None if last is None else last.epoch, now)
        rows = tx.execute("SELECT position, value_hash, value FROM directory_pending"
                          " ORDER BY seq").fetchall()
        leaves: dict[bytes, bytes] = {}
        for position_, value_hash, value in rows:
            position = bytes(position_)
            current = latest_version(tx, position, number)
            leaf = hd.next_version(None if current is None else current.leaf,
                                   bytes(value_hash), number)
            tx.execute("INSERT INTO directory_versions (position, version, epoch, value_hash,"
                       " previous, leaf_value, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (position, leaf.version, number, leaf.value_hash, leaf.previous,
                        leaf.leaf_value, value))
            leaves[position] = leaf.leaf_value
        update = dmap.apply(leaves, EpochMap(tx, number - 1))
        for depth, prefix, value_ in update.nodes:
            tx.execute("INSERT INTO directory_nodes (depth, prefix, epoch, hash)"
                       " VALUES (?, ?, ?, ?)", (depth, prefix, number, value_))
        epoch = hd.Epoch(number, published_at, self.vrf_public_key, update.root)
        entry = hd.epoch_entry(epoch, self.random(16))
        index = self.append_entry(tx, entry)
        tx.execute("INSERT INTO directory_epochs (epoch, published_at, map_root, log_index,"
                   " entry) VALUES (?, ?, ?, ?, ?)",
                   (number, published_at, update.root, index, entry))
        tx.execute("DELETE FROM directory_pending")

    # --- lookups ----------------------------------------------------------------------------

    def lookup(self, label: hd.Label, positioned: hd.Positioned, at_epoch: int
               ) -> tuple[StoredEpoch, StoredVersion | None, dmap.MapProof,
                          list[StoredVersion]] | None:
        """Step 19 (HC-88, HC-95): the epoch, the identity's latest version in it, the map
        proof and every version up to it; None when the epoch does not exist (yet)."""
        def read(tx: sqlite3.Connection) -> tuple[StoredEpoch, StoredVersion | None,
                                                  dmap.MapProof, list[StoredVersion]] | None:
            stored = epoch_at(tx, at_epoch)
            if stored is None:
                return None
            number = stored.epoch.epoch
            position = positioned.position
            found = latest_version(tx, position, number)
            proof = dmap.prove(position, EpochMap(tx, number))
            rows = tx.execute("SELECT version, epoch, value_hash, previous, value"
                              " FROM directory_versions WHERE position = ? AND epoch <= ?"
                              " ORDER BY version", (position, number)).fetchall()
            return stored, found, proof, [_version(r) for r in rows]

        return self.db.read(read)
