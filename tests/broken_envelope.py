"""Deliberately broken envelope servers: the conformance runner must catch every one.

Each variant is the real reference server with one fault of the envelope flow, patched
where a real bug would sit (a spec check skipped, a query that forgets a condition, a
route that serves the wrong bytes). Each names the envelope checks that must fail.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from broken_servers import BrokenVariant, rewriting
from starlette.types import ASGIApp, Scope


def _tables() -> Any:
    from keyflows.reference.envelope_store import EnvelopeTables

    return EnvelopeTables


# --- who may send, and what -------------------------------------------------------------------

def unauthenticated_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """POST .../messages forgets to authenticate: anyone may post in anyone's name."""
    from keyflows.reference import common
    from keyflows.reference import envelope as routes

    original = common.authenticate

    async def authenticate(request: Any, user_id: str) -> None:
        if request.method == "POST" and request.url.path.endswith("/messages"):
            return
        await original(request, user_id)

    monkeypatch.setattr(routes, "authenticate", authenticate)


def mismatched_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender member, application and key version are never compared (ENV-10)."""
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "check_sender", lambda *args, **kwargs: None)


def replays_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A used message id is not looked up (ENV-10): the insert then fails."""
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "check_message_id_unused", lambda *args, **kwargs: None)


def limits_not_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "check_limits", lambda *args, **kwargs: None)


# --- device lists -----------------------------------------------------------------------------

def unsigned_lists_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The list's owner and key version are compared, its signature never verified."""
    from keyflows.spec import envelope_devices as D

    original = D.check_list_signature

    def check(device_list: Any, owner: Any, *, requirement: str) -> None:
        if (device_list.user_id, device_list.client_id, device_list.key_version) != (
                owner.user_id, owner.client_id, owner.key_version):
            original(device_list, owner, requirement=requirement)

    monkeypatch.setattr(D, "check_list_signature", check)


def ghost_device(app: ASGIApp) -> ASGIApp:
    """A malicious server adds its own device to every list it serves (ENV-22)."""
    from keyflows.spec import envelope_devices as D
    from keyflows.vectors.envelope_common import device

    ghost = D.device_to_wire(device("ghost", "ghost"))

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["method"] != "GET" or not scope["path"].endswith("/devices") or status != 200:
            return status, headers, body
        listed = json.loads(body)
        listed["devices"] = sorted([*listed["devices"], ghost], key=lambda d: d["device_id"])
        return status, headers, json.dumps(listed, separators=(",", ":")).encode()

    return rewriting(rewrite)(app)


def replayed_lists_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any signed version replaces the stored one: older ones and gaps included."""
    from keyflows.spec import envelope_devices as D

    original = D.decide_device_list

    def decide(obj: Any, *, current: Any, owner: Any, max_devices: int) -> Any:
        return original(obj, current=None, owner=owner, max_devices=max_devices)

    monkeypatch.setattr(D, "decide_device_list", decide)


# --- the payload ------------------------------------------------------------------------------

def _patch_payload_bytes(monkeypatch: pytest.MonkeyPatch,
                         change: Callable[[Any, str, bytes], bytes]) -> None:
    """Serve `change(request, message_id, stored bytes)` instead of the stored payload."""
    from starlette.responses import Response

    from keyflows.reference import envelope as routes

    original = routes.get_payload

    async def get_payload(request: Any) -> Any:
        answer: Any = await original(request)
        if answer.status_code != 200:
            return answer
        chunks = [chunk async for chunk in answer.body_iterator]  # a StreamingResponse
        data = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        message_id = request.path_params["message_id"]
        return Response(change(request, message_id, data),
                        media_type="application/octet-stream")

    monkeypatch.setattr(routes, "get_payload", get_payload)


def truncated_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The payload is served without its final chunk (a cut-short stream)."""
    from keyflows.spec import envelope_stream as S

    def cut(request: Any, message_id: str, data: bytes) -> bytes:
        full = (len(data) - 1) // S.CHUNK_CIPHERTEXT_SIZE * S.CHUNK_CIPHERTEXT_SIZE
        return data[:full] if full else data[:-1]

    _patch_payload_bytes(monkeypatch, cut)


def altered_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte of the payload is flipped on the way out."""
    def flip(request: Any, message_id: str, data: bytes) -> bytes:
        return bytes([data[0] ^ 1]) + data[1:]

    _patch_payload_bytes(monkeypatch, flip)


def mixed_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk served is the first chunk of the payload served before it."""
    last: dict[str, bytes] = {}

    def mix(request: Any, message_id: str, data: bytes) -> bytes:
        from keyflows.spec import envelope_stream as S

        previous = last.get("payload")
        last["payload"] = data
        size = S.CHUNK_CIPHERTEXT_SIZE
        if previous is None or len(previous) <= size or len(data) <= size:
            return data
        return previous[:size] + data[size:]

    _patch_payload_bytes(monkeypatch, mix)


