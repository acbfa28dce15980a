"""Vectors of the envelope flow (profile v1).

Operations, each with every intermediate (valid cases) or the failure class and the step
that must reject (invalid cases, mutation families with one flag each):

  seal                 the sender's side, per suite (x25519, mlkem768x25519) to one and to
                       three devices: content keys (ENV-4), entry info and aad (ENV-6), the
                       static-static DH, the PSK (ENV-25), every KEM value, the HPKE key
                       schedule, the wrapped key (ENV-5), the STREAM payload (ENV-23)
  open                 a device opens its delivery and the raw payload (ENV-13, ENV-7, ENV-8,
                       ENV-20, ENV-24, ENV-28, ENV-18), with the two-key ("invisible
                       salamanders") payload that only the commitment stops
  stream               STREAM alone at the chunk boundaries (0, 1, 65535, 65536, 65537
                       bytes) and its mutations: truncation, extension, reordering, chunks
                       of another message, a wrong final flag, bit flips, lengths
  accept-envelope      the server's ordered checks and its fan-out (ENV-9, ENV-10, ENV-11,
                       ENV-17, ENV-27)
  upload-payload       the server's length rule for the raw payload (ENV-26)
  acknowledge          what an ACK does (ENV-14, ENV-15, ENV-16)
  verify-device-list   a sender checks a signed device list (ENV-21, ENV-22, ENV-1, ENV-2)
  update-device-list   the server's decision on a new version (ENV-3, ENV-21)

Randomness: every key and random value comes from a labelled DRBG (header `source`); a
stream case's plaintext is Drbg(label)(length), and its payload is given as a list of
chunk recipes -- seal plaintext[offset:offset+length] with nonce (index, last) under the
payload key or under another message's key -- or literal bytes, so that the 64 KiB
chunks of the mutation families need not be written out; valid cases pin the exact
payload by its SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import hpke
from keyflows.spec.drbg import Drbg
from keyflows.vectors.envelope_attacks import two_key_payload, two_key_plaintexts
from keyflows.vectors.envelope_common import (
    CLIENT,
    ENC,
    LIMITS,
    LOW_ORDER,
    NON_CANONICAL,
    OP_ACCEPT,
    OP_ACK,
    OP_OPEN,
    OP_SEAL,
    OP_STREAM,
    OP_UPDATE_LIST,
    OP_UPLOAD,
    OP_VERIFY_LIST,
    ORDER_EIGHT,
    STEP_OPEN,
    STEP_SERVER,
    WRAP,
    Path,
    chunk_nonces,
    device,
    device_from_case,
    device_plain,
    device_private,
    device_private_to_plain,
    fails,
    flip,
    flip_field,
    published_from_case,
    published_to_plain,
    replace_tail,
    resize_field,
    user,
    with_member,
    without_member,
)
from keyflows.vectors.envelope_common import (
    FLOW as FLOW,
)
from keyflows.vectors.envelope_lists import (
    update_list_cases,
    verify_list,
    verify_list_cases,
    verify_update,
)
from keyflows.vectors.envelope_stream import (
    OTHER_KEY_LABEL,
    STREAM_KEY_LABEL,
    stream_cases,
    verify_stream,
)
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    dispatch,
    expect_rejection,
    hx,
    to_plain,
)

NOTES: dict[str, Flag] = {
    "Valid": Flag("A well-formed input.", "Accept; recompute every intermediate and output."),
    "BitFlip": Flag("One bit of one field is flipped; the encoding stays canonical.",
                    "Reject where that field is authenticated: the HPKE open for the header, "
                    "enc and wrapped key (aead), the STREAM for the payload (aead)."),
    "Relabelled": Flag("A header member the recipient resolves the sender key from (sender, "
                       "client_id, sender_key_version) is changed.",
                       "Reject: the resolved key is not the one named (binding, ENV-28)."),
    "WrongSenderKey": Flag("The recipient resolved another user's X25519 key for the sender.",
                           "Reject at the HPKE open (aead): the static-static term differs."),
    "WrongDeviceKey": Flag("The delivery is opened with another device's private keys.",
                           "Reject at the HPKE open (failure class aead)."),
    "ForeignEntry": Flag("The delivery carries an entry addressed to another device.",
                         "Reject before any cryptography (failure class binding, ENV-13)."),
    "SwappedEntries": Flag("Another device's enc and wrapped key under this device's address.",
                           "Reject at the HPKE open (failure class aead)."),
    "Spliced": Flag("An entry is moved under the header of another message.",
                    "Reject at the HPKE open: the info differs (failure class aead)."),
    "TwoKeys": Flag("A malicious sender gives this device another content key than the one "
                    "the commitment names, with a payload that decrypts under both payload "
                    "keys (AES-GCM does not commit to its key).",
                    "Reject at the commitment (failure class mac, ENV-8); without it the "
                    "device would read a different plaintext than the others."),
    "LowOrderPoint": Flag("An X25519 value (enc, ct_T, a device key) is a point of low order.",
                          "Reject (failure class point)."),
    "NonCanonicalPoint": Flag("An X25519 value has its top bit set or u >= 2^255 - 19.",
                              "Reject (failure class point)."),
    "ModulusCheck": Flag("An ML-KEM key has a coefficient >= q (FIPS 203 section 7.2).",
                         "Reject (failure class point, ENV-2)."),
    "Truncated": Flag("A field or payload is shorter than required.",
                      "Reject (failure class length)."),
    "TrailingBytes": Flag("A field or payload is longer than required.",
                          "Reject (failure class length)."),
    "NonCanonicalBase64": Flag("A base64url field is padded or has non-zero unused trailing "
                               "bits.", "Reject (failure class decode, API-1)."),
    "UnknownMember": Flag("An object carries a member the wire format does not define.",
                          "Reject (failure class decode)."),
    "MissingMember": Flag("A required member is absent.", "Reject (failure class decode)."),
    "UnknownSuite": Flag("The suite is not one of profile v1, or not one the server offers.",
                         "Reject (failure class params, ENV-27)."),
    "AlreadyAcknowledged": Flag("The device already acknowledged this message id.",
                                "Reject before opening (failure class replay, ENV-18)."),
    "StreamTruncated": Flag("The payload stops after a non-final chunk; the declared length "
                            "is cut to match.",
                            "Reject: that chunk does not open as the final one (aead)."),
    "StreamExtended": Flag("A chunk is appended after the final one; the declared length "
                           "grows to match.",
                           "Reject: the former final chunk does not open as non-final (aead)."),
    "StreamReordered": Flag("Two chunks change places.",
                            "Reject: a chunk does not open at another index (aead)."),
    "StreamSwapped": Flag("A chunk of another message, at the same index, replaces one.",
                          "Reject: it is sealed under another payload key (aead)."),
    "StreamFinalFlag": Flag("The final chunk is sealed with last = 0x00, or a non-final chunk "
                            "with last = 0x01.", "Reject (failure class aead, ENV-24)."),
    "StreamLength": Flag("The payload is shorter or longer than its declared length, or the "
                         "declared length is no STREAM length.",
                         "Reject before decrypting (failure class length, ENV-20)."),
    "ChunkBoundary": Flag("A plaintext of 0, 1, 65535, 65536 or 65537 bytes.",
                          "Accept; the chunk count and final chunk size follow ENV-23."),
    "DuplicateRecipient": Flag("The envelope names the same (user_id, device_id) twice, or "
                               "repeats an enc.", "Reject (failure class decode, ENV-9)."),
    "Limits": Flag("No recipient, more recipients than max_recipients, or a payload longer "
                   "than max_payload_bytes.",
                   "Reject (failure class params, ENV-9 or ENV-17)."),
    "ForeignSender": Flag("The envelope's sender is not the authenticated user, or it is "
                          "posted under another application.",
                          "Reject (failure class binding, ENV-10)."),
    "StaleSenderKey": Flag("The envelope names a key_version that is not the sender's current "
                           "published one.", "Reject (failure class binding, ENV-10)."),
    "UnregisteredDevice": Flag("An entry addresses a device not on its owner's signed list.",
                               "Reject (failure class binding, ENV-10)."),
    "Replay": Flag("A value presented again: a used message id, an older device list.",
                   "Reject (failure class replay)."),
    "RepeatedAck": Flag("The device acknowledges again.", "Succeed and change nothing (ENV-15)."),
    "GhostDevice": Flag("The server adds (or drops) a device without its owner's signature.",
                        "Reject at the signature (failure class signature, ENV-22)."),
    "ForeignSigner": Flag("The list is signed by another user's key, or names another user.",
                          "Reject (failure class signature or binding, ENV-21, ENV-22)."),
    "StaleSigner": Flag("The list is signed with a key_version that is not the owner's "
                        "current one.", "Reject (failure class binding, ENV-21)."),
    "Unsorted": Flag("Devices are not in strictly increasing device_id order.",
                     "Reject (failure class decode, ENV-1)."),
    "VersionGap": Flag("A new list skips a version.", "Reject (failure class link, ENV-3)."),
    "KeyChange": Flag("A kept device changes its keys.", "Reject (failure class binding, ENV-3)."),
    "NoKeypair": Flag("The owner has no published keypair for the application.",
                      "Reject (failure class binding, ENV-21)."),
}


# --- base messages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    suite: str
    name: str
    addresses: tuple[tuple[str, str], ...]
    message_len: int | None  # None: TEXT
    comment: str

    @property
    def label(self) -> str:
        return f"{self.suite}-{self.name}"


TEXT = b"FxChat, made sound: one STREAM payload, one committed key, one entry per device."
THREE = (("bob", "laptop"), ("bob", "phone"), ("carol", "tablet"))

BASES = tuple(
    base for suite in E.SUITES for base in (
        Base(suite, "one", (("bob", "phone"),), None, f"suite {suite}, to one device"),
        Base(suite, "three", THREE, 300 if suite == E.SUITE_HYBRID else 0,
             f"suite {suite}, {'300 bytes' if suite == E.SUITE_HYBRID else 'an empty message'}"
             " to three devices of two users"),
    ))


class Replay:
    """A random source that replays recorded bytes and insists on the recorded order."""

    def __init__(self, draws: Sequence[bytes]) -> None:
        self._draws = list(draws)

    def __call__(self, n: int) -> bytes:
        if not self._draws:
            raise ValueError("seal drew more random bytes than the case records")
        value = self._draws.pop(0)
        if len(value) != n:
            raise ValueError(f"seal drew {n} bytes where the case records {len(value)}")
        return value

    def exhausted(self) -> bool:
        return not self._draws


class Recorder:
    """A DRBG that remembers what it gave, so a case can record the randomness."""

    def __init__(self, label: str) -> None:
        self._drbg = Drbg(label)
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        value = self._drbg(n)
        self.draws.append(value)
        return value


@dataclass(frozen=True)
class Material:
    base: Base
    message: bytes
    devices: tuple[D.Device, ...]
    sealed: E.Sealed
    draws: tuple[bytes, ...]

    def delivery(self, index: int) -> dict[str, Any]:
        entry = self.sealed.envelope.entries[index]
        return E.delivery_to_wire(E.fan_out(self.sealed.envelope)[entry.address])

    def address(self, index: int) -> tuple[str, str]:
        return self.sealed.envelope.entries[index].address


@cache
def material(base: Base) -> Material:
    devices = tuple(device(u, d) for u, d in base.addresses)
    message = TEXT if base.message_len is None else \
        Drbg(f"{FLOW}/v1/{base.label}/message")(base.message_len)
    recorder = Recorder(f"{FLOW}/v1/{base.label}/seal")
    sealed = E.seal(message, suite=base.suite, sender=user("alice").sender, recipients=devices,
                    random=recorder)
    return Material(base=base, message=message, devices=devices, sealed=sealed,
                    draws=tuple(recorder.draws))


# --- the values a case records ------------------------------------------------------------

def _randomness(suite: str, draws: Sequence[bytes]) -> dict[str, Any]:
    per = 1 if suite == E.SUITE_X25519 else 2
    rest = draws[2:]
    recipients = [({"ikm_e": rest[i]} if per == 1 else
                   {"mlkem_m": rest[2 * i], "ephemeral": rest[2 * i + 1]})
                  for i in range(len(rest) // per)]
    return {"message_id": draws[0], "content_key": draws[1], "recipients": recipients}


def _draws(suite: str, randomness: Mapping[str, Any]) -> list[bytes]:
    out = [hx(randomness["message_id"], "message_id"), hx(randomness["content_key"],
                                                          "content_key")]
    for r in randomness["recipients"]:
        if suite == E.SUITE_X25519:
            out.append(hx(r["ikm_e"], "ikm_e"))
        else:
            out += [hx(r["mlkem_m"], "mlkem_m"), hx(r["ephemeral"], "ephemeral")]
    return out


def _encapsulation_values(trace: E.RecipientTrace) -> dict[str, Any]:
    enc = trace.encapsulation
    if isinstance(enc, hpke.Encapsulation):
        return {"ephemeral_private": enc.ephemeral_private, "enc": enc.enc, "dh": enc.dh,
                "kem_context": enc.kem_context, "shared_secret": enc.shared_secret}
    return {"ephemeral_private": enc.ephemeral_private, "ss_pq": enc.ss_pq, "ct_pq": enc.ct_pq,
            "ss_t": enc.ss_t, "ct_t": enc.ct_t, "enc": enc.enc,
            "shared_secret": enc.shared_secret}


def _schedule_values(schedule: hpke.KeySchedule) -> dict[str, Any]:
    return {"psk_id_hash": schedule.psk_id_hash, "info_hash": schedule.info_hash,
            "key_schedule_context": schedule.key_schedule_context, "secret": schedule.secret,
            "key": schedule.key, "base_nonce": schedule.base_nonce}


def _seal_intermediates(sealed: E.Sealed) -> dict[str, Any]:
    header = sealed.header
    return {
        "prk": header.keys.prk, "payload_key": header.keys.payload_key,
        "commitment": header.keys.commitment, "info": header.info,
        "recipients": [
            {"aad": t.aad, "static_dh": t.static_dh, "psk": t.psk, "psk_id": t.psk_id,
             **_encapsulation_values(t), **_schedule_values(t.schedule),
             "wrapped_key": t.entry.wrapped_key}
            for t in header.recipients],
        "chunk_nonces": chunk_nonces(S.plaintext_length(len(sealed.payload))),
    }





def _opened_values(opened: E.Opened) -> tuple[dict[str, Any], dict[str, Any]]:
    key = opened.key
    intermediates = {"info": key.info, "aad": key.aad, "static_dh": key.static_dh,
                     "psk": key.psk, "psk_id": key.psk_id, "shared_secret": key.shared_secret,
                     **_schedule_values(key.schedule), "content_key": key.content_key,
                     "prk": key.keys.prk, "payload_key": key.keys.payload_key,
                     "commitment": key.keys.commitment}
    return intermediates, {"plaintext": opened.plaintext}


# --- seal ---------------------------------------------------------------------------------

def _seal_inputs(m: Material) -> dict[str, Any]:
    alice = user("alice")
    return {"suite": m.base.suite,
            "sender": {"user_id": alice.name, "client_id": CLIENT, "key_version": 1,
                       "x25519_private": alice.x25519_private},
            "recipients": [device_plain(d) for d in m.devices], "message": m.message,
            "randomness": _randomness(m.base.suite, m.draws)}


def _seal_case(m: Material) -> Case:
    suite_req = "ENV-5" if m.base.suite == E.SUITE_X25519 else "ENV-25"
    return Case(
        id=f"env-v1-{m.base.label}/seal", comment=f"seal: {m.base.comment}", flags=("Valid",),
        requirements=("ENV-4", suite_req, "ENV-6", "ENV-23", "KD-7"), operation=OP_SEAL,
        inputs=_seal_inputs(m), intermediates=_seal_intermediates(m.sealed),
        outputs={"envelope": E.envelope_to_wire(m.sealed.envelope),
                 "payload": m.sealed.payload})


def _sealed_from_case(inputs: Mapping[str, Any]) -> tuple[E.Sealed, bool]:
    sender = inputs["sender"]
    replay = Replay(_draws(inputs["suite"], inputs["randomness"]))
    sealed = E.seal(hx(inputs["message"], "message"), suite=inputs["suite"],
                    sender=E.SenderKeys(user_id=sender["user_id"],
                                        client_id=sender["client_id"],
                                        key_version=sender["key_version"],
                                        x25519_private=hx(sender["x25519_private"],
                                                          "x25519_private")),
                    recipients=[device_from_case(r) for r in inputs["recipients"]],
                    random=replay)
    return sealed, replay.exhausted()


def _verify_seal(case: Mapping[str, Any]) -> Outcome:
    sealed, exhausted = _sealed_from_case(case["inputs"])
    if not exhausted:
        return Outcome(False, "seal drew fewer random bytes than the case records")
    return compare(case, intermediates=_seal_intermediates(sealed),
                   outputs={"envelope": E.envelope_to_wire(sealed.envelope),
                            "payload": sealed.payload})


# --- open ---------------------------------------------------------------------------------

OPEN_REQS = ("ENV-13", "ENV-7", "ENV-8", "ENV-20", "ENV-24", "ENV-28")


def _open_inputs(delivery: Any, payload: bytes, address: tuple[str, str],
                 keys: D.DevicePrivateKeys, sender: D.PublishedKeys,
                 acknowledged: Sequence[bytes] = ()) -> dict[str, Any]:
    return {"delivery": delivery, "payload": payload, "user_id": address[0],
            "device_id": address[1], "device_private": device_private_to_plain(keys),
            "sender_key": published_to_plain(sender), "acknowledged": list(acknowledged)}


def _inbox_open(inputs: Mapping[str, Any]) -> E.Opened:
    keys = inputs["device_private"]
    inbox = E.Inbox(user_id=inputs["user_id"], device_id=inputs["device_id"],
                    device=D.DevicePrivateKeys(x25519=hx(keys["x25519"], "x25519"),
                                               mlkem_seed=hx(keys["mlkem_seed"], "mlkem_seed")),
                    acknowledged={hx(i, "acknowledged") for i in inputs["acknowledged"]})
    return inbox.open(E.parse_delivery(inputs["delivery"]), hx(inputs["payload"], "payload"),
                      sender=published_from_case(inputs["sender_key"]))


def _open_case(m: Material, index: int, slug: str, comment: str, flags: tuple[str, ...],
               requirements: tuple[str, ...], failure: Failure | None, *,
               delivery: Any = None, payload: bytes | None = None,
               address: tuple[str, str] | None = None,
               keys: D.DevicePrivateKeys | None = None, sender: D.PublishedKeys | None = None,
               acknowledged: Sequence[bytes] = ()) -> Case:
    address = address or m.address(index)
    inputs = _open_inputs(m.delivery(index) if delivery is None else delivery,
                          m.sealed.payload if payload is None else payload, address,
                          keys or device_private(*m.address(index)),
                          sender or user("alice").published, acknowledged)
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        intermediates, outputs = _opened_values(_inbox_open(to_plain(inputs)))
    suffix = f"/{slug}" if slug else ""
    return Case(id=f"env-v1-{m.base.label}/open/{index}{suffix}", comment=comment,
                flags=flags, requirements=requirements, operation=OP_OPEN, inputs=inputs,
                intermediates=intermediates, outputs=outputs, failure=failure)


def _open_positives(m: Material) -> list[Case]:
    return [_open_case(m, i, "", f"open: {m.base.comment}, device {u}/{d}", ("Valid",),
                       OPEN_REQS, None)
            for i, (u, d) in enumerate(m.sealed.envelope.entries[j].address
                                       for j in range(len(m.devices)))]


def _open_bitflips(m: Material) -> list[Case]:
    aead = fails("aead", STEP_OPEN)
    hybrid = m.base.suite == E.SUITE_HYBRID
    flips: list[tuple[str, Path, int, str, str]] = [
        ("wrapped-key", WRAP, 0, "the wrapped key", "ENV-7"),
        ("wrapped-key-tag", WRAP, 47, "the wrapped key's tag", "ENV-7"),
        ("message-id", ("message_id",), 3, "the message id (in the entry info)", "ENV-6"),
        ("commitment", ("commitment",), 31, "the commitment (in the entry info)", "ENV-6"),
        ("enc", ENC, 0, "the ct_PQ part of enc (ML-KEM rejects implicitly)" if hybrid
         else "the enc (the ephemeral key)", "ENV-7"),
    ]
    if hybrid:
        flips.append(("enc-ct-t", ENC, hpke.HYBRID_N_ENC - 32, "the ct_T part of enc", "ENV-7"))
    cases = [_open_case(m, 0, f"bitflip-{slug}", f"one bit of {what} flipped", ("BitFlip",),
                        tuple(dict.fromkeys(("ENV-13", "ENV-7", req))), aead,
                        delivery=flip_field(m.delivery(0), path, index))
             for slug, path, index, what, req in flips]
    other = S.ciphertext_length(S.plaintext_length(m.sealed.envelope.header.payload_length)
                                + 1)
    cases.append(_open_case(m, 0, "payload-length", "payload_length changed to another STREAM "
                            "length: the entry info no longer matches", ("BitFlip",),
                            ("ENV-13", "ENV-6", "ENV-7"), aead,
                            delivery=with_member(m.delivery(0), ("payload_length",), other)))
    payload = m.sealed.payload
    cases.append(_open_case(m, 0, "bitflip-payload", "one bit of the payload flipped",
                            ("BitFlip",), ("ENV-24",), fails("aead", STEP_OPEN),
                            payload=flip(payload, len(payload) - 1)))
    return cases


def _open_context(m: Material) -> list[Case]:
    binding = fails("binding", STEP_OPEN)
    alice = user("alice")
    stale = D.PublishedKeys(user_id=alice.name, client_id=CLIENT, key_version=2,
                            x25519=alice.published.x25519, ed25519=alice.published.ed25519)
    mallory_as_alice = D.PublishedKeys(user_id=alice.name, client_id=CLIENT, key_version=1,
                                       x25519=user("mallory").published.x25519,
                                       ed25519=user("mallory").published.ed25519)
    other_address = m.address(1) if len(m.devices) > 1 else ("bob", "laptop")
    cases = [
        _open_case(m, 0, "relabelled-sender", "the sender member names mallory, and the "
                   "recipient resolves mallory's published key", ("Relabelled",),
                   ("ENV-28", "ENV-6", "ENV-7"), fails("aead", STEP_OPEN),
                   delivery=with_member(m.delivery(0), ("sender",), "mallory"),
                   sender=D.PublishedKeys(user_id="mallory", client_id=CLIENT, key_version=1,
                                          x25519=user("mallory").published.x25519,
                                          ed25519=user("mallory").published.ed25519)),
        _open_case(m, 0, "sender-key-mismatch", "the resolved sender key is alice's at "
                   "key_version 2, the header names key_version 1", ("Relabelled",),
                   ("ENV-28",), binding, sender=stale),
        _open_case(m, 0, "client-relabelled", "client_id changed: the resolved sender key "
                   "is for another application", ("Relabelled",), ("ENV-28",), binding,
                   delivery=with_member(m.delivery(0), ("client_id",), "mail")),
        _open_case(m, 0, "wrong-sender-key", "the recipient resolved mallory's X25519 key as "
                   "alice's", ("WrongSenderKey",), ("ENV-28", "ENV-7"),
                   fails("aead", STEP_OPEN), sender=mallory_as_alice),
        _open_case(m, 0, "wrong-device-key", "opened with another device's private keys",
                   ("WrongDeviceKey",), ("ENV-7",), fails("aead", STEP_OPEN),
                   keys=device_private("carol", "watch")),
        _open_case(m, 0, "foreign-entry", "the delivery is read by another device",
                   ("ForeignEntry",), ("ENV-13",), binding, address=other_address,
                   keys=device_private(*other_address)),
        _open_case(m, 0, "acknowledged", "the device already acknowledged this message id",
                   ("AlreadyAcknowledged",), ("ENV-18",), fails("replay", STEP_OPEN),
                   acknowledged=[m.sealed.envelope.header.message_id]),
    ]
    if len(m.devices) > 1:
        swapped = with_member(m.delivery(0), ENC, m.delivery(1)["recipient"]["enc"])
        swapped = with_member(swapped, WRAP, m.delivery(1)["recipient"]["wrapped_key"])
        cases.append(_open_case(m, 0, "swapped-entries", "device 1's enc and wrapped key "
                                "under device 0's address", ("SwappedEntries",),
                                ("ENV-7", "ENV-6"), fails("aead", STEP_OPEN),
                                delivery=swapped))
    return cases


@cache
def _other_message(base: Base) -> E.Sealed:
    """The same sender to the same devices, another message of the same length."""
    draw = Drbg(f"{FLOW}/v1/{base.label}/other-message")
    return E.seal(draw(len(material(base).message)), suite=base.suite,
                  sender=user("alice").sender, recipients=material(base).devices, random=draw)


def _open_splices(m: Material) -> list[Case]:
    other = _other_message(m.base)
    entry = E.entry_to_wire(other.envelope.entries[0])
    return [
        _open_case(m, 0, "spliced-entry", "device 0's entry from another message of the "
                   "same sender, under this header", ("Spliced",), ("ENV-6", "ENV-7"),
                   fails("aead", STEP_OPEN), delivery=with_member(m.delivery(0), ("recipient",),
                                                              entry)),
        _open_case(m, 0, "spliced-payload", "the payload of another message (of the same "
                   "length) with this message's entry", ("StreamSwapped",), ("ENV-24",),
                   fails("aead", STEP_OPEN), payload=other.payload),
    ]


def _open_lengths(m: Material) -> list[Case]:
    length = fails("length", STEP_OPEN)
    enc_len = E.ENC_LEN[m.base.suite]
    payload = m.sealed.payload
    return [
        _open_case(m, 0, "enc-truncated", "enc one byte short", ("Truncated",), ("ENV-9",),
                   length, delivery=resize_field(m.delivery(0), ENC, enc_len - 1)),
        _open_case(m, 0, "enc-trailing", "enc one byte long", ("TrailingBytes",), ("ENV-9",),
                   length, delivery=resize_field(m.delivery(0), ENC, enc_len + 1)),
        _open_case(m, 0, "wrapped-key-truncated", "wrapped key one byte short",
                   ("Truncated",), ("ENV-9",), length,
                   delivery=resize_field(m.delivery(0), WRAP, E.WRAPPED_KEY_LEN - 1)),
        _open_case(m, 0, "commitment-truncated", "commitment one byte short",
                   ("Truncated",), ("ENV-9",), length,
                   delivery=resize_field(m.delivery(0), ("commitment",), 31)),
        _open_case(m, 0, "payload-truncated", "the raw payload one byte short of "
                   "payload_length", ("StreamLength",), ("ENV-20",), length,
                   payload=payload[:-1]),
        _open_case(m, 0, "payload-trailing", "one byte after the raw payload",
                   ("StreamLength",), ("ENV-20",), length, payload=payload + b"\x00"),
        _open_case(m, 0, "payload-length-invalid", "payload_length of 15 bytes, shorter "
                   "than a tag", ("StreamLength",), ("ENV-9", "ENV-23"), length,
                   delivery=with_member(m.delivery(0), ("payload_length",), 15)),
    ]


def _open_points(m: Material) -> list[Case]:
    point = fails("point", STEP_OPEN)
    cases = [
        _open_case(m, 0, "enc-low-order", "the X25519 part of enc is u = 1 (order 4)",
                   ("LowOrderPoint",), ("ENV-5", "ENV-9"), point,
                   delivery=replace_tail(m.delivery(0), ENC, LOW_ORDER)),
        _open_case(m, 0, "enc-order-8", "the X25519 part of enc is a point of order 8",
                   ("LowOrderPoint",), ("ENV-5", "ENV-9"), point,
                   delivery=replace_tail(m.delivery(0), ENC, ORDER_EIGHT)),
        _open_case(m, 0, "enc-non-canonical", "the X25519 part of enc is u = p + 9",
                   ("NonCanonicalPoint",), ("ENV-5", "ENV-9"), point,
                   delivery=replace_tail(m.delivery(0), ENC, NON_CANONICAL)),
    ]
    return cases


def _open_structure(m: Material) -> list[Case]:
    decode = fails("decode", STEP_OPEN)
    padded = with_member(m.delivery(0), ("message_id",), m.delivery(0)["message_id"] + "==")
    text = m.delivery(0)["commitment"]
    noncanonical = text[:-1] + chr(ord(text[-1]) + 1)  # a set unused trailing bit
    other_suite = E.SUITE_HYBRID if m.base.suite == E.SUITE_X25519 else E.SUITE_X25519
    return [
        _open_case(m, 0, "unknown-member", "the delivery carries an unknown member",
                   ("UnknownMember",), ("ENV-9", "API-6"), decode,
                   delivery=with_member(m.delivery(0), ("mac_key",), "AAAA")),
        _open_case(m, 0, "missing-member", "the delivery lacks its commitment",
                   ("MissingMember",), ("ENV-9", "API-6"), decode,
                   delivery=without_member(m.delivery(0), ("commitment",))),
        _open_case(m, 0, "padded-base64", "message_id padded with '='",
                   ("NonCanonicalBase64",), ("ENV-9",), decode, delivery=padded),
        _open_case(m, 0, "noncanonical-base64", "commitment with a set unused bit",
                   ("NonCanonicalBase64",), ("ENV-9",), decode,
                   delivery=with_member(m.delivery(0), ("commitment",), noncanonical)),
        _open_case(m, 0, "unknown-suite", "suite x448", ("UnknownSuite",), ("ENV-27",),
                   fails("params", STEP_OPEN),
                   delivery=with_member(m.delivery(0), ("suite",), "x448")),
        _open_case(m, 0, "other-suite", f"suite relabelled {other_suite}: enc has the other "
                   "suite's length", ("UnknownSuite",), ("ENV-9",),
                   fails("length", STEP_OPEN),
                   delivery=with_member(m.delivery(0), ("suite",), other_suite)),
    ]


# --- the two-key attack -------------------------------------------------------------------

@cache
def two_key_material(suite: str) -> tuple[E.Envelope, bytes, bytes, bytes]:
    """A malicious sender's envelope to bob/phone and carol/tablet: bob's entry wraps K1,
    carol's K2, the commitment names K1, and the payload decrypts under both payload keys.
    Returns (envelope, payload, bob's plaintext, carol's plaintext without the commitment)."""
    draw = Drbg(f"{FLOW}/v1/{suite}-two-keys/seal")
    bob, carol = device("bob", "phone"), device("carol", "tablet")
    honest = E.seal_header(suite=suite, sender=user("alice").sender, recipients=[bob],
                           plaintext_length=32, random=draw)
    header = honest.envelope.header
    k2 = draw(32)
    keys1, keys2 = honest.keys, S.content_keys(k2, header.message_id)
    payload = two_key_payload(keys1.payload_key, keys2.payload_key, draw(16))
    carol_trace = E.seal_entry(header, user("alice").sender, carol, k2, draw)
    envelope = E.Envelope(header=header, entries=(honest.envelope.entries[0],
                                                 carol_trace.entry))
    plain1, plain2 = two_key_plaintexts(keys1.payload_key, keys2.payload_key, payload)
    return envelope, payload, plain1, plain2


def _two_key_cases() -> list[Case]:
    cases = []
    for suite in E.SUITES:
        envelope, payload, _, _ = two_key_material(suite)
        deliveries = E.fan_out(envelope)
        for address, failure in ((("bob", "phone"), None),
                                 (("carol", "tablet"), fails("mac", STEP_OPEN))):
            inputs = _open_inputs(E.delivery_to_wire(deliveries[address]), payload, address,
                                  device_private(*address), user("alice").published)
            intermediates: dict[str, Any] = {}
            outputs: dict[str, Any] = {}
            if failure is None:
                intermediates, outputs = _opened_values(_inbox_open(to_plain(inputs)))
            who = "bob, whose key the commitment names," if failure is None else \
                "carol, whose entry wraps another key,"
            cases.append(Case(
                id=f"env-v1-{suite}-two-keys/open/{address[0]}",
                comment=f"two-key payload (invisible salamanders): {who} opens it",
                flags=("Valid",) if failure is None else ("TwoKeys",),
                requirements=("ENV-8", "ENV-13"), operation=OP_OPEN, inputs=inputs,
                intermediates=intermediates, outputs=outputs, failure=failure))
    return cases


# --- accept-envelope, upload-payload, acknowledge -----------------------------------------

def _directory_plain(m: Material, *, key_version: int = 1,
                     devices: Sequence[tuple[str, str]] | None = None,
                     used: Sequence[bytes] = ()) -> dict[str, Any]:
    return {"published_key_versions": [["alice", CLIENT, key_version]],
            "devices": [[u, CLIENT, d] for u, d in (m.base.addresses if devices is None
                                                    else devices)],
            "used_message_ids": list(used)}


class _CaseDirectory:
    """The server storage a case describes, as the spec's Directory protocol."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._versions = {(u, c): v for u, c, v in obj["published_key_versions"]}
        self._devices = {(u, c, d) for u, c, d in obj["devices"]}
        self._used = {hx(i, "used_message_id") for i in obj["used_message_ids"]}

    def published_key_version(self, user_id: str, client_id: str) -> int | None:
        return self._versions.get((user_id, client_id))

    def has_device(self, user_id: str, client_id: str, device_id: str) -> bool:
        return (user_id, client_id, device_id) in self._devices

    def message_id_used(self, message_id: bytes) -> bool:
        return message_id in self._used


