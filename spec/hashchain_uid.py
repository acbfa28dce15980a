"""Flow hashchain, steps 10-13: UIDs, the key server's reply, the sealed repository,
KeyInits and logged keypair publications (HC-14 .. HC-29).

A UID binds an identity (``alice@example.org``, in mapped form) to a signing key SIGKEY,
an escrow key SIGESCROW and an X25519 key, with a validity period and the checkpoint
its author had verified last. A creation is signed by SIGKEY and SIGESCROW; an update
names the record hash of the UID it replaces and is signed by a key of that UID. The key
server appends one type 0x01 entry per accepted UID and answers with a tlog-proof of its
inclusion. Every decision a server makes about a UID or a KeyInit is a function here, so
a server only stores what these functions accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import primitives, wire
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import (
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u32be,
    u64be,
)
from keyflows.spec.errors import (
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LinkError,
    ParamsError,
    ReplayError,
    SignatureError,
    SpecError,
)
from keyflows.spec.hashchain import (
    HASH_LEN,
    MAX_INDEX,
    NONCE_LEN,
    TYPE_PUBLICATION,
    TYPE_UID,
    ZERO_GCM_NONCE,
    Entry,
    decode_entry,
    entry_leaf_hash,
    hash_id_of,
    id_key_of,
    open_record_hash,
    record_hash_of,
    record_index_of,
    require_len,
)
from keyflows.spec.hashchain_mute import map_identity
from keyflows.spec.key_derivation import check_identifier, labelled_hkdf

MAX_UID_VALIDITY = 366 * 86400          # HC-18
MAX_KEYINIT_LIFETIME = 90 * 86400       # HC-25
FLUSH_WINDOW = 300                      # HC-28
DEFAULT_MAX_CHECKPOINT_LAG = 4096       # HC-19
PREVIOUS_ROLES = ("sigkey", "sigescrow")
DOMAIN_LABEL = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


# --- step 10: identities ----------------------------------------------------------------------

def check_identity(identity: str, *, domains: Sequence[str] | None = None) -> bytes:
    """Step 10 (HC-14): a v1 identity is in mapped form, its domain a lowercase DNS name
    (and, for a server, one it serves). Returns the subject bytes."""
    try:
        mapped = map_identity(identity)
    except SpecError as exc:
        raise DecodeError(f"identity is not well-formed: {exc}", requirement="HC-14") from exc
    if mapped != identity:
        raise DecodeError("identity is not in mapped form", requirement="HC-14")
    domain = identity.split("@", 1)[1]
    labels = domain.split(".")
    # No separate bound on the domain's length: the mapped identity is at most 254 bytes
    # with a localpart of at least 3 (HC-34), so the domain is at most 250.
    if len(labels) < 2 or not all(DOMAIN_LABEL.match(x) for x in labels):
        raise DecodeError("identity domain is not a lowercase DNS name", requirement="HC-14")
    if domains is not None and domain not in domains:
        raise BindingError(f"domain {domain} is not served here", requirement="HC-14")
    return identity.encode("ascii")


def check_entry_for(data: bytes, *, subject: bytes, record_hash: bytes,
                    entry_type: int = TYPE_UID) -> Entry:
    """Step 11 (HC-21), client side: this entry records exactly this subject's record."""
    entry = decode_entry(data)
    if entry.type != entry_type:
        raise BindingError("entry has another type", requirement="HC-21")
    if hash_id_of(subject, entry.nonce, entry_type) != entry.hash_id:
        raise BindingError("entry is about another identity", requirement="HC-21")
    opened = open_record_hash(id_key_of(subject, entry.nonce, entry_type), entry.sealed_hash,
                              entry.record_index, entry_type)
    if opened != record_hash:
        raise BindingError("entry records another record", requirement="HC-21")
    return entry


# --- step 10: UID messages --------------------------------------------------------------------

@dataclass(frozen=True)
class LastCheckpoint:
    """The checkpoint the UID's author verified last: its tree size and root hash."""

    size: int
    root: bytes


@dataclass(frozen=True)
class UidContent:
    identity: str
    msg_count: int
    not_before: int
    not_after: int
    sigkey: bytes
    sigescrow: bytes
    x25519: bytes
    last_checkpoint: LastCheckpoint
    previous: bytes | None  # record hash of the previous UID; None for a creation