def keeps_payload_after_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The payload is served whatever the ACKs, and never deleted (ENV-15, ENV-16)."""
    from keyflows.reference import envelope_store

    tables = envelope_store.EnvelopeTables

    def record(self: Any, user_id: str, client_id: str, device_id: str, message_id: str, *,
               now: int) -> Any:
        row = self._read(lambda db: db.execute(
            envelope_store._RECORD_COLUMNS + envelope_store._DEVICE_ROW
            + " AND d.message_id = ? AND m.expires_at > ?",
            (user_id, client_id, device_id, message_id, now)).fetchone())
        return None if row is None else envelope_store._record(row)

    monkeypatch.setattr(tables, "record", record)
    from keyflows.reference import envelope as routes

    async def keep(request: Any, names: list[str]) -> None:
        return None

    monkeypatch.setattr(routes, "_delete_payloads", keep)


def delivers_before_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message is queued as soon as its envelope is accepted (ENV-26)."""
    from keyflows.reference import envelope_store

    monkeypatch.setattr(envelope_store, "_SERVED",
                        " AND d.acknowledged = 0 AND m.expires_at > ?")


RETENTION_SECONDS = 8
"""The retention check's variants run with a retention short enough to wait out."""
RETENTION: dict[str, object] = {"message_retention": RETENTION_SECONDS}


def serves_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read queries forget the expiry: the queue, a record and its payload are served
    after expires_at until a new envelope purges them (ENV-17)."""
    from keyflows.reference import envelope_store

    monkeypatch.setattr(envelope_store, "_SERVED", f" AND m.state = '{envelope_store.READY}'"
                                                   " AND d.acknowledged = 0 AND ? IS NOT NULL")


def counts_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired messages are hidden but never purged: they go on filling the queue quotas
    (ENV-17, API-54)."""
    monkeypatch.setattr(_tables(), "purge_expired", lambda self, now: [])


def retention_not_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """The advertised retention is not the one applied: every message is kept a week."""
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "expires_at", lambda received_at, retention: received_at + 604800)


def upload_length_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "check_payload_upload", lambda *args, **kwargs: None)


def serves_first_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue joins on the message only: every device gets the message's first entry."""
    tables = _tables()
    original = tables.queue

    def queue(self: Any, user_id: str, client_id: str, device_id: str, *, now: int,
              limit: int) -> tuple[list[Any], bool]:
        rows, more = original(self, user_id, client_id, device_id, now=now, limit=limit)
        out = []
        for row in rows:
            first = self._read(lambda db, r=row: db.execute(
                "SELECT entry FROM envelope_deliveries WHERE message_id = ? ORDER BY seq"
                " LIMIT 1", (r.message_id,)).fetchone())
            out.append(replace(row, entry=str(first[0])))
        return out, more

    monkeypatch.setattr(tables, "queue", queue)


def payload_without_owner_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device's queue, records and payload are served to any valid token."""
    from keyflows.reference import common
    from keyflows.reference import envelope as routes

    original = common.authenticate

    async def authenticate(request: Any, user_id: str) -> None:
        if request.method == "GET" and "/messages" in request.url.path:
            return
        await original(request, user_id)

    monkeypatch.setattr(routes, "authenticate", authenticate)


def upload_waits_for_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """The declared Content-Length is not compared with the envelope before the body is
    read: a wrong one is found only after the whole body came (ENV-26)."""
    from keyflows.reference import envelope as routes

    monkeypatch.setattr(routes, "declared_length", lambda request: None)


def upload_overrun_read_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunked upload past the declared length is read to its end before it is refused."""
    from keyflows.spec import envelope as E

    original = E.check_payload_upload

    def check(header: Any, received: int, *, complete: bool) -> None:
        if complete:
            original(header, received, complete=complete)

    monkeypatch.setattr(E, "check_payload_upload", check)


def short_chunked_upload_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunked upload is never compared with the declared length at its end: a short
    one is stored and delivered (ENV-26)."""
    from keyflows.spec import envelope as E

    original = E.check_payload_upload

    def check(header: Any, received: int, *, complete: bool) -> None:
        if not complete or received > header.payload_length:
            original(header, received, complete=complete)

    monkeypatch.setattr(E, "check_payload_upload", check)