def _limits_plain(limits: E.Limits) -> dict[str, Any]:
    return {"max_recipients": limits.max_recipients,
            "max_payload_bytes": limits.max_payload_bytes, "suites": list(limits.suites)}


def _accepted(inputs: Mapping[str, Any]) -> list[E.Delivery]:
    limits = inputs["limits"]
    envelope = E.accept_envelope(
        inputs["envelope"], authenticated_user=inputs["authenticated_user"],
        client_id=inputs["client_id"],
        limits=E.Limits(max_recipients=limits["max_recipients"],
                        max_payload_bytes=limits["max_payload_bytes"],
                        suites=tuple(limits["suites"])),
        directory=_CaseDirectory(inputs["directory"]))
    deliveries = E.fan_out(envelope)
    return [deliveries[entry.address] for entry in envelope.entries]


def _accept_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
                 requirements: tuple[str, ...], failure: Failure | None, *,
                 envelope: Any = None, authenticated_user: str = "alice",
                 client_id: str = CLIENT, limits: E.Limits = LIMITS,
                 directory: dict[str, Any] | None = None) -> Case:
    inputs = {"envelope": E.envelope_to_wire(m.sealed.envelope) if envelope is None
              else envelope,
              "authenticated_user": authenticated_user, "client_id": client_id,
              "limits": _limits_plain(limits),
              "directory": _directory_plain(m) if directory is None else directory}
    outputs: dict[str, Any] = {}
    if failure is None:
        outputs = {"deliveries": [E.delivery_to_wire(d) for d in _accepted(to_plain(inputs))]}
    suffix = f"/{slug}" if slug else ""
    return Case(id=f"env-v1-{m.base.label}/accept{suffix}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_ACCEPT, inputs=inputs,
                outputs=outputs, failure=failure)