@dataclass(frozen=True)
class Uid:
    content: UidContent
    sig_sigkey: bytes
    sig_sigescrow: bytes | None
    previous_role: str | None
    sig_previous: bytes | None


def uid_content_bytes(c: UidContent) -> bytes:
    """Step 10 (HC-15): the canonical encoding every UID signature covers."""
    return labelled_context(
        "hashchain-uid", c.identity.encode("ascii"), u32be(c.msg_count), u64be(c.not_before),
        u64be(c.not_after), c.sigkey, c.sigescrow, c.x25519, u64be(c.last_checkpoint.size),
        c.last_checkpoint.root, c.previous if c.previous is not None else b"")


def uid_signature_message(role: str, content: bytes) -> bytes:
    """Step 10 (HC-16, HC-17): each signer role signs a distinct message."""
    return labelled_context("hashchain-uid-signature", role.encode("ascii"), content)


def uid_record_hash(uid: Uid) -> bytes:
    """Step 10 (HC-4, HC-15): the UID's record hash covers content and every signature."""
    return record_hash_of(TYPE_UID, uid_content_bytes(uid.content), uid.sig_sigkey,
                          uid.sig_sigescrow or b"", (uid.previous_role or "").encode("ascii"),
                          uid.sig_previous or b"")


def sign_uid(content: UidContent, *, sigkey_seed: bytes, sigescrow_seed: bytes | None,
             previous_seed: bytes | None = None, previous_role: str | None = None) -> Uid:
    """Step 10: the client signs with SIGKEY, SIGESCROW (creation, escrow change) and, for
    an update, with a key of the previous UID."""
    body = uid_content_bytes(content)
    sig_escrow = None
    if sigescrow_seed is not None:
        sig_escrow = primitives.ed25519_sign(sigescrow_seed,
                                             uid_signature_message("sigescrow", body))
    sig_previous = None
    if previous_seed is not None:
        if previous_role not in PREVIOUS_ROLES:
            raise ParamsError("previous_role must be sigkey or sigescrow")
        sig_previous = primitives.ed25519_sign(
            previous_seed, uid_signature_message(f"previous-{previous_role}", body))
    return Uid(content=content,
               sig_sigkey=primitives.ed25519_sign(sigkey_seed,
                                                  uid_signature_message("sigkey", body)),
               sig_sigescrow=sig_escrow, previous_role=previous_role if sig_previous else None,
               sig_previous=sig_previous)


def uid_to_wire(uid: Uid) -> dict[str, Any]:
    c = uid.content
    signatures: dict[str, Any] = {"sigkey": b64url_encode(uid.sig_sigkey)}
    if uid.sig_sigescrow is not None:
        signatures["sigescrow"] = b64url_encode(uid.sig_sigescrow)
    if uid.sig_previous is not None:
        signatures["previous"] = {"key": uid.previous_role,
                                  "signature": b64url_encode(uid.sig_previous)}
    wire: dict[str, Any] = {
        "identity": c.identity, "msg_count": c.msg_count, "not_before": c.not_before,
        "not_after": c.not_after, "sigkey": b64url_encode(c.sigkey),
        "sigescrow": b64url_encode(c.sigescrow),
        "public_keys": {"x25519": b64url_encode(c.x25519)},
        "last_checkpoint": {"size": c.last_checkpoint.size,
                            "root": b64url_encode(c.last_checkpoint.root)},
        "signatures": signatures,
    }
    if c.previous is not None:
        wire["previous"] = b64url_encode(c.previous)
    return wire


def uid_json(uid: Uid) -> bytes:
    """The UID as canonical JSON (sorted keys, no whitespace): what the repository seals."""
    return json.dumps(uid_to_wire(uid), sort_keys=True, separators=(",", ":")).encode("utf-8")


_UID_MEMBERS = ("identity", "msg_count", "not_before", "not_after", "sigkey", "sigescrow",
                "public_keys", "last_checkpoint", "signatures")


