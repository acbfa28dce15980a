"""SQLite tables of the envelope flow: the device registry, queues and disclosures.

The payload of a message is stored once; each addressed device gets one delivery row
holding only its own entry (ENV-11). An acknowledged delivery leaves its device's queue
but keeps its row, now with the disclosed MAC key, until the message expires (ENV-15,
ENV-17). Message ids outlive their messages, so an envelope is accepted once (ENV-10).

`EnvelopeTables` runs on the shared Store's connection and transactions (Store.envelope()),
so a refused envelope stores nothing and two ACKs of one delivery are serialised.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from keyflows.spec.errors import BindingError, ReplayError

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS envelope_devices (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        x25519 TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID""",
    # Kept after the message expires (16 bytes each): a message id is accepted once.
    """CREATE TABLE IF NOT EXISTS envelope_message_ids (
        message_id TEXT PRIMARY KEY
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS envelope_messages (
        message_id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        payload TEXT NOT NULL,
        digest BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS envelope_messages_expiry ON envelope_messages (expires_at)",
    # seq (the rowid) is the arrival order of a device's queue (ENV-12).
    """CREATE TABLE IF NOT EXISTS envelope_deliveries (
        seq INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        entry TEXT NOT NULL,
        mac_key TEXT,
        sender TEXT NOT NULL DEFAULT '',
        UNIQUE (user_id, device_id, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS envelope_deliveries_message ON envelope_deliveries (message_id)",
    # A device's queue in arrival order, and its size per sender (the quotas), read from
    # the index alone: a queue read costs the same at 10 or 10,000 queued.
    """CREATE INDEX IF NOT EXISTS envelope_deliveries_queue
        ON envelope_deliveries (user_id, device_id, seq) WHERE mac_key IS NULL""",
    """CREATE INDEX IF NOT EXISTS envelope_deliveries_sender
        ON envelope_deliveries (user_id, device_id, sender) WHERE mac_key IS NULL""",
)
# Columns added after the first release of the tables: (table, column, definition).
ADDED_COLUMNS = (("envelope_deliveries", "sender", "TEXT NOT NULL DEFAULT ''"),)


class QueueFull(Exception):
    """A quota (API-54) would be exceeded: nothing was stored."""

    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(f"{quota} {limit}")
        self.quota = quota
        self.limit = limit

_DELIVERY_COLUMNS = (
    "SELECT d.message_id, m.sender, m.payload, m.digest, d.entry, d.mac_key, m.received_at,"
    " m.expires_at FROM envelope_deliveries d JOIN envelope_messages m"
    " ON m.message_id = d.message_id")
# ENV-19: the same columns with the payload object cut down to its nonce, so a queue read
# with payload=omit does not even load the stored ciphertext.
_HEADER_COLUMNS = _DELIVERY_COLUMNS.replace(
    "m.payload", "json_object('nonce', json_extract(m.payload, '$.nonce'))", 1)


@dataclass(frozen=True)
class StoredDelivery:
    """One device's delivery as stored: JSON texts of the payload and of its entry."""

    message_id: str
    sender: str
    payload: str
    digest: bytes
    entry: str
    mac_key: str | None
    received_at: int
    expires_at: int


def _delivery(row: Any) -> StoredDelivery:
    return StoredDelivery(message_id=str(row[0]), sender=str(row[1]), payload=str(row[2]),
                          digest=bytes(row[3]), entry=str(row[4]),
                          mac_key=None if row[5] is None else str(row[5]),
                          received_at=int(row[6]), expires_at=int(row[7]))


def _queued(db: sqlite3.Connection, user_id: str, device_id: str, limit: int,
            sender: str | None = None) -> int:
    """How many messages wait in the device's queue (from `sender` only, if given),
    counted up to `limit` on the queue indexes: a quota check costs at most `limit` steps."""
    where = "user_id = ? AND device_id = ? AND mac_key IS NULL"
    args: tuple[object, ...] = (user_id, device_id)
    if sender is not None:
        where += " AND sender = ?"
        args += (sender,)
    row = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM envelope_deliveries WHERE {where}"
                     " LIMIT ?) AS queued", (*args, limit)).fetchone()
    return int(row[0])