def _accept_cases(m: Material) -> list[Case]:
    wire = E.envelope_to_wire(m.sealed.envelope)
    server = STEP_SERVER
    header = m.sealed.envelope.header
    entries = wire["recipients"]
    cases = [_accept_case(m, "", f"the server accepts and fans out: {m.base.comment}",
                          ("Valid",), ("ENV-9", "ENV-10", "ENV-11", "ENV-17"), None)]
    if len(entries) < 2:
        return cases
    cases += [
        _accept_case(m, "duplicate-device", "the first device listed twice",
                     ("DuplicateRecipient",), ("ENV-9",), fails("decode", server),
                     envelope=with_member(wire, ("recipients",), [*entries, entries[0]])),
        _accept_case(m, "repeated-enc", "two entries with the same enc",
                     ("DuplicateRecipient",), ("ENV-9",), fails("decode", server),
                     envelope=with_member(wire, ("recipients", 1, "enc"), entries[0]["enc"])),
        _accept_case(m, "no-recipients", "an envelope with no entry", ("Limits",), ("ENV-9",),
                     fails("params", server), envelope=with_member(wire, ("recipients",), [])),
        _accept_case(m, "too-many-recipients", "one recipient more than max_recipients",
                     ("Limits",), ("ENV-17",), fails("params", server),
                     limits=E.Limits(max_recipients=len(entries) - 1,
                                     max_payload_bytes=LIMITS.max_payload_bytes)),
        _accept_case(m, "payload-too-long", "payload_length above max_payload_bytes",
                     ("Limits",), ("ENV-17",), fails("params", server),
                     limits=E.Limits(max_recipients=8,
                                     max_payload_bytes=header.payload_length - 1)),
        _accept_case(m, "suite-not-offered", "the server offers only the other suite",
                     ("UnknownSuite",), ("ENV-27",), fails("params", server),
                     limits=E.Limits(max_recipients=8, max_payload_bytes=1 << 20,
                                     suites=tuple(x for x in E.SUITES if x != header.suite))),
        _accept_case(m, "foreign-sender", "posted by bob, naming alice as sender",
                     ("ForeignSender",), ("ENV-10",), fails("binding", server),
                     authenticated_user="bob"),
        _accept_case(m, "other-application", "posted under another application",
                     ("ForeignSender",), ("ENV-10",), fails("binding", server),
                     client_id="mail"),
        _accept_case(m, "stale-sender-key", "the sender has published key_version 2",
                     ("StaleSenderKey",), ("ENV-10",), fails("binding", server),
                     directory=_directory_plain(m, key_version=2)),
        _accept_case(m, "unregistered-device", "the last device is not on its owner's list",
                     ("UnregisteredDevice",), ("ENV-10",), fails("binding", server),
                     directory=_directory_plain(m, devices=m.base.addresses[:-1])),
        _accept_case(m, "message-id-reused", "the message id was accepted before",
                     ("Replay",), ("ENV-10",), fails("replay", server),
                     directory=_directory_plain(m, used=[header.message_id])),
        _accept_case(m, "enc-low-order", "an enc whose X25519 part is u = 1",
                     ("LowOrderPoint",), ("ENV-5", "ENV-9"), fails("point", server),
                     envelope=replace_tail(wire, ("recipients", 0, "enc"), LOW_ORDER)),
        _accept_case(m, "wrapped-key-truncated", "a wrapped key one byte short",
                     ("Truncated",), ("ENV-9",), fails("length", server),
                     envelope=resize_field(wire, ("recipients", 0, "wrapped_key"), 47)),
        _accept_case(m, "payload-length-invalid", "payload_length 65553, no STREAM length",
                     ("StreamLength",), ("ENV-9", "ENV-23"), fails("length", server),
                     envelope=with_member(wire, ("payload_length",), S.CHUNK_CIPHERTEXT_SIZE + 1)),
        _accept_case(m, "unknown-member", "the envelope carries an unknown member",
                     ("UnknownMember",), ("ENV-9", "API-6"), fails("decode", server),
                     envelope=with_member(wire, ("payload",), {})),
    ]
    return cases