def bodiless_bodies_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The envelope routes that take no body never read or bound one (API-5)."""
    from keyflows.reference import envelope as routes

    async def ignore(request: Any) -> bytes:
        return b""

    monkeypatch.setattr(routes, "limited_body", ignore)


def removal_keeps_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A removed device's deliveries are kept: a device listed later under its id gets
    them (ENV-3)."""
    tables = _tables()
    original = tables.put_device_list

    class KeepDeliveries:
        def __init__(self, db: Any) -> None:
            self._db = db

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("DELETE FROM envelope_deliveries WHERE user_id"):
                return self._db.execute("SELECT 1")
            return self._db.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._db, name)

    def put_device_list(self: Any, *args: Any, **kwargs: Any) -> Any:
        write = self._write

        @contextlib.contextmanager
        def keeping() -> Any:
            with write() as db:
                yield KeepDeliveries(db)

        self._write = keeping
        try:
            return original(self, *args, **kwargs)
        finally:
            self._write = write

    monkeypatch.setattr(tables, "put_device_list", put_device_list)


def every_upload_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload that loses the race to another one is answered 204 all the same."""
    tables = _tables()
    original = tables.complete_upload

    def complete_upload(self: Any, message_id: str, commit: Any) -> bool:
        original(self, message_id, commit)
        return True

    monkeypatch.setattr(tables, "complete_upload", complete_upload)


# --- the ML-KEM-768 key of keypair records ------------------------------------------------------

def mlkem_key_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server skips FIPS 203's modulus check of a record's ML-KEM-768 key (KP-5)."""
    from keyflows.spec import mlkem

    monkeypatch.setattr(mlkem, "check_encapsulation_key", lambda *args, **kwargs: None)


def mlkem_dropped_from_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public view leaves the ML-KEM-768 key out (a downgrade to the X25519 suites)."""
    from keyflows.spec import keypair_publication as kp

    original = kp.public_view

    def public_view(record: dict[str, Any]) -> dict[str, Any]:
        view = original(record)
        keys = dict(view["public_keys"])
        keys.pop("mlkem768", None)
        return {**view, "public_keys": keys}

    monkeypatch.setattr(kp, "public_view", public_view)


def challenge_downgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session challenge ignores the record's ML-KEM-768 key: always the X25519 suite
    (SC-50), a downgrade of the post-quantum suite."""
    from keyflows.reference import session_challenge as routes

    monkeypatch.setattr(routes, "_mlkem768", lambda record: None)


def ciphertext_length_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's ciphertext length is not compared with its public keys (KP-3)."""
    from keyflows.spec import keypair_publication as kp

    monkeypatch.setattr(kp, "ciphertext_length", lambda public: kp.CIPHERTEXT_LEN)


def list_counters_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device list's version and key_version are taken as they come (ENV-21)."""
    from keyflows.spec import envelope_devices as D

    monkeypatch.setattr(D, "_check_counter", lambda value, low, high, what: value)


def device_limit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists of any length are accepted (ENV-3)."""
    from keyflows.spec import envelope_devices as D

    original = D.decide_device_list

    def decide(obj: object, **kwargs: Any) -> Any:
        return original(obj, **{**kwargs, "max_devices": 10**6})

    monkeypatch.setattr(D, "decide_device_list", decide)


def stream_lengths_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any payload_length is taken, even one no STREAM payload has (ENV-23)."""
    from keyflows.spec import envelope as E

    monkeypatch.setattr(E, "plaintext_length", lambda length, requirement="ENV-23": length)