def parse_uid(obj: object) -> Uid:
    """Step 10 (HC-15): decode a UID message; every field decoded and length-checked."""
    m = wire.members(obj, _UID_MEMBERS, "uid", optional=("previous",))
    identity = wire.string(m, "identity", "uid")
    check_identity(identity)
    pk = wire.members(m["public_keys"], ("x25519",), "uid.public_keys")
    last = wire.members(m["last_checkpoint"], ("size", "root"), "uid.last_checkpoint")
    sigs = wire.members(m["signatures"], ("sigkey",), "uid.signatures",
                    optional=("sigescrow", "previous"))
    previous_role = sig_previous = None
    if "previous" in sigs:
        prev = wire.members(sigs["previous"], ("key", "signature"), "uid.signatures.previous")
        previous_role = wire.string(prev, "key", "uid.signatures.previous")
        if previous_role not in PREVIOUS_ROLES:
            raise DecodeError("signatures.previous.key must be sigkey or sigescrow",
                              requirement="HC-17")
        sig_previous = _sig(prev, "signature", "uid.signatures.previous")
    content = UidContent(
        identity=identity,
        msg_count=_uint(m, "msg_count", "uid", 2**32 - 1),
        not_before=_uint(m, "not_before", "uid", MAX_INDEX),
        not_after=_uint(m, "not_after", "uid", MAX_INDEX),
        sigkey=_key(m, "sigkey", "uid"),
        sigescrow=_key(m, "sigescrow", "uid"),
        x25519=_key(pk, "x25519", "uid.public_keys"),
        last_checkpoint=LastCheckpoint(
            size=_uint(last, "size", "uid.last_checkpoint", MAX_INDEX),
            root=b64url_decode_exact(wire.string(last, "root", "uid.last_checkpoint"),
                                     HASH_LEN, field="last_checkpoint.root",
                                     requirement="API-1")),
        previous=(b64url_decode_exact(wire.string(m, "previous", "uid"), HASH_LEN,
                                      field="previous", requirement="API-1")
                  if "previous" in m else None))
    primitives.check_x25519_public_key(content.x25519, requirement="HC-15")
    return Uid(content=content, sig_sigkey=_sig(sigs, "sigkey", "uid.signatures"),
               sig_sigescrow=_sig(sigs, "sigescrow", "uid.signatures") if "sigescrow" in sigs
               else None, previous_role=previous_role, sig_previous=sig_previous)


def check_uid_validity(c: UidContent, *, now: int | None) -> None:
    """Step 10 (HC-18): a bounded validity period that contains now (if given)."""
    if not c.not_before < c.not_after or c.not_after - c.not_before > MAX_UID_VALIDITY:
        raise ParamsError("UID validity must be non-empty and at most 366 days",
                          requirement="HC-18")
    if now is not None and not c.not_before <= now < c.not_after:
        raise ExpiredError("UID is not valid now", requirement="HC-18")


def verify_uid_create(uid: Uid, *, now: int | None, domains: Sequence[str] | None = None
                      ) -> bytes:
    """Step 10 (HC-14, HC-16, HC-18): a creation; returns the UID's record hash. With
    `now` None (a client checking history) the validity period is not compared to a time."""
    c = uid.content
    check_identity(c.identity, domains=domains)
    if c.msg_count != 0 or c.previous is not None or uid.sig_previous is not None:
        raise BindingError("a creation has msg_count 0 and no previous UID",
                           requirement="HC-17")
    if c.sigkey == c.sigescrow:
        raise BindingError("SIGKEY and SIGESCROW must be different keys", requirement="HC-16")
    body = uid_content_bytes(c)
    if uid.sig_sigescrow is None:
        raise SignatureError("a creation must be signed by SIGESCROW", requirement="HC-16")
    primitives.ed25519_verify(c.sigkey, uid_signature_message("sigkey", body), uid.sig_sigkey,
                              requirement="HC-16")
    primitives.ed25519_verify(c.sigescrow, uid_signature_message("sigescrow", body),
                              uid.sig_sigescrow, requirement="HC-16")
    check_uid_validity(c, now=now)
    return uid_record_hash(uid)