def _upload_case(slug: str, comment: str, flags: tuple[str, ...], failure: Failure | None,
                 *, declared: int, received: int) -> Case:
    return Case(id=f"env-v1-upload/{slug}", comment=comment, flags=flags,
                requirements=("ENV-26",), operation=OP_UPLOAD,
                inputs={"payload_length": declared, "received": received},
                outputs={} if failure else {"accepted": True}, failure=failure)


def _upload_cases() -> list[Case]:
    n = S.ciphertext_length(S.CHUNK_SIZE + 1)
    length = fails("length", STEP_SERVER)
    return [
        _upload_case("exact", "exactly payload_length bytes", ("Valid",), None, declared=n,
                     received=n),
        _upload_case("short", "the body ends one byte early", ("StreamLength",), length,
                     declared=n, received=n - 1),
        _upload_case("long", "one byte more than payload_length", ("StreamLength",), length,
                     declared=n, received=n + 1),
    ]


def _ack_cases() -> list[Case]:
    out = []
    for slug, comment, flags, already, left, changed, delete in (
            ("first-of-three", "the first of three devices acknowledges", ("Valid",),
             False, 3, True, False),
            ("last", "the last unacknowledged device acknowledges: the payload goes",
             ("Valid",), False, 1, True, True),
            ("repeat", "a device acknowledges again while another has not",
             ("RepeatedAck",), True, 1, False, False),
            ("repeat-after-all", "a device acknowledges again after every device did",
             ("RepeatedAck",), True, 0, False, True)):
        out.append(Case(id=f"env-v1-ack/{slug}", comment=comment, flags=flags,
                        requirements=("ENV-14", "ENV-15", "ENV-16"), operation=OP_ACK,
                        inputs={"already_acknowledged": already,
                                "unacknowledged_devices": left},
                        outputs={"changed": changed, "delete_payload": delete}))
    return out