VARIANTS: tuple[BrokenVariant, ...] = (
    BrokenVariant("ciphertext-length-unchecked", "a record's ciphertext length is not "
                  "compared with its public keys (KP-3)",
                  ("keypair-publication/mlkem/ciphertext-fits-keys",),
                  patch=ciphertext_length_unchecked),
    BrokenVariant("list-counters-unchecked", "device-list counters are not checked (ENV-21)",
                  ("envelope/devices/counters-checked",), patch=list_counters_unchecked),
    BrokenVariant("device-limit-off", "device lists of any length are accepted (ENV-3)",
                  ("envelope/devices/device-limit",), patch=device_limit_off),
    BrokenVariant("stream-lengths-unchecked", "payload lengths no STREAM has are accepted "
                  "(ENV-23)", ("envelope/send/stream-lengths",), patch=stream_lengths_unchecked),
    BrokenVariant("challenge-downgraded", "session challenges ignore the record's ML-KEM key "
                  "(SC-50)", ("session-challenge/hybrid/login",
                              "session-challenge/hybrid/suite-follows-record"),
                  patch=challenge_downgraded),
    BrokenVariant("mlkem-key-unchecked", "a record's ML-KEM-768 key is not checked (KP-5)",
                  ("keypair-publication/mlkem/invalid-key-refused",), patch=mlkem_key_unchecked),
    BrokenVariant("mlkem-dropped-from-view", "the public view drops the ML-KEM-768 key",
                  ("keypair-publication/mlkem/round-trip",), patch=mlkem_dropped_from_view),
    BrokenVariant("unauthenticated-sender", "POST .../messages takes no credentials (ENV-10)",
                  ("envelope/send/unauthenticated-or-mismatched-sender",),
                  patch=unauthenticated_post),
    BrokenVariant("mismatched-sender", "the sender, application and key version are not "
                  "checked (ENV-10)", ("envelope/send/unauthenticated-or-mismatched-sender",),
                  patch=mismatched_sender),
    BrokenVariant("replays-accepted", "a used message id is not refused (ENV-10)",
                  ("envelope/send/replay-refused",), patch=replays_accepted),
    BrokenVariant("limits-not-enforced", "more recipients and longer payloads than "
                  "advertised (ENV-17)", ("envelope/send/limits",), patch=limits_not_enforced),
    BrokenVariant("unsigned-device-lists", "a device list is stored without its signature "
                  "verified (ENV-21)", ("envelope/devices/unsigned-list-refused",),
                  patch=unsigned_lists_accepted),
    BrokenVariant("ghost-device", "the server adds its own device to the lists it serves "
                  "(ENV-22)", ("envelope/devices/sender-verifies-list",), wrapper=ghost_device),
    BrokenVariant("replayed-device-lists", "older versions and gaps replace the stored list "
                  "(ENV-3)", ("envelope/devices/replay-and-gap-refused",),
                  patch=replayed_lists_accepted),
    BrokenVariant("truncated-stream", "the payload is served without its final chunk "
                  "(ENV-19, ENV-24)", ("envelope/payload/byte-identical-stream",),
                  patch=truncated_stream),
    BrokenVariant("altered-payload", "the payload served differs from the one posted "
                  "(ENV-19)", ("envelope/payload/byte-identical-stream",),
                  patch=altered_payload),
    BrokenVariant("mixed-chunks", "a chunk of another message is served (ENV-19, ENV-24)",
                  ("envelope/payload/no-chunk-mixing",), patch=mixed_chunks),
    BrokenVariant("keeps-payload-after-ack", "the payload is served after every ACK and never "
                  "deleted (ENV-15, ENV-16)", ("envelope/ack/payload-gone-after-every-ack",
                                               "envelope/ack/dequeues"),
                  patch=keeps_payload_after_ack),
    BrokenVariant("delivers-before-payload", "a message is delivered before its payload is "
                  "stored (ENV-26)", ("envelope/payload/length-enforced",),
                  patch=delivers_before_payload),
    BrokenVariant("serves-expired-messages", "the queue, records and payloads are served "
                  "after expires_at (ENV-17)", ("envelope/retention/expiry",),
                  patch=serves_expired, settings=RETENTION),
    BrokenVariant("counts-expired-messages", "expired messages are never purged and go on "
                  "counting against the sender's quota (ENV-17, API-54)",
                  ("envelope/retention/expiry",), patch=counts_expired, settings=RETENTION),
    BrokenVariant("retention-not-applied", "messages expire a week after arrival whatever "
                  "retention_seconds says (ENV-17)", ("envelope/retention/expiry",),
                  patch=retention_not_applied, settings=RETENTION),
    BrokenVariant("upload-length-unchecked", "a payload of any length is stored (ENV-26)",
                  ("envelope/payload/length-enforced",), patch=upload_length_unchecked),
    BrokenVariant("serves-another-devices-entry", "every device's queue carries the "
                  "message's first entry (ENV-11)", ("envelope/queue/own-entry-only",),
                  patch=serves_first_entry),
    BrokenVariant("upload-waits-for-body", "a wrong Content-Length is found only after the "
                  "body (ENV-26)", ("envelope/payload/streamed-length-enforced",),
                  patch=upload_waits_for_body),
    BrokenVariant("upload-overrun-read-to-end", "a chunked upload past its length is read "
                  "to the end (ENV-26)", ("envelope/payload/streamed-length-enforced",),
                  patch=upload_overrun_read_to_end),
    BrokenVariant("short-chunked-upload-accepted", "a chunked upload one byte short is "
                  "stored (ENV-26)", ("envelope/payload/streamed-length-enforced",),
                  patch=short_chunked_upload_accepted),
    BrokenVariant("every-upload-taken", "concurrent uploads of one payload are all "
                  "answered 204 (ENV-26)", ("envelope/payload/concurrent-uploads-one-wins",),
                  patch=every_upload_taken),
    BrokenVariant("bodiless-bodies-unbounded", "GET and ACK routes never bound a body "
                  "(API-5)", ("envelope/limits/bodiless-requests-bounded",),
                  patch=bodiless_bodies_unbounded),
    BrokenVariant("removal-keeps-deliveries", "a removed device's queue comes back with a "
                  "device of the same id (ENV-3)", ("envelope/devices/removal-drops-queue",),
                  patch=removal_keeps_deliveries),
    BrokenVariant("payload-without-owner-check", "anyone reads any device's queue and payload "
                  "(ENV-12, ENV-19)", ("envelope/payload/owner-only",),
                  patch=payload_without_owner_check),
)