def verify_uid_update(uid: Uid, previous: Uid, *, now: int | None,
                      domains: Sequence[str] | None = None) -> bytes:
    """Step 10 (HC-17, HC-18): an update chains to and is authorised by the previous UID."""
    c, p = uid.content, previous.content
    check_identity(c.identity, domains=domains)
    if c.identity != p.identity:
        raise BindingError("an update must keep the identity", requirement="HC-17")
    if c.sigkey == c.sigescrow:
        raise BindingError("SIGKEY and SIGESCROW must be different keys", requirement="HC-16")
    if c.msg_count != p.msg_count + 1:
        raise ReplayError("msg_count must be exactly one more than the previous UID's",
                          requirement="HC-17")
    if c.previous != uid_record_hash(previous):
        raise LinkError("previous does not name the current UID", requirement="HC-17")
    body = uid_content_bytes(c)
    primitives.ed25519_verify(c.sigkey, uid_signature_message("sigkey", body), uid.sig_sigkey,
                              requirement="HC-17")
    # parse_uid and sign_uid set previous_role exactly when sig_previous is set.
    if uid.sig_previous is None:
        raise SignatureError("an update must be signed by a key of the previous UID",
                             requirement="HC-17")
    escrow_changed = c.sigescrow != p.sigescrow
    if escrow_changed and uid.previous_role != "sigescrow":
        raise AuthzError("changing SIGESCROW needs the previous SIGESCROW", requirement="HC-17")
    signer = p.sigkey if uid.previous_role == "sigkey" else p.sigescrow
    primitives.ed25519_verify(signer, uid_signature_message(f"previous-{uid.previous_role}",
                                                            body),
                              uid.sig_previous, requirement="HC-17")
    if escrow_changed or uid.sig_sigescrow is not None:
        if uid.sig_sigescrow is None:
            raise SignatureError("a new SIGESCROW must sign the update", requirement="HC-17")
        primitives.ed25519_verify(c.sigescrow, uid_signature_message("sigescrow", body),
                                  uid.sig_sigescrow, requirement="HC-17")
    check_uid_validity(c, now=now)
    return uid_record_hash(uid)


def check_last_checkpoint(last: LastCheckpoint, *, root_at: Callable[[int], bytes],
                          log_size: int, max_lag: int = DEFAULT_MAX_CHECKPOINT_LAG) -> None:
    """Step 10 (HC-19), server side: the UID's last checkpoint is one of this log, and
    recent. `root_at(size)` is the log's root at a size no larger than its own."""
    if not 0 < last.size <= log_size or root_at(last.size) != last.root:
        raise LinkError("last_checkpoint is not a checkpoint of this log", requirement="HC-19")
    if log_size - last.size > max_lag:
        raise ExpiredError(f"last_checkpoint is more than {max_lag} entries old",
                           requirement="HC-19")


def check_update_path(uid: Uid, identity: str, *, domains: Sequence[str] | None) -> None:
    """Step 10 (HC-14, HC-17), server side: an update addressed to an identity's path is
    for that identity, which the server serves."""
    if uid.content.identity != identity:
        raise BindingError("the UID is for another identity than the path",
                           requirement="HC-17")
    check_identity(identity, domains=domains)


def decide_create(existing: Uid | None) -> None:
    """Step 10 (HC-20), server side: one creation per identity, ever."""
    if existing is not None:
        raise ReplayError("this identity already has a UID", requirement="HC-20")


class UnknownIdentity(SpecError):
    """An update, KeyInit or flush for an identity that has no UID (answered 404)."""

    failure_class = "binding"


def decide_update(current: Uid | None, uid: Uid, *, now: int,
                  domains: Sequence[str] | None = None) -> bytes:
    """Step 10 (HC-17, HC-20), server side: an update needs a current UID to replace."""
    if current is None:
        raise UnknownIdentity("this identity has no UID to update", requirement="HC-20")
    return verify_uid_update(uid, current, now=now, domains=domains)


# --- step 11: the key server's reply: a tlog-proof of the UID's entry ---------------------------

@dataclass(frozen=True)
class UidReply:
    index: int
    entry: bytes
    record_hash: bytes
    proof: note.TlogProof


def make_uid_reply(*, index: int, entry: bytes, record_hash: bytes, inclusion: Sequence[bytes],
                   checkpoint: bytes) -> UidReply:
    """Step 11 (HC-21): the entry, its index and a tlog-proof of it in a checkpoint."""
    return UidReply(index=index, entry=entry, record_hash=record_hash,
                    proof=note.TlogProof(index=index, proof=tuple(inclusion),
                                         checkpoint=checkpoint))


def uid_reply_to_wire(uid: Uid, reply: UidReply) -> dict[str, Any]:
    return {"uid": uid_to_wire(uid), "index": reply.index, "entry": b64url_encode(reply.entry),
            "record_hash": b64url_encode(reply.record_hash),
            "proof": reply.proof.to_bytes().decode("utf-8")}