# --- the file -----------------------------------------------------------------------------

def _cases() -> list[Case]:
    cases: list[Case] = []
    for base in BASES:
        m = material(base)
        cases.append(_seal_case(m))
        cases += _open_positives(m)
        cases += _accept_cases(m)
    for base in BASES:
        if base.name != "three":
            continue
        m = material(base)
        for family in (_open_bitflips, _open_context, _open_splices, _open_lengths,
                       _open_points, _open_structure):
            cases += family(m)
    return (cases + _two_key_cases() + stream_cases() + _upload_cases() + _ack_cases()
            + verify_list_cases() + update_list_cases())


def generate() -> list[VectorFile]:
    return [VectorFile(
        schema_name=FLOW, flow=FLOW, profile="v1",
        source_labels=(
            f"Drbg('{FLOW}/v1/users/<user>') draws each user's keypair X25519 private key "
            f"(32) then Ed25519 seed (32); Drbg('{FLOW}/v1/devices/<user>/<device>') draws a "
            f"device's X25519 private key (32) then its ML-KEM seed d || z (64); "
            f"Drbg('{FLOW}/v1/<suite>-<base>/seal') draws the message id (16), the content "
            "key (32), then per device in recipient order ikmE (32) for suite x25519, or "
            "ML-KEM's m (32) then the X25519 ephemeral scalar (32) for mlkem768x25519; "
            f"Drbg('{FLOW}/v1/<suite>-<base>/message') draws a base's random message; "
            f"'{FLOW}/v1/<suite>-<base>/other-message' seals the splice sources; "
            f"'{FLOW}/v1/<suite>-two-keys/seal' the two-key attack (bob's honest header, "
            "then K2 (32), the free ciphertext block (16), carol's entry randomness); "
            f"stream cases draw their plaintext from Drbg('{FLOW}/v1/stream/plaintext-<n>') "
            f"and their keys from '{STREAM_KEY_LABEL}' and '{OTHER_KEY_LABEL}'"),
        notes=NOTES, cases=_cases())]