def _check_quotas(db: sqlite3.Connection, user_id: str, device_id: str, sender: str,
                  quotas: dict[str, int]) -> None:
    per_sender = quotas.get("queue-per-sender")
    if per_sender is not None and _queued(db, user_id, device_id, per_sender,
                                          sender) >= per_sender:
        raise QueueFull("queue-per-sender", per_sender)
    per_device = quotas.get("queue-per-device")
    if per_device is not None and _queued(db, user_id, device_id, per_device) >= per_device:
        raise QueueFull("queue-per-device", per_device)


Write = Callable[[], AbstractContextManager[sqlite3.Connection]]
Read = Callable[[Callable[[sqlite3.Connection], Any]], Any]


class EnvelopeTables:
    """The envelope flow's queries, inside the shared Store's transactions."""

    def __init__(self, write: Write, read: Read) -> None:
        self._write = write
        self._read = read

    # --- devices (step 1) -------------------------------------------------------------

    def put_device(self, user_id: str, device_id: str, x25519: str, *,
                   max_devices: int) -> str:
        """'created', 'unchanged' (the same key again), 'conflict' (another key, ENV-3)
        or 'full' (the user has max_devices devices)."""
        with self._write() as db:
            row = db.execute("SELECT x25519 FROM envelope_devices"
                             " WHERE user_id = ? AND device_id = ?",
                             (user_id, device_id)).fetchone()
            if row is not None:
                return "unchanged" if row[0] == x25519 else "conflict"
            count = db.execute("SELECT count(*) FROM envelope_devices WHERE user_id = ?",
                               (user_id,)).fetchone()[0]
            if count >= max_devices:
                return "full"
            db.execute("INSERT INTO envelope_devices (user_id, device_id, x25519)"
                       " VALUES (?, ?, ?)", (user_id, device_id, x25519))
            return "created"

    def list_devices(self, user_id: str) -> list[tuple[str, str]]:
        """(device_id, x25519) of every device of the user, sorted by device_id."""
        rows = self._read(lambda db: db.execute(
            "SELECT device_id, x25519 FROM envelope_devices WHERE user_id = ?"
            " ORDER BY device_id", (user_id,)).fetchall())
        return [(str(r[0]), str(r[1])) for r in rows]

    def has_device(self, user_id: str, device_id: str) -> bool:
        row = self._read(lambda db: db.execute(
            "SELECT 1 FROM envelope_devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id)).fetchone())
        return row is not None

    def delete_device(self, user_id: str, device_id: str) -> bool:
        """Remove a device with its queue and records; False if there was none."""
        with self._write() as db:
            gone = db.execute("DELETE FROM envelope_devices WHERE user_id = ? AND"
                              " device_id = ?", (user_id, device_id)).rowcount
            db.execute("DELETE FROM envelope_deliveries WHERE user_id = ? AND device_id = ?",
                       (user_id, device_id))
            return bool(gone)

    # --- messages (steps 8, 9, 12) ----------------------------------------------------------

    def put_message(self, *, message_id: str, sender: str, payload: str, digest: bytes,
                    entries: list[tuple[str, str, str]], received_at: int,
                    expires_at: int, quotas: dict[str, int] | None = None) -> None:
        """Store the payload once and one delivery per (user_id, device_id, entry JSON).

        Raises the spec's BindingError naming a device that is not registered and its
        ReplayError for a message id seen before (ENV-10), and QueueFull when a device's
        queue holds quotas["queue-per-device"] messages, or quotas["queue-per-sender"]
        from this sender (API-54); in every case nothing is stored.
        """
        quotas = quotas or {}
        with self._write() as db:
            for user_id, device_id, _ in entries:
                if db.execute("SELECT 1 FROM envelope_devices WHERE user_id = ? AND"
                              " device_id = ?", (user_id, device_id)).fetchone() is None:
                    raise BindingError(f"recipient {user_id}/{device_id} is not a registered "
                                       "device", requirement="ENV-10")
            if db.execute("SELECT 1 FROM envelope_message_ids WHERE message_id = ?",
                          (message_id,)).fetchone():
                raise ReplayError("message_id was already used", requirement="ENV-10")
            for user_id, device_id, _ in entries:
                _check_quotas(db, user_id, device_id, sender, quotas)
            db.execute("INSERT INTO envelope_message_ids (message_id) VALUES (?)",
                       (message_id,))
            db.execute("INSERT INTO envelope_messages (message_id, sender, payload, digest,"
                       " received_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (message_id, sender, payload, digest, received_at, expires_at))
            db.executemany("INSERT INTO envelope_deliveries (user_id, device_id, message_id,"
                           " entry, sender) VALUES (?, ?, ?, ?, ?)",
                           [(u, d, message_id, e, sender) for u, d, e in entries])

    def queue(self, user_id: str, device_id: str, *, now: int, limit: int,
              inline: bool = True) -> tuple[list[StoredDelivery], bool]:
        """Unacknowledged, unexpired deliveries in arrival order, and whether more wait;
        not inline, each payload text is {"nonce": ...} only (ENV-19)."""
        columns = _DELIVERY_COLUMNS if inline else _HEADER_COLUMNS
        rows = self._read(lambda db: db.execute(
            columns + " WHERE d.user_id = ? AND d.device_id = ?"
            " AND d.mac_key IS NULL AND m.expires_at > ? ORDER BY d.seq LIMIT ?",
            (user_id, device_id, now, limit + 1)).fetchall())
        return [_delivery(r) for r in rows[:limit]], len(rows) > limit

    def delivery(self, user_id: str, device_id: str, message_id: str, *,
                 now: int) -> StoredDelivery | None:
        """One delivery of the device, acknowledged or not, until it expires."""
        row = self._read(lambda db: db.execute(
            _DELIVERY_COLUMNS + " WHERE d.user_id = ? AND d.device_id = ?"
            " AND d.message_id = ? AND m.expires_at > ?",
            (user_id, device_id, message_id, now)).fetchone())
        return None if row is None else _delivery(row)

    def payload_ciphertext(self, user_id: str, device_id: str, message_id: str, *,
                           now: int) -> str | None:
        """ENV-19: the base64url ciphertext of the message's one stored payload, if the
        message is among the device's unexpired records (acknowledged or not)."""
        row = self._read(lambda db: db.execute(
            "SELECT json_extract(m.payload, '$.ciphertext') FROM envelope_deliveries d"
            " JOIN envelope_messages m ON m.message_id = d.message_id"
            " WHERE d.user_id = ? AND d.device_id = ? AND d.message_id = ?"
            " AND m.expires_at > ?", (user_id, device_id, message_id, now)).fetchone())
        return None if row is None else str(row[0])

    def acknowledge(self, user_id: str, device_id: str, message_id: str, *, now: int,
                    decide: Callable[[StoredDelivery], tuple[str, bool]]
                    ) -> StoredDelivery | None:
        """Store the disclosure `decide` returns with whether it changes anything (decide
        raises to refuse); None when there is no such delivery. One transaction, so two
        ACKs of one delivery cannot interleave."""
        with self._write() as db:
            row = db.execute(_DELIVERY_COLUMNS + " WHERE d.user_id = ? AND d.device_id = ?"
                             " AND d.message_id = ? AND m.expires_at > ?",
                             (user_id, device_id, message_id, now)).fetchone()
            if row is None:
                return None
            stored = _delivery(row)
            mac_key, changed = decide(stored)
            if changed:
                db.execute("UPDATE envelope_deliveries SET mac_key = ? WHERE user_id = ?"
                           " AND device_id = ? AND message_id = ?",
                           (mac_key, user_id, device_id, message_id))
            return replace(stored, mac_key=mac_key)

    def purge_expired(self, now: int) -> int:
        """Drop every message, with its deliveries, at or past its expiry (ENV-17)."""
        with self._write() as db:
            db.execute("DELETE FROM envelope_deliveries WHERE message_id IN"
                       " (SELECT message_id FROM envelope_messages WHERE expires_at <= ?)",
                       (now,))
            return int(db.execute("DELETE FROM envelope_messages WHERE expires_at <= ?",
                                  (now,)).rowcount)