def parse_uid_reply(obj: object) -> UidReply:
    m = wire.members(obj, ("uid", "index", "entry", "record_hash", "proof"), "reply")
    return UidReply(index=_uint(m, "index", "reply", MAX_INDEX),
                    entry=b64url_decode_exact(wire.string(m, "entry", "reply"), 129,
                                              field="entry", requirement="API-1"),
                    record_hash=b64url_decode_exact(wire.string(m, "record_hash", "reply"),
                                                    HASH_LEN, field="record_hash",
                                                    requirement="API-1"),
                    proof=note.parse_tlog_proof(wire.string(m, "proof", "reply")
                                                .encode("utf-8")))


def verify_uid_reply(reply: UidReply, uid: Uid, *, origin: str,
                     log_keys: Sequence[note.Verifier],
                     policy: note.WitnessPolicy | None = None,
                     now: int | None = None) -> note.VerifiedCheckpoint:
    """Step 11 (HC-21), client side, in order: the reply is for this UID (binding); its
    checkpoint verifies (HC-38, HC-41); the proof is for the reply's index (binding); the
    entry is included there (proof); the entry names this identity and UID (binding).
    (The original compared a value with itself here.)"""
    record_hash = uid_record_hash(uid)
    if reply.record_hash != record_hash:
        raise BindingError("reply is for another UID", requirement="HC-21")
    verified = note.verify_checkpoint(reply.proof.checkpoint, origin=origin, log_keys=log_keys,
                                      policy=policy, now=now)
    if reply.proof.index != reply.index:
        raise BindingError("the proof is for another index than the reply", requirement="HC-21")
    merkle.verify_inclusion(index=reply.index, size=verified.checkpoint.size,
                            leaf=entry_leaf_hash(reply.entry), proof=reply.proof.proof,
                            root=verified.checkpoint.root_hash)
    check_entry_for(reply.entry, subject=uid.content.identity.encode("ascii"),
                    record_hash=record_hash)
    return verified


# --- step 12: the sealed repository copy -------------------------------------------------------

def uid_seal_key(record_hash: bytes) -> bytes:
    """Step 12 (HC-24): the key of a UID's sealed copy, known only to who knows its hash."""
    return labelled_hkdf(record_hash, "hashchain-uid-seal-key")


def seal_uid(uid: Uid) -> bytes:
    """Step 12 (HC-24): the repository serves UIDs sealed, so record indexes (public) do not
    reveal identities. The key is used for one plaintext only, so the GCM nonce is zero."""
    record_hash = uid_record_hash(uid)
    return primitives.aes256gcm_encrypt(uid_seal_key(record_hash), ZERO_GCM_NONCE, uid_json(uid),
                                        labelled_context("hashchain-uid-seal",
                                                         record_index_of(record_hash)))


def open_sealed_uid(sealed: bytes, record_hash: bytes) -> Uid:
    """Step 12 (HC-24), client side: open, parse, and check the UID hashes as recorded."""
    plaintext = primitives.aes256gcm_decrypt(uid_seal_key(record_hash), ZERO_GCM_NONCE, sealed,
                                             labelled_context("hashchain-uid-seal",
                                                              record_index_of(record_hash)),
                                             requirement="HC-24")
    try:
        obj = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("sealed UID is not JSON", requirement="HC-24") from exc
    uid = parse_uid(obj)
    if uid_record_hash(uid) != record_hash:
        raise BindingError("sealed UID does not hash to its record hash", requirement="HC-24")
    return uid


# --- step 13: KeyInits --------------------------------------------------------------------------

KEYINIT_ID_LEN = 16


@dataclass(frozen=True)
class KeyInit:
    identity: str
    sigkey: bytes
    key_id: bytes
    not_before: int
    not_after: int
    x25519: bytes
    signature: bytes


def keyinit_message(identity: str, sigkey: bytes, key_id: bytes, not_before: int,
                    not_after: int, x25519: bytes) -> bytes:
    """Step 13 (HC-25): what SIGKEY signs for one one-time key."""
    return labelled_context("hashchain-keyinit", identity.encode("ascii"), sigkey, key_id,
                            u64be(not_before), u64be(not_after), x25519)