# --- verification: the consumer side ------------------------------------------------------

def _verify_open(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _inbox_open(inputs))
    intermediates, outputs = _opened_values(_inbox_open(inputs))
    return compare(case, intermediates=intermediates, outputs=outputs)




def _verify_accept(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _accepted(inputs))
    return compare(case, outputs={"deliveries": [E.delivery_to_wire(d)
                                                 for d in _accepted(inputs)]})


def _verify_upload(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    header = E.Header(suite=E.SUITE_X25519, message_id=bytes(16), client_id=CLIENT,
                      sender="alice", sender_key_version=1,
                      payload_length=inputs["payload_length"], commitment=bytes(32))

    def upload() -> bool:
        E.check_payload_upload(header, inputs["received"], complete=True)
        return True

    if case["result"] == "invalid":
        return expect_rejection(case, upload)
    return compare(case, outputs={"accepted": upload()})


def _verify_ack(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    outcome = E.apply_ack(already_acknowledged=inputs["already_acknowledged"],
                          unacknowledged_devices=inputs["unacknowledged_devices"])
    return compare(case, outputs={"changed": outcome.changed,
                                  "delete_payload": outcome.delete_payload})






_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_SEAL): _verify_seal,
    ("v1", OP_OPEN): _verify_open,
    ("v1", OP_STREAM): verify_stream,
    ("v1", OP_ACCEPT): _verify_accept,
    ("v1", OP_UPLOAD): _verify_upload,
    ("v1", OP_ACK): _verify_ack,
    ("v1", OP_VERIFY_LIST): verify_list,
    ("v1", OP_UPDATE_LIST): verify_update,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
