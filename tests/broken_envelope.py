"""Deliberately broken envelope servers: the conformance runner must catch every one.

Each variant is the real reference server with one fault of the envelope flow, patched
where a real bug would sit (the store's queries, the route's checks). Each names the
envelope checks that must fail because of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from broken_servers import BrokenVariant


def _tables() -> Any:
    from keyflows.reference.envelope_store import EnvelopeTables

    return EnvelopeTables


# --- (1) a device is served another device's entry ----------------------------------------

def serves_first_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue joins on the message only: every device gets the message's first entry."""
    tables = _tables()
    original = tables.queue

    def queue(self: Any, user_id: str, device_id: str, *, now: int, limit: int,
              inline: bool = True) -> tuple[list[Any], bool]:
        rows, more = original(self, user_id, device_id, now=now, limit=limit, inline=inline)
        out = []
        for row in rows:
            first = self._read(lambda db, r=row: db.execute(
                "SELECT entry FROM envelope_deliveries WHERE message_id = ? ORDER BY seq"
                " LIMIT 1", (r.message_id,)).fetchone())
            out.append(replace(row, entry=str(first[0])))
        return out, more

    monkeypatch.setattr(tables, "queue", queue)


# --- (2) (3) (4) acknowledgements -----------------------------------------------------------

def drops_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ACK is verified and answered 200, but never stored."""
    tables = _tables()
    original = tables.acknowledge

    def acknowledge(self: Any, user_id: str, device_id: str, message_id: str, *, now: int,
                    decide: Callable[[Any], tuple[str, bool]]) -> Any:
        def verify_only(stored: Any) -> tuple[str, bool]:
            key, _ = decide(stored)
            return key, False

        return original(self, user_id, device_id, message_id, now=now, decide=verify_only)

    monkeypatch.setattr(tables, "acknowledge", acknowledge)


def keeps_after_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue forgets to leave out acknowledged messages."""
    from keyflows.reference import envelope_store

    def queue(self: Any, user_id: str, device_id: str, *, now: int, limit: int,
              inline: bool = True) -> tuple[list[Any], bool]:
        columns = envelope_store._DELIVERY_COLUMNS if inline else envelope_store._HEADER_COLUMNS
        rows = self._read(lambda db: db.execute(
            columns + " WHERE d.user_id = ? AND d.device_id = ?"
            " AND m.expires_at > ? ORDER BY d.seq LIMIT ?",
            (user_id, device_id, now, limit + 1)).fetchall())
        return [envelope_store._delivery(r) for r in rows[:limit]], len(rows) > limit

    monkeypatch.setattr(envelope_store.EnvelopeTables, "queue", queue)


def unchecked_disclosure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any 32-byte key is stored as the disclosure: the MAC is never checked (ENV-14)."""
    from keyflows.reference import envelope
    from keyflows.spec.encoding import b64url_encode

    def decide_without_check(mac_key: bytes) -> Callable[[Any], tuple[str, bool]]:
        def decide(stored: Any) -> tuple[str, bool]:
            return b64url_encode(mac_key), stored.mac_key is None

        return decide

    monkeypatch.setattr(envelope, "_decide", decide_without_check)


# --- (5) .. (8) what the server should refuse -------------------------------------------------

def foreign_sender_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The envelope's sender member is never compared with the authenticated user."""
    from keyflows.spec import envelope as spec

    monkeypatch.setattr(spec, "check_sender", lambda envelope, user: None)


def replays_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reused message id replaces the earlier message instead of being refused."""
    tables = _tables()
    original = tables.put_message

    def put_message(self: Any, **kwargs: Any) -> None:
        message_id = kwargs["message_id"]
        with self._write() as db:
            for table in ("envelope_message_ids", "envelope_messages",
                          "envelope_deliveries"):
                db.execute(f"DELETE FROM {table} WHERE message_id = ?", (message_id,))
        original(self, **kwargs)

    monkeypatch.setattr(tables, "put_message", put_message)


def queue_without_owner_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queues and message records are served to anyone: the owner check is missing."""
    from keyflows.reference import envelope
    from keyflows.reference.common import limited_body, path_identifiers

    async def owned_device(request: Any, *names: str) -> tuple[str, ...]:
        values = path_identifiers(request, "user_id", "device_id", *names)
        await limited_body(request)
        return values

    monkeypatch.setattr(envelope, "_owned_device", owned_device)