def make_keyinit(*, identity: str, sigkey_seed: bytes, not_before: int, not_after: int,
                 random: RandomSource) -> tuple[KeyInit, bytes]:
    """Step 13: a fresh one-time X25519 key; returns the KeyInit and its private key."""
    private = random(32)
    key_id = random(KEYINIT_ID_LEN)
    sigkey = primitives.ed25519_public_key(sigkey_seed)
    x25519 = primitives.x25519_public_key(private)
    signature = primitives.ed25519_sign(sigkey_seed, keyinit_message(
        identity, sigkey, key_id, not_before, not_after, x25519))
    return KeyInit(identity=identity, sigkey=sigkey, key_id=key_id, not_before=not_before,
                   not_after=not_after, x25519=x25519, signature=signature), private


def keyinit_to_wire(ki: KeyInit) -> dict[str, Any]:
    return {"identity": ki.identity, "sigkey": b64url_encode(ki.sigkey),
            "key_id": b64url_encode(ki.key_id), "not_before": ki.not_before,
            "not_after": ki.not_after, "x25519": b64url_encode(ki.x25519),
            "signature": b64url_encode(ki.signature)}


def parse_keyinit(obj: object) -> KeyInit:
    m = wire.members(obj, ("identity", "sigkey", "key_id", "not_before", "not_after", "x25519",
                       "signature"), "keyinit")
    identity = wire.string(m, "identity", "keyinit")
    check_identity(identity)
    ki = KeyInit(identity=identity, sigkey=_key(m, "sigkey", "keyinit"),
                 key_id=b64url_decode_exact(wire.string(m, "key_id", "keyinit"), KEYINIT_ID_LEN,
                                            field="key_id", requirement="API-1"),
                 not_before=_uint(m, "not_before", "keyinit", MAX_INDEX),
                 not_after=_uint(m, "not_after", "keyinit", MAX_INDEX),
                 x25519=_key(m, "x25519", "keyinit"), signature=_sig(m, "signature", "keyinit"))
    primitives.check_x25519_public_key(ki.x25519, requirement="HC-25")
    return ki


def verify_keyinit(ki: KeyInit, *, identity: str, current_sigkey: bytes, now: int) -> None:
    """Step 13 (HC-25, HC-26): for this identity, signed by its current SIGKEY, in date."""
    if ki.identity != identity:
        raise BindingError("KeyInit is for another identity", requirement="HC-26")
    if ki.sigkey != current_sigkey:
        raise AuthzError("KeyInit is not signed by the identity's current SIGKEY",
                         requirement="HC-26")
    primitives.ed25519_verify(ki.sigkey, keyinit_message(ki.identity, ki.sigkey, ki.key_id,
                                                         ki.not_before, ki.not_after, ki.x25519),
                              ki.signature, requirement="HC-25")
    if not ki.not_before < ki.not_after or ki.not_after - ki.not_before > MAX_KEYINIT_LIFETIME:
        raise ParamsError("KeyInit lifetime must be non-empty and at most 90 days",
                          requirement="HC-25")
    if now >= ki.not_after:
        raise ExpiredError("KeyInit has expired", requirement="HC-25")


def decide_keyinits(keyinits: Sequence[KeyInit], *, identity: str, current_sigkey: bytes,
                    now: int, known: Callable[[bytes], bool]) -> None:
    """Step 13 (HC-25, HC-26), server side: all or nothing; each KeyInit valid for the
    identity's current SIGKEY, and no key_id seen before (`known`) or twice in the batch."""
    seen: set[bytes] = set()
    for ki in keyinits:
        verify_keyinit(ki, identity=identity, current_sigkey=current_sigkey, now=now)
        if ki.key_id in seen or known(ki.key_id):
            raise ReplayError("a KeyInit key_id was published before", requirement="HC-26")
        seen.add(ki.key_id)


def keyinit_servable(ki: KeyInit, *, now: int) -> bool:
    """Step 13 (HC-27): only KeyInits inside their validity period are handed out."""
    return ki.not_before <= now < ki.not_after


@dataclass
class KeyInitPool:
    """Step 13 (HC-27), the server's state as a model: each KeyInit leaves the pool when
    handed out, so no KeyInit is served twice. Servers must make take() atomic."""

    pending: dict[str, list[KeyInit]] = field(default_factory=dict)
    seen_ids: set[bytes] = field(default_factory=set)

    def add(self, ki: KeyInit) -> None:
        if ki.key_id in self.seen_ids:
            raise ReplayError("KeyInit key_id was already published", requirement="HC-26")
        self.seen_ids.add(ki.key_id)
        self.pending.setdefault(ki.identity, []).append(ki)

    def take(self, identity: str, *, now: int) -> KeyInit | None:
        queue = self.pending.get(identity, [])
        queue[:] = [k for k in queue if now < k.not_after]
        for i, ki in enumerate(queue):
            if keyinit_servable(ki, now=now):
                return queue.pop(i)
        return None

    def flush(self, identity: str) -> int:
        return len(self.pending.pop(identity, []))


