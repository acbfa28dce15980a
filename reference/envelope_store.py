"""SQL tables of the envelope flow: signed device lists, messages, deliveries.

A message's header is stored once, its payload in the payload store (payload_store.py);
each addressed device gets one delivery row holding only its own entry (ENV-11). A message
is `pending` until its whole payload is durable, then `ready` (ENV-26); once no addressed
device is left unacknowledged its payload is deleted and the message becomes `drained`
(ENV-16). Message ids outlive their messages, so an envelope is accepted once (ENV-10).

Every decision is the spec's: the caller passes it in as a function the transaction runs
(decide_device_list, accept_envelope, apply_ack), so a refusal stores nothing and two
writers cannot interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec.encoding import b64url_encode

T = TypeVar("T")

PENDING, READY, DRAINED = "pending", "ready", "drained"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS envelope_device_lists (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        list TEXT NOT NULL,
        PRIMARY KEY (user_id, client_id)
    )""",
    # The devices of the stored lists, for the server's recipient check (ENV-10).
    """CREATE TABLE IF NOT EXISTS envelope_devices (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        PRIMARY KEY (user_id, client_id, device_id)
    )""",
    """CREATE TABLE IF NOT EXISTS envelope_message_ids (
        message_id TEXT PRIMARY KEY
    )""",
    """CREATE TABLE IF NOT EXISTS envelope_messages (
        message_id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        header TEXT NOT NULL,
        payload_length INTEGER NOT NULL,
        state TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS envelope_messages_expiry ON envelope_messages (expires_at)",
    # seq is the arrival order of a device's queue (ENV-12).
    """CREATE TABLE IF NOT EXISTS envelope_deliveries (
        seq INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        entry TEXT NOT NULL,
        acknowledged INTEGER NOT NULL DEFAULT 0,
        sender TEXT NOT NULL,
        UNIQUE (user_id, client_id, device_id, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS envelope_deliveries_message ON envelope_deliveries (message_id)",
    # A device's queue in arrival order, and its size per sender (the quotas), read from
    # the index alone: a queue read costs the same at 10 or 10,000 queued.
    """CREATE INDEX IF NOT EXISTS envelope_deliveries_queue
        ON envelope_deliveries (user_id, client_id, device_id, seq) WHERE acknowledged = 0""",
    """CREATE INDEX IF NOT EXISTS envelope_deliveries_sender
        ON envelope_deliveries (user_id, client_id, device_id, sender) WHERE acknowledged = 0""",
)
# Columns added after the first release of the tables: (table, column, definition).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = ()


class QueueFull(Exception):
    """A quota (API-54) would be exceeded: nothing was stored."""

    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(f"{quota} {limit}")
        self.quota = quota
        self.limit = limit

_RECORD_COLUMNS = (
    "SELECT m.message_id, m.header, d.entry, m.received_at, m.expires_at"
    " FROM envelope_deliveries d JOIN envelope_messages m ON m.message_id = d.message_id")
_DEVICE_ROW = " WHERE d.user_id = ? AND d.client_id = ? AND d.device_id = ?"
# A record a device may read: its payload complete, not acknowledged, not expired.
_SERVED = f" AND m.state = '{READY}' AND d.acknowledged = 0 AND m.expires_at > ?"


@dataclass(frozen=True)
class StoredRecord:
    """One device's delivery as stored: JSON texts of the header and of its entry."""

    message_id: str
    header: str
    entry: str
    received_at: int
    expires_at: int


@dataclass(frozen=True)
class Upload:
    """A pending message the sender may now upload the payload of."""

    message_id: str
    header: E.Header


Write = Callable[[], AbstractContextManager[sqlite3.Connection]]
Read = Callable[[Callable[[sqlite3.Connection], Any]], Any]


class _Directory:
    """The spec's step-8 Directory over the transaction's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def published_key_version(self, user_id: str, client_id: str) -> int | None:
        row = self._db.execute("SELECT key_version FROM keypair_records WHERE user_id = ?"
                               " AND client_id = ?", (user_id, client_id)).fetchone()
        return None if row is None else int(row[0])

    def has_device(self, user_id: str, client_id: str, device_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM envelope_devices WHERE user_id = ? AND"
                                " client_id = ? AND device_id = ?",
                                (user_id, client_id, device_id)).fetchone() is not None

    def message_id_used(self, message_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM envelope_message_ids WHERE message_id = ?",
                                (b64url_encode(message_id),)).fetchone() is not None


def _queued(db: sqlite3.Connection, user_id: str, client_id: str, device_id: str, limit: int,
            sender: str | None = None) -> int:
    """How many messages wait in the device's queue (from `sender` only, if given),
    counted up to `limit` on the queue indexes: a quota check costs at most `limit` steps."""
    where = "user_id = ? AND client_id = ? AND device_id = ? AND acknowledged = 0"
    args: tuple[object, ...] = (user_id, client_id, device_id)
    if sender is not None:
        where += " AND sender = ?"
        args += (sender,)
    row = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM envelope_deliveries WHERE {where}"
                     " LIMIT ?) AS queued", (*args, limit)).fetchone()
    return int(row[0])


def _check_quotas(db: sqlite3.Connection, user_id: str, client_id: str, device_id: str,
                  sender: str, quotas: dict[str, int]) -> None:
    per_sender = quotas.get("queue-per-sender")
    if per_sender is not None and _queued(db, user_id, client_id, device_id, per_sender,
                                          sender) >= per_sender:
        raise QueueFull("queue-per-sender", per_sender)
    per_device = quotas.get("queue-per-device")
    if per_device is not None and _queued(db, user_id, client_id, device_id,
                                          per_device) >= per_device:
        raise QueueFull("queue-per-device", per_device)


def _drained(db: sqlite3.Connection, message_ids: Iterable[str]) -> list[str]:
    """Ready messages among `message_ids` that no device is left to acknowledge: mark
    them drained and return them, so the caller deletes their payloads (ENV-16)."""
    out = []
    for message_id in set(message_ids):
        left = db.execute("SELECT count(*) FROM envelope_deliveries WHERE message_id = ? AND"
                          " acknowledged = 0", (message_id,)).fetchone()[0]
        if left == 0:
            changed = db.execute(f"UPDATE envelope_messages SET state = '{DRAINED}' WHERE"
                                 f" message_id = ? AND state = '{READY}'",
                                 (message_id,)).rowcount
            if changed:
                out.append(message_id)
    return out


class EnvelopeTables:
    """The envelope flow's queries, inside the shared Store's transactions."""

    def __init__(self, write: Write, read: Read,
                 list_hooks: Iterable[Callable[[sqlite3.Connection, str, str, bytes], None]] = ()
                 ) -> None:
        self._write = write
        self._read = read
        # Run inside the transaction that stores a list, with its signed bytes (the key
        # directory's "devices" kind).
        self._list_hooks = tuple(list_hooks)

    # --- device lists (step 1) ----------------------------------------------------------

    def device_list(self, user_id: str, client_id: str) -> str | None:
        row = self._read(lambda db: db.execute(
            "SELECT list FROM envelope_device_lists WHERE user_id = ? AND client_id = ?",
            (user_id, client_id)).fetchone())
        return None if row is None else str(row[0])

    def put_device_list(self, user_id: str, client_id: str,
                        decide: Callable[[str | None, str | None], D.DeviceListDecision],
                        text: Callable[[D.DeviceList], str]
                        ) -> tuple[D.DeviceListDecision, list[str]]:
        """Run `decide(stored list text, owner's keypair record text)` and store what it
        accepts: the list, its devices, and the removed devices' deliveries dropped.
        Returns the decision and the messages whose payloads are to be deleted."""
        with self._write() as db:
            row = db.execute("SELECT list FROM envelope_device_lists WHERE user_id = ? AND"
                             " client_id = ?", (user_id, client_id)).fetchone()
            owner = db.execute("SELECT record FROM keypair_records WHERE user_id = ? AND"
                               " client_id = ?", (user_id, client_id)).fetchone()
            decision = decide(None if row is None else str(row[0]),
                              None if owner is None else str(owner[0]))
            if decision.outcome is D.DeviceListOutcome.UNCHANGED:
                return decision, []
            db.execute("INSERT INTO envelope_device_lists (user_id, client_id, version, list)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, client_id) DO UPDATE SET"
                       " version = excluded.version, list = excluded.list",
                       (user_id, client_id, decision.device_list.version,
                        text(decision.device_list)))
            for hook in self._list_hooks:
                hook(db, user_id, client_id, D.device_list_signed_bytes(decision.device_list))
            db.executemany("INSERT INTO envelope_devices (user_id, client_id, device_id)"
                           " VALUES (?, ?, ?)",
                           [(user_id, client_id, d) for d in decision.added])
            touched: list[str] = []
            for device_id in decision.removed:
                db.execute("DELETE FROM envelope_devices WHERE user_id = ? AND client_id = ?"
                           " AND device_id = ?", (user_id, client_id, device_id))
                touched += [str(r[0]) for r in db.execute(
                    "SELECT message_id FROM envelope_deliveries WHERE user_id = ? AND"
                    " client_id = ? AND device_id = ?", (user_id, client_id, device_id))]
                db.execute("DELETE FROM envelope_deliveries WHERE user_id = ? AND"
                           " client_id = ? AND device_id = ?", (user_id, client_id, device_id))
            return decision, _drained(db, touched)

    # --- messages (steps 8, 9, 12) ------------------------------------------------------

    def accept_message(self, decide: Callable[[E.Directory], E.Envelope], *,
                       header_text: Callable[[E.Header], str],
                       entry_text: Callable[[E.Entry], str], received_at: int,
                       expires_at: int, quotas: dict[str, int] | None = None) -> E.Envelope:
        """Run the spec's step-8 decision against this store and keep what it accepts:
        the message (pending its payload), its id for good, one delivery per entry.
        QueueFull when a device's queue holds quotas["queue-per-device"] messages, or
        quotas["queue-per-sender"] from this sender (API-54); nothing is stored then."""
        with self._write() as db:
            envelope = decide(_Directory(db))
            header = envelope.header
            for entry in envelope.entries:
                _check_quotas(db, entry.user_id, header.client_id, entry.device_id,
                              header.sender, quotas or {})
            message_id = b64url_encode(header.message_id)
            db.execute("INSERT INTO envelope_message_ids (message_id) VALUES (?)",
                       (message_id,))
            db.execute("INSERT INTO envelope_messages (message_id, client_id, sender, header,"
                       " payload_length, state, received_at, expires_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (message_id, header.client_id, header.sender, header_text(header),
                        header.payload_length, PENDING, received_at, expires_at))
            db.executemany("INSERT INTO envelope_deliveries (user_id, client_id, device_id,"
                           " message_id, entry, sender) VALUES (?, ?, ?, ?, ?, ?)",
                           [(e.user_id, header.client_id, e.device_id, message_id,
                             entry_text(e), header.sender) for e in envelope.entries])
            return envelope

    def pending_upload(self, sender: str, client_id: str, message_id: str, *,
                       now: int) -> tuple[str, str | None]:
        """('pending', header) for a message the sender may upload to; ('ready', None)
        once its payload is in; ('absent', None) otherwise."""
        row = self._read(lambda db: db.execute(
            "SELECT state, header FROM envelope_messages WHERE message_id = ? AND sender = ?"
            " AND client_id = ? AND expires_at > ?",
            (message_id, sender, client_id, now)).fetchone())
        if row is None:
            return ("absent", None)
        return (str(row[0]), str(row[1]) if row[0] == PENDING else None)

    def complete_upload(self, message_id: str,
                        commit: Callable[[sqlite3.Connection], None]) -> bool:
        """Make a pending message ready: `commit` (the payload writer's) runs inside the
        transaction, so only one upload wins; False if another did first."""
        with self._write() as db:
            row = db.execute("SELECT state FROM envelope_messages WHERE message_id = ?",
                             (message_id,)).fetchone()
            if row is None or row[0] != PENDING:
                return False
            commit(db)
            db.execute(f"UPDATE envelope_messages SET state = '{READY}' WHERE message_id = ?",
                       (message_id,))
            return True

    def queue(self, user_id: str, client_id: str, device_id: str, *, now: int,
              limit: int) -> tuple[list[StoredRecord], bool]:
        """Servable records in arrival order, and whether more wait."""
        rows = self._read(lambda db: db.execute(
            _RECORD_COLUMNS + _DEVICE_ROW + _SERVED + " ORDER BY d.seq LIMIT ?",
            (user_id, client_id, device_id, now, limit + 1)).fetchall())
        return [_record(r) for r in rows[:limit]], len(rows) > limit

    def record(self, user_id: str, client_id: str, device_id: str, message_id: str, *,
               now: int) -> StoredRecord | None:
        row = self._read(lambda db: db.execute(
            _RECORD_COLUMNS + _DEVICE_ROW + " AND d.message_id = ?" + _SERVED,
            (user_id, client_id, device_id, message_id, now)).fetchone())
        return None if row is None else _record(row)

    def has_device(self, user_id: str, client_id: str, device_id: str) -> bool:
        return bool(self._read(lambda db: _Directory(db).has_device(user_id, client_id,
                                                                   device_id)))

    def acknowledge(self, user_id: str, client_id: str, device_id: str, message_id: str, *,
                    now: int, decide: Callable[[bool, int], E.AckOutcome]
                    ) -> E.AckOutcome | None:
        """Step 11: `decide(already acknowledged, devices left unacknowledged)` -- the
        spec's apply_ack -- on the device's delivery of a ready, unexpired message; None
        when there is none."""
        with self._write() as db:
            row = db.execute(
                "SELECT d.acknowledged FROM envelope_deliveries d JOIN envelope_messages m"
                " ON m.message_id = d.message_id" + _DEVICE_ROW + " AND d.message_id = ?"
                f" AND m.state IN ('{READY}', '{DRAINED}') AND m.expires_at > ?",
                (user_id, client_id, device_id, message_id, now)).fetchone()
            if row is None:
                return None
            left = db.execute("SELECT count(*) FROM envelope_deliveries WHERE message_id = ?"
                              " AND acknowledged = 0", (message_id,)).fetchone()[0]
            outcome = decide(bool(row[0]), int(left))
            if outcome.changed:
                db.execute("UPDATE envelope_deliveries SET acknowledged = 1 WHERE user_id = ?"
                           " AND client_id = ? AND device_id = ? AND message_id = ?",
                           (user_id, client_id, device_id, message_id))
            if outcome.delete_payload:
                db.execute(f"UPDATE envelope_messages SET state = '{DRAINED}' WHERE"
                           " message_id = ?", (message_id,))
            return outcome

    def purge_expired(self, now: int) -> list[str]:
        """Drop every message at or past its expiry, with its deliveries (ENV-17); the
        caller deletes the returned messages' payloads."""
        with self._write() as db:
            gone = [str(r[0]) for r in db.execute(
                "SELECT message_id FROM envelope_messages WHERE expires_at <= ?", (now,))]
            db.execute("DELETE FROM envelope_deliveries WHERE message_id IN"
                       " (SELECT message_id FROM envelope_messages WHERE expires_at <= ?)",
                       (now,))
            db.execute("DELETE FROM envelope_messages WHERE expires_at <= ?", (now,))
            return gone

    def live_payloads(self) -> set[str]:
        """Messages whose payload may still exist (pending or ready)."""
        rows = self._read(lambda db: db.execute(
            f"SELECT message_id FROM envelope_messages WHERE state IN ('{PENDING}',"
            f" '{READY}')").fetchall())
        return {str(r[0]) for r in rows}


def _record(row: Any) -> StoredRecord:
    return StoredRecord(message_id=str(row[0]), header=str(row[1]), entry=str(row[2]),
                        received_at=int(row[3]), expires_at=int(row[4]))