def no_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The advertised recipient and size limits are not enforced."""
    from keyflows.spec import envelope as spec

    monkeypatch.setattr(spec, "check_limits", lambda envelope, limits: None)


# --- (9) (10) the raw payload (ENV-19) -----------------------------------------------------------

def mangles_raw_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw payload endpoint flips one bit of the ciphertext it serves."""
    tables = _tables()
    original = tables.payload_ciphertext

    def payload_ciphertext(self: Any, user_id: str, device_id: str, message_id: str, *,
                           now: int) -> str | None:
        from keyflows.spec.encoding import b64url_decode, b64url_encode

        text = original(self, user_id, device_id, message_id, now=now)
        if text is None:
            return None
        raw = bytearray(b64url_decode(text))
        raw[len(raw) // 2] ^= 1
        return b64url_encode(bytes(raw))

    monkeypatch.setattr(tables, "payload_ciphertext", payload_ciphertext)


def serves_latest_raw_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw payload endpoint looks the payload up by device only: it serves the payload
    of the device's latest message, whatever message id the path names."""
    tables = _tables()

    def payload_ciphertext(self: Any, user_id: str, device_id: str, message_id: str, *,
                           now: int) -> str | None:
        row = self._read(lambda db: db.execute(
            "SELECT json_extract(m.payload, '$.ciphertext') FROM envelope_deliveries d"
            " JOIN envelope_messages m ON m.message_id = d.message_id"
            " WHERE d.user_id = ? AND d.device_id = ? ORDER BY d.seq DESC LIMIT 1",
            (user_id, device_id)).fetchone())
        return None if row is None else str(row[0])

    monkeypatch.setattr(tables, "payload_ciphertext", payload_ciphertext)


VARIANTS: tuple[BrokenVariant, ...] = (
    BrokenVariant("serves-another-devices-entry",
                  "every device's queue carries the message's first entry (ENV-11)",
                  ("envelope/queue/own-entry-only", "envelope/send/every-device-reads"),
                  patch=serves_first_entry),
    BrokenVariant("drops-the-ack", "the ACK answers 200 but nothing is stored (ENV-15)",
                  ("envelope/ack/removes-from-queue", "envelope/ack/disclosure-served"),
                  patch=drops_ack),
    BrokenVariant("keeps-messages-after-ack",
                  "acknowledged messages stay in the queue (ENV-15)",
                  ("envelope/ack/removes-from-queue", "envelope/ack/repeat-harmless"),
                  patch=keeps_after_ack),
    BrokenVariant("unchecked-disclosure", "any disclosed key is accepted (ENV-14)",
                  ("envelope/ack/wrong-key-refused",), patch=unchecked_disclosure),
    BrokenVariant("foreign-sender-accepted",
                  "an envelope may name any sender (ENV-10)",
                  ("envelope/submit/foreign-sender-refused",), patch=foreign_sender_accepted),
    BrokenVariant("replays-accepted", "a reused message id is accepted again (ENV-10)",
                  ("envelope/submit/replay-refused",), patch=replays_accepted),
    BrokenVariant("queue-without-owner-check",
                  "anyone reads any device's queue (ENV-12)",
                  ("envelope/queue/owner-only", "envelope/errors/uniform-401"),
                  patch=queue_without_owner_check),
    BrokenVariant("limits-not-enforced",
                  "more recipients and larger messages than advertised are taken (ENV-17)",
                  ("envelope/submit/too-many-recipients-refused",
                   "envelope/submit/oversized-message-refused"), patch=no_limits),
    BrokenVariant("mangles-the-raw-payload",
                  "the raw payload endpoint serves other bytes than were posted (ENV-19)",
                  ("envelope/payload/raw-byte-identical",), patch=mangles_raw_payload),
    BrokenVariant("serves-another-messages-raw-payload",
                  "the raw payload endpoint serves the device's latest message (ENV-19)",
                  ("envelope/payload/raw-byte-identical",), patch=serves_latest_raw_payload),
)