@dataclass(frozen=True)
class FlushRequest:
    identity: str
    timestamp: int
    nonce: bytes
    signature: bytes


def flush_message(origin: str, identity: str, timestamp: int, nonce: bytes) -> bytes:
    """Step 13 (HC-28): bound to the keyserver, the identity, a time and a nonce. The
    origin was checked where it entered (check_origin: the server's configuration, the
    client's LogFollower)."""
    return labelled_context("hashchain-keyinit-flush", origin.encode("ascii"),
                            identity.encode("ascii"), u64be(timestamp), nonce)


def make_flush_request(*, origin: str, identity: str, sigkey_seed: bytes, timestamp: int,
                       nonce: bytes) -> FlushRequest:
    require_len(nonce, NONCE_LEN, "flush nonce", "HC-28")
    return FlushRequest(identity=identity, timestamp=timestamp, nonce=nonce,
                        signature=primitives.ed25519_sign(
                            sigkey_seed, flush_message(origin, identity, timestamp, nonce)))


def flush_to_wire(req: FlushRequest) -> dict[str, Any]:
    return {"identity": req.identity, "timestamp": req.timestamp,
            "nonce": b64url_encode(req.nonce), "signature": b64url_encode(req.signature)}


def parse_flush(obj: object) -> FlushRequest:
    m = wire.members(obj, ("identity", "timestamp", "nonce", "signature"), "flush")
    identity = wire.string(m, "identity", "flush")
    check_identity(identity)
    return FlushRequest(identity=identity, timestamp=_uint(m, "timestamp", "flush", MAX_INDEX),
                        nonce=b64url_decode_exact(wire.string(m, "nonce", "flush"), NONCE_LEN,
                                                  field="nonce", requirement="API-1"),
                        signature=_sig(m, "signature", "flush"))


def verify_flush(req: FlushRequest, *, origin: str, identity: str, current_sigkey: bytes,
                 now: int, nonce_seen: bool) -> None:
    """Step 13 (HC-28): signed by the current SIGKEY, fresh, never replayed."""
    if req.identity != identity:
        raise BindingError("flush request is for another identity", requirement="HC-28")
    primitives.ed25519_verify(current_sigkey, flush_message(origin, req.identity, req.timestamp,
                                                            req.nonce),
                              req.signature, requirement="HC-28")
    if abs(now - req.timestamp) > FLUSH_WINDOW:
        raise ExpiredError("flush request is not fresh", requirement="HC-28")
    if nonce_seen:
        raise ReplayError("flush request was already used", requirement="HC-28")


# --- step 13: keypair publications in the log ---------------------------------------------------

def publication_subject(user_id: str, client_id: str) -> bytes:
    """Step 13 (HC-29): '/' is outside the identifier syntax, so the pair is unambiguous."""
    return check_identifier(user_id, "user_id") + b"/" + check_identifier(client_id, "client_id")


def publication_record_hash(user_id: str, client_id: str, key_version: int, x25519: bytes,
                            ed25519: bytes, binding_signature: bytes) -> bytes:
    """Step 13 (HC-29): the record hash of a public view (keypair-publication KP-4 fields)."""
    return record_hash_of(TYPE_PUBLICATION, check_identifier(user_id, "user_id"),
                          check_identifier(client_id, "client_id"), u32be(key_version), x25519,
                          ed25519, binding_signature)


# --- JSON helpers -----------------------------------------------------------------------------

def _uint(obj: dict[str, Any], key: str, where: str, maximum: int) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise DecodeError(f"{where}.{key} must be an integer in 0..{maximum}",
                          requirement="API-6")
    return value


def _key(obj: dict[str, Any], key: str, where: str) -> bytes:
    return b64url_decode_exact(wire.string(obj, key, where), 32, field=f"{where}.{key}",
                               requirement="API-1")


def _sig(obj: dict[str, Any], key: str, where: str) -> bytes:
    return b64url_decode_exact(wire.string(obj, key, where), primitives.ED25519_SIG_LEN,
                               field=f"{where}.{key}", requirement="API-1")
