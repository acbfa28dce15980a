"""Vectors of the hashchain flow, profile v1: UIDs, the log's reply, the sealed
repository, identity history, KeyInits and flush requests (steps 9-13 of the chapter).

  verify-uid-create, verify-uid-update   creations and updates, positive and mutated
  verify-uid-reply      the reply's tlog-proof: the entry included in a signed checkpoint,
                        naming this identity and UID (HC-21)
  open-sealed-uid       the repository's sealed copy (HC-24)
  identity-history      an identity's UIDs read from the log: one creation, then updates
                        (HC-13, HC-48, HC-49), with a forged second creation and an update
                        signed by the wrong key among the negatives
  verify-keyinit, verify-flush   KeyInits and flush requests (HC-25 .. HC-28)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.vectors.framework import (
    Case,
    Failure,
    Outcome,
    compare,
    expect_rejection,
    hx,
)
from keyflows.vectors.hashchain_log import (
    NOW,
    ORIGIN,
    WITNESS_NAMES,
    flip,
    reference,
    vkeys,
    witness_seed,
    witness_vkey,
)

DOMAINS = ("example.org",)
OP_UID_CREATE = "verify-uid-create"
OP_UID_UPDATE = "verify-uid-update"
OP_UID_REPLY = "verify-uid-reply"
OP_SEALED_UID = "open-sealed-uid"
OP_HISTORY = "identity-history"
OP_KEYINIT = "verify-keyinit"
OP_FLUSH = "verify-flush"
STEP_UID, STEP_REPLY, STEP_HISTORY, STEP_KEYINIT = "10", "11", "9", "13"


@dataclass(frozen=True)
class User:
    identity: str
    sigkey_seed: bytes
    escrow_seed: bytes
    x25519_private: bytes
    rnd: Drbg

    @property
    def sigkey(self) -> bytes:
        return primitives.ed25519_public_key(self.sigkey_seed)


@cache
def alice() -> User:
    rnd = Drbg("hashchain/v1/uid/alice")
    return User("alice@example.org", rnd(32), rnd(32), rnd(32), rnd)


def _content(user: User, *, msg_count: int = 0, previous: bytes | None = None,
             sigkey_seed: bytes | None = None, escrow_seed: bytes | None = None,
             not_before: int = NOW - 3600, not_after: int = NOW + 30 * 86400,
             identity: str | None = None, x25519: bytes | None = None) -> hu.UidContent:
    base = reference()
    return hu.UidContent(
        identity=identity or user.identity, msg_count=msg_count, not_before=not_before,
        not_after=not_after,
        sigkey=primitives.ed25519_public_key(sigkey_seed or user.sigkey_seed),
        sigescrow=primitives.ed25519_public_key(escrow_seed or user.escrow_seed),
        x25519=x25519 or primitives.x25519_public_key(user.x25519_private),
        last_checkpoint=hu.LastCheckpoint(size=base.log.size, root=base.log.tree.root()),
        previous=previous)


def _create(user: User, **kw: Any) -> hu.Uid:
    escrow = kw.pop("sign_escrow", user.escrow_seed)
    return hu.sign_uid(_content(user, **kw), sigkey_seed=kw.get("sigkey_seed")
                       or user.sigkey_seed, sigescrow_seed=escrow)


@cache
def first_uid() -> hu.Uid:
    return _create(alice())


@cache
def update_material() -> tuple[bytes, bytes]:
    """(new SIGKEY seed, new SIGESCROW seed) of Alice's updates."""
    rnd = Drbg("hashchain/v1/uid/alice-update")
    return rnd(32), rnd(32)


def _update(*, msg_count: int = 1, previous: bytes | None = None, escrow: bytes | None = None,
            role: str = "sigkey", signer: bytes | None = None,
            escrow_signs: bool = False, identity: str | None = None) -> hu.Uid:
    user, first = alice(), first_uid()
    new_sigkey, _ = update_material()
    content = _content(user, msg_count=msg_count,
                       previous=previous if previous is not None else hu.uid_record_hash(first),
                       sigkey_seed=new_sigkey, escrow_seed=escrow, identity=identity)
    return hu.sign_uid(content, sigkey_seed=new_sigkey,
                       sigescrow_seed=(escrow or user.escrow_seed) if escrow_signs else None,
                       previous_seed=signer or (user.sigkey_seed if role == "sigkey"
                                                else user.escrow_seed),
                       previous_role=role)


def _uid_intermediates(uid: hu.Uid) -> dict[str, Any]:
    content = hu.uid_content_bytes(uid.content)
    record_hash = hu.uid_record_hash(uid)
    out: dict[str, Any] = {
        "content": content,
        "sigkey_message": hu.uid_signature_message("sigkey", content),
        "sigescrow_message": hu.uid_signature_message("sigescrow", content),
        "record_hash": record_hash, "record_index": hc.record_index_of(record_hash)}
    if uid.previous_role is not None:
        out["previous_message"] = hu.uid_signature_message(f"previous-{uid.previous_role}",
                                                           content)
    return out


def _wire_with(uid: hu.Uid, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    wire = copy.deepcopy(hu.uid_to_wire(uid))
    node = wire
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return wire


_DELETE = object()


def _uid_create_cases() -> list[Case]:
    user, uid = alice(), first_uid()
    rnd = Drbg("hashchain/v1/uid/create-mutations")
    wire = hu.uid_to_wire(uid)
    sig = Failure("signature", STEP_UID)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, uid_wire: dict[str, Any], *, now: int = NOW,
             domains: Sequence[str] = DOMAINS, extra: Mapping[str, Any] | None = None
             ) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/uid-create/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_UID_CREATE,
                    inputs={"uid": uid_wire, "now": now, "domains": list(domains),
                            **(extra or {})},
                    intermediates=_uid_intermediates(uid) if valid else {},
                    outputs={"record_hash": hu.uid_record_hash(uid)} if valid else {},
                    failure=failure)

    return [
        case("valid", "Alice's first UID, signed by SIGKEY and SIGESCROW", ("Valid", "Producer"),
             ("HC-14", "HC-15", "HC-16", "HC-18"), None, wire,
             extra={"producer": {"sigkey_seed": user.sigkey_seed,
                                 "sigescrow_seed": user.escrow_seed,
                                 "x25519_private": user.x25519_private}}),
        case("bitflip-sigkey-signature", "the SIGKEY signature has one bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigkey"), b64url_encode(flip(uid.sig_sigkey, 0)))),
        case("bitflip-sigescrow-signature", "the SIGESCROW signature has one bit flipped: one "
             "bad signature of two", ("BitFlip", "WrongSignature"), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"),
                        b64url_encode(flip(uid.sig_sigescrow or b"", 63)))),
        case("sigescrow-signature-missing", "a creation signed by SIGKEY only",
             ("MissingSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), _DELETE)),
        case("sigkey-signature-as-escrow", "the SIGKEY signature copied into the SIGESCROW "
             "slot (roles are separated)", ("WrongSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), b64url_encode(uid.sig_sigkey))),
        case("same-keys", "SIGESCROW is the SIGKEY (both signatures valid)", ("SameKeys",),
             ("HC-16",), Failure("binding", STEP_UID),
             hu.uid_to_wire(_create(user, escrow_seed=user.sigkey_seed,
                                    sign_escrow=user.sigkey_seed))),
        case("expired", "now is after not_after", ("Expired",), ("HC-18",),
             Failure("expired", STEP_UID), wire, now=uid.content.not_after),
        case("not-yet-valid", "now is before not_before", ("Expired",), ("HC-18",),
             Failure("expired", STEP_UID), wire, now=uid.content.not_before - 1),
        case("validity-too-long", "not_after - not_before is 366 days and one second",
             ("ParamsOutOfRange",), ("HC-18",), Failure("params", STEP_UID),
             hu.uid_to_wire(_create(user, not_after=NOW - 3600 + hu.MAX_UID_VALIDITY + 1))),
        case("identity-not-mapped", "identity \"Alice@example.org\" is not in mapped form",
             ("BadIdentity",), ("HC-14",), Failure("decode", STEP_UID),
             hu.uid_to_wire(_create(user, identity="Alice@example.org"))),
        case("identity-with-digit-one", "identity \"al1ce@example.org\" maps to "
             "\"allce@example.org\"", ("BadIdentity",), ("HC-14",), Failure("decode", STEP_UID),
             hu.uid_to_wire(_create(user, identity="al1ce@example.org"))),
        case("domain-not-served", "the server serves example.com only", ("BadIdentity",),
             ("HC-14",), Failure("binding", STEP_UID), wire, domains=("example.com",)),
        case("msg-count-not-zero", "a creation with msg_count 1", ("NotACreation",), ("HC-17",),
             Failure("binding", STEP_UID), hu.uid_to_wire(_create(user, msg_count=1))),
        case("low-order-x25519", "the X25519 key is u = 1 (order 4), signed",
             ("LowOrderPoint",), ("HC-15",), Failure("point", STEP_UID),
             hu.uid_to_wire(_create(user, x25519=(1).to_bytes(32, "little")))),
        case("unknown-member", "the UID carries a member \"comment\"", ("UnknownMember",),
             ("API-6",), Failure("decode", STEP_UID), {**wire, "comment": "hi"}),
        case("missing-member", "the UID has no last_checkpoint", ("MissingMember",),
             ("API-6",), Failure("decode", STEP_UID),
             _wire_with(uid, ("last_checkpoint",), _DELETE)),
        case("truncated-sigkey", "sigkey decodes to 31 bytes", ("Truncated",), ("API-1",),
             Failure("length", STEP_UID),
             _wire_with(uid, ("sigkey",), b64url_encode(uid.content.sigkey[:-1]))),
        case("relabelled-identity", "identity changed to bob@example.org after signing",
             ("ForeignContext",), ("HC-16",), sig,
             _wire_with(uid, ("identity",), "bob@example.org")),
        case("relabelled-validity", "not_after moved one day later after signing",
             ("BitFlip",), ("HC-16",), sig,
             _wire_with(uid, ("not_after",), uid.content.not_after + 86400)),
        case("identity-point-sigkey", "SIGKEY is the identity point with the signature "
             "R = identity, S = 0, which a lax verifier accepts for any message",
             ("LaxEd25519Signature",), ("HC-35", "HC-16"), Failure("point", STEP_UID),
             _lax_identity(uid)),
        case("sigkey-signature-s-plus-l", "the SIGKEY signature with S + L in place of S",
             ("LaxEd25519Signature",), ("HC-35", "HC-16"), sig,
             _wire_with(uid, ("signatures", "sigkey"), b64url_encode(
                 uid.sig_sigkey[:32] + (int.from_bytes(uid.sig_sigkey[32:], "little")
                                        + primitives.ED25519_L).to_bytes(32, "little")))),
        case("stranger-escrow-signature", "the SIGESCROW signature made by another key",
             ("WrongSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), b64url_encode(
                 primitives.ed25519_sign(rnd(32), hu.uid_signature_message(
                     "sigescrow", hu.uid_content_bytes(uid.content)))))),
    ]


IDENTITY_POINT = bytes([1]) + bytes(31)


def _lax_identity(uid: hu.Uid) -> dict[str, Any]:
    """The UID with SIGKEY the identity point; the SIGESCROW signature re-made over it."""
    content = hu.UidContent(**{**vars(uid.content), "sigkey": IDENTITY_POINT})
    body = hu.uid_content_bytes(content)
    lax = hu.Uid(content=content, sig_sigkey=IDENTITY_POINT + bytes(32),
                 sig_sigescrow=primitives.ed25519_sign(alice().escrow_seed,
                                                       hu.uid_signature_message("sigescrow",
                                                                                body)),
                 previous_role=None, sig_previous=None)
    return hu.uid_to_wire(lax)


def _uid_update_cases() -> list[Case]:
    first = first_uid()
    _, new_escrow = update_material()
    first_wire = hu.uid_to_wire(first)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, uid: hu.Uid | dict[str, Any]) -> Case:
        valid = failure is None
        assert isinstance(uid, hu.Uid) or not valid
        uid_wire = hu.uid_to_wire(uid) if isinstance(uid, hu.Uid) else uid
        return Case(id=f"hc-v1/uid-update/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_UID_UPDATE,
                    inputs={"uid": uid_wire, "previous": first_wire, "now": NOW,
                            "domains": list(DOMAINS)},
                    intermediates=_uid_intermediates(uid) if isinstance(uid, hu.Uid) and valid
                    else {},
                    outputs={"record_hash": hu.uid_record_hash(uid)}
                    if isinstance(uid, hu.Uid) and valid else {},
                    failure=failure)

    ok = _update()
    return [
        case("by-previous-sigkey", "a new SIGKEY, authorised by the previous SIGKEY",
             ("Valid",), ("HC-15", "HC-17"), None, ok),
        case("escrow-change", "a new SIGESCROW, authorised by the previous SIGESCROW and "
             "signed by the new one", ("Valid",), ("HC-15", "HC-17"), None,
             _update(escrow=new_escrow, role="sigescrow", escrow_signs=True)),
        case("msg-count-not-advanced", "msg_count stays 0", ("Replay",), ("HC-17",),
             Failure("replay", STEP_UID), _update(msg_count=0)),
        case("msg-count-skips", "msg_count jumps to 2", ("Replay",), ("HC-17",),
             Failure("replay", STEP_UID), _update(msg_count=2)),
        case("previous-wrong", "previous names another UID", ("BrokenLink",), ("HC-17",),
             Failure("link", STEP_UID), _update(previous=Drbg("hashchain/v1/uid/other")(32))),
        case("previous-signature-by-stranger", "the \"previous\" signature is made by the new "
             "SIGKEY instead of the previous one", ("WrongSignature",), ("HC-17",),
             Failure("signature", STEP_UID), _update(signer=update_material()[0])),
        case("escrow-change-by-sigkey", "a new SIGESCROW authorised only by the previous SIGKEY",
             ("Unauthorised",), ("HC-17",), Failure("authz", STEP_UID),
             _update(escrow=new_escrow, escrow_signs=True)),
        case("escrow-change-unsigned-by-new-escrow", "a new SIGESCROW authorised by the "
             "previous one, but the new SIGESCROW does not sign", ("MissingSignature",),
             ("HC-17",), Failure("signature", STEP_UID),
             _update(escrow=new_escrow, role="sigescrow")),
        case("identity-changed", "the update claims bob@example.org", ("ForeignContext",),
             ("HC-17",), Failure("binding", STEP_UID), _update(identity="bob@example.org")),
        case("previous-signature-missing", "an update signed by its own SIGKEY only",
             ("MissingSignature",), ("HC-17",), Failure("signature", STEP_UID),
             _wire_with(ok, ("signatures", "previous"), _DELETE)),
    ]


def _sealed_uid_cases() -> list[Case]:
    uid = first_uid()
    record_hash = hu.uid_record_hash(uid)
    sealed = hu.seal_uid(uid)
    aead = Failure("aead", "12")
    return [
        Case(id="hc-v1/sealed-uid/valid", comment="Alice's UID as the repository serves it",
             flags=("Valid",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": sealed, "record_hash": record_hash},
             intermediates={"key": hu.uid_seal_key(record_hash), "plaintext": hu.uid_json(uid)},
             outputs={"uid": hu.uid_to_wire(uid)}),
        Case(id="hc-v1/sealed-uid/bitflip", comment="one bit of the sealed UID flipped",
             flags=("BitFlip",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": flip(sealed, 10), "record_hash": record_hash},
             failure=aead),
        Case(id="hc-v1/sealed-uid/wrong-record-hash", comment="opened with another record "
             "hash", flags=("WrongKey",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": sealed,
                     "record_hash": Drbg("hashchain/v1/sealed-uid")(32)}, failure=aead),
    ]


def _keyinit_cases() -> list[Case]:
    user = alice()
    rnd = Drbg("hashchain/v1/keyinit")
    ki, _private = hu.make_keyinit(identity=user.identity, sigkey_seed=user.sigkey_seed,
                                   not_before=NOW - 60, not_after=NOW + 7 * 86400, random=rnd)
    wire = hu.keyinit_to_wire(ki)
    long_ki, _ = hu.make_keyinit(identity=user.identity, sigkey_seed=user.sigkey_seed,
                                 not_before=NOW - 60,
                                 not_after=NOW - 60 + hu.MAX_KEYINIT_LIFETIME + 1, random=rnd)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, k: dict[str, Any], *, now: int = NOW,
             identity: str | None = None, sigkey: bytes | None = None) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/keyinit/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_KEYINIT,
                    inputs={"keyinit": k, "identity": identity or user.identity,
                            "current_sigkey": sigkey or user.sigkey, "now": now},
                    intermediates={"message": hu.keyinit_message(
                        ki.identity, ki.sigkey, ki.key_id, ki.not_before, ki.not_after,
                        ki.x25519)} if valid else {},
                    failure=failure)

    return [
        case("valid", "a one-time KeyInit signed by Alice's SIGKEY", ("Valid",),
             ("HC-25", "HC-26"), None, wire),
        case("signature-bitflip", "the signature has one bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-25",), Failure("signature", STEP_KEYINIT),
             {**wire, "signature": b64url_encode(flip(ki.signature, 1))}),
        case("x25519-replaced", "the one-time key replaced after signing", ("BitFlip",),
             ("HC-25",), Failure("signature", STEP_KEYINIT),
             {**wire, "x25519": b64url_encode(primitives.x25519_public_key(rnd(32)))}),
        case("not-current-sigkey", "signed by a key that is not the identity's current SIGKEY",
             ("Unauthorised",), ("HC-26",), Failure("authz", STEP_KEYINIT), wire,
             sigkey=primitives.ed25519_public_key(user.escrow_seed)),
        case("other-identity", "presented for bob@example.org", ("ForeignContext",),
             ("HC-26",), Failure("binding", STEP_KEYINIT), wire, identity="bob@example.org"),
        case("expired", "now is its not_after", ("Expired",), ("HC-25",),
             Failure("expired", STEP_KEYINIT), wire, now=ki.not_after),
        case("lifetime-too-long", "a lifetime of 90 days and one second", ("ParamsOutOfRange",),
             ("HC-25",), Failure("params", STEP_KEYINIT), hu.keyinit_to_wire(long_ki)),
        case("low-order-x25519", "the one-time key is u = 0", ("LowOrderPoint",), ("HC-25",),
             Failure("point", STEP_KEYINIT), {**wire, "x25519": b64url_encode(bytes(32))}),
    ]


def _flush_cases() -> list[Case]:
    user = alice()
    rnd = Drbg("hashchain/v1/flush")
    req = hu.make_flush_request(origin=ORIGIN, identity=user.identity,
                                sigkey_seed=user.sigkey_seed, timestamp=NOW, nonce=rnd(16))
    wire = hu.flush_to_wire(req)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, *, now: int = NOW, nonce_seen: bool = False,
             origin: str = ORIGIN, w: dict[str, Any] | None = None) -> Case:
        return Case(id=f"hc-v1/flush/{slug}", comment=comment, flags=flags, requirements=reqs,
                    operation=OP_FLUSH,
                    inputs={"request": w or wire, "origin": origin, "identity": user.identity,
                            "current_sigkey": user.sigkey, "now": now, "nonce_seen": nonce_seen},
                    intermediates={"message": hu.flush_message(ORIGIN, user.identity, NOW,
                                                               req.nonce)}
                    if failure is None else {}, failure=failure)

    return [
        case("valid", "a fresh flush request signed by Alice's SIGKEY", ("Valid",), ("HC-28",),
             None, now=NOW + hu.FLUSH_WINDOW),
        case("stale", f"received {hu.FLUSH_WINDOW + 1} s after its timestamp", ("Stale",),
             ("HC-28",), Failure("expired", STEP_KEYINIT), now=NOW + hu.FLUSH_WINDOW + 1),
        case("replayed", "its nonce was used before", ("Replay",), ("HC-28",),
             Failure("replay", STEP_KEYINIT), nonce_seen=True),
        case("other-origin", "sent to another keyserver", ("WrongOrigin",), ("HC-28",),
             Failure("signature", STEP_KEYINIT), origin="other.example.org"),
        case("timestamp-changed", "the timestamp moved after signing", ("BitFlip",),
             ("HC-28",), Failure("signature", STEP_KEYINIT), w={**wire, "timestamp": NOW + 1}),
    ]



# --- step 11: the reply ----------------------------------------------------------------------

def _reply_material() -> tuple[hc.TransparencyLog, int, bytes]:
    """The reference log with Alice's creation appended: (log, index, entry)."""
    base = reference()
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=base.key_seed, nonce0=base.nonce0)
    for entry in base.log.entries[1:]:
        log.append_raw(entry)
    uid = first_uid()
    index, built = log.append_record(entry_type=hc.TYPE_UID,
                                     subject=uid.content.identity.encode("ascii"),
                                     record_hash=hu.uid_record_hash(uid),
                                     nonce=Drbg("hashchain/v1/uid/reply")(16))
    return log, index, built.entry


def _uid_reply_cases() -> list[Case]:
    uid = first_uid()
    log, index, entry = _reply_material()
    rnd = Drbg("hashchain/v1/uid/reply-mutations")
    record_hash = hu.uid_record_hash(uid)
    signed = log.signed_checkpoint()
    cosig = note.cosign(signed.text, name=WITNESS_NAMES[0], seed=witness_seed(WITNESS_NAMES[0]),
                        timestamp=NOW - 10)
    checkpoint = note.add_signatures(signed, [cosig]).to_bytes()
    proof = log.inclusion_proof(index)
    good = hu.make_uid_reply(index=index, entry=entry, record_hash=record_hash,
                             inclusion=proof, checkpoint=checkpoint)

    def wire(reply: hu.UidReply) -> dict[str, Any]:
        return hu.uid_reply_to_wire(uid, reply)

    def with_(**changes: Any) -> hu.UidReply:
        fields: dict[str, Any] = {
            "index": good.index, "entry": good.entry, "record_hash": good.record_hash,
            "inclusion": list(good.proof.proof), "checkpoint": good.proof.checkpoint}
        fields.update(changes)
        return hu.make_uid_reply(**fields)

    def case(slug: str, comment: str, flags: tuple[str, ...], reply: hu.UidReply,
             failure: Failure | None = None, *, quorum: int = 1,
             keys: Sequence[str] | None = None) -> Case:
        valid = failure is None
        built = hc.decode_entry(entry)
        return Case(id=f"hc-v1/uid-reply/{slug}", comment=comment, flags=flags,
                    requirements=("HC-21", "HC-36", "HC-38", "HC-41"), operation=OP_UID_REPLY,
                    inputs={"origin": ORIGIN, "log_keys": list(keys or vkeys(log)),
                            "witnesses": [witness_vkey(WITNESS_NAMES[0])], "quorum": quorum,
                            "now": NOW, "uid": hu.uid_to_wire(uid), "reply": wire(reply)},
                    intermediates={"leaf_hash": merkle.leaf_hash(entry),
                                   "root": log.tree.root()} if valid else {},
                    outputs={"hash_id": built.hash_id, "record_index": built.record_index,
                             "size": log.size} if valid else {}, failure=failure)

    other = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"bob@example.org",
                                  record_hash=record_hash, nonce=rnd(16)).entry
    stranger = note.sign_checkpoint(log.checkpoint(), seeds=[rnd(32)]).to_bytes()
    binding = Failure("binding", STEP_REPLY)
    return [
        case("valid", "the log's reply to Alice's creation: the entry, included in a "
             "checkpoint signed by the log and cosigned by a witness", ("Valid",), good),
        case("other-uid", "a reply for another record hash", ("ForeignContext",),
             with_(record_hash=rnd(32)), binding),
        case("checkpoint-by-stranger", "the checkpoint signed by a key the client does not "
             "trust", ("UnknownKey",), with_(checkpoint=stranger),
             Failure("signature", "5")),
        case("no-cosignature", "the checkpoint without the witness's cosignature, quorum 1",
             ("MissingCosignature",), with_(checkpoint=signed.to_bytes()),
             Failure("witness", "8")),
        case("proof-bitflip", "the inclusion proof with a bit flipped", ("BitFlip",),
             with_(inclusion=[flip(proof[0], 9), *proof[1:]]), Failure("proof", "3")),
        case("proof-truncated", "the inclusion proof one node short", ("Truncated",),
             with_(inclusion=proof[:-1]), Failure("proof", "3")),
        case("index-moved", "the reply names another index than its proof", ("WrongIndex",),
             hu.UidReply(index=index - 1, entry=entry, record_hash=record_hash,
                         proof=good.proof), binding),
        case("entry-of-other-identity", "an entry about bob@example.org, proven included",
             ("ForeignContext",), _other_entry_reply(uid, other, checkpoint_seed=reference()
                                                     .key_seed), binding, quorum=0),
    ]


def _other_entry_reply(uid: hu.Uid, other: bytes, *, checkpoint_seed: bytes) -> hu.UidReply:
    """A log that includes bob's entry where Alice's should be, with a valid proof."""
    base = reference()
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=base.key_seed, nonce0=base.nonce0)
    for data in base.log.entries[1:]:
        log.append_raw(data)
    index = log.append_raw(other)
    return hu.make_uid_reply(index=index, entry=other, record_hash=hu.uid_record_hash(uid),
                             inclusion=log.inclusion_proof(index),
                             checkpoint=log.signed_checkpoint().to_bytes())


# --- step 9: identity history ----------------------------------------------------------------

def _history_cases() -> list[Case]:
    user, first = alice(), first_uid()
    update = _update()
    rnd = Drbg("hashchain/v1/history")
    forged = hu.sign_uid(_content(user, sigkey_seed=rnd(32), escrow_seed=rnd(32)),
                         sigkey_seed=Drbg("hashchain/v1/history")(32),
                         sigescrow_seed=None)
    # The server's forged creation: keys it holds, signed by them.
    server_sigkey, server_escrow = rnd(32), rnd(32)
    forged = hu.sign_uid(_content(user, sigkey_seed=server_sigkey, escrow_seed=server_escrow),
                         sigkey_seed=server_sigkey, sigescrow_seed=server_escrow)
    stolen = _update(signer=rnd(32))

    def log_of(uids: Sequence[hu.Uid], label: str) -> list[bytes]:
        base = reference()
        log = hc.TransparencyLog(origin=ORIGIN, key_seed=base.key_seed, nonce0=base.nonce0)
        for data in base.log.entries[1:4]:
            log.append_raw(data)
        nonces = Drbg(f"hashchain/v1/history/{label}")
        for uid in uids:
            log.append_record(entry_type=hc.TYPE_UID, subject=user.identity.encode("ascii"),
                              record_hash=hu.uid_record_hash(uid), nonce=nonces(16))
            log.append_raw(base.log.entries[5])
        return log.entries

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             uids: Sequence[hu.Uid], failure: Failure | None = None, *,
             made: Sequence[hu.Uid] | None = None) -> Case:
        entries = log_of(uids, slug)
        outputs: dict[str, Any] = {}
        if failure is None:
            history = run_history(user.identity, entries, [hu.uid_to_wire(u) for u in uids],
                                  None if made is None else [hu.uid_record_hash(u) for u in made])
            outputs = {"indexes": [i.index for i in history.items],
                       "current": hu.uid_record_hash(history.current())}
        return Case(id=f"hc-v1/history/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_HISTORY,
                    inputs={"identity": user.identity, "entries": entries,
                            "uids": [hu.uid_to_wire(u) for u in uids],
                            "made": None if made is None
                            else [hu.uid_record_hash(u) for u in made]},
                    outputs=outputs, failure=failure)

    history = Failure("history", STEP_HISTORY)
    return [
        case("creation", "one creation among other entries", ("Valid",), ("HC-13", "HC-48"),
             [first]),
        case("creation-and-update", "a creation, then an update authorised by it",
             ("Valid",), ("HC-13", "HC-48"), [first, update]),
        case("owner-checks-own", "the owner made both entries", ("Valid",), ("HC-49",),
             [first, update], made=[first, update]),
        case("second-creation", "a second creation of alice@example.org with the server's "
             "keys (the attack v1's linear chain let through)", ("SecondCreation",),
             ("HC-48",), [first, forged], history),
        case("update-by-stranger", "an update signed by a key of no earlier UID",
             ("WrongSignature",), ("HC-17", "HC-48"), [first, stolen],
             Failure("signature", STEP_UID)),
        case("first-is-update", "the identity's first UID is an update", ("SecondCreation",),
             ("HC-48",), [update], history),
        case("not-made-by-owner", "an update the owner did not make (its own creation only)",
             ("SecondCreation",), ("HC-49",), [first, update], history, made=[first]),
    ]


def run_history(identity: str, entries: Sequence[bytes], uids: Sequence[Mapping[str, Any]],
                made: Sequence[bytes] | None) -> hcc.IdentityHistory:
    """Step 9: match each entry, open its UID (here given in clear), check the history."""
    by_hash = {}
    for wire in uids:
        uid = hu.parse_uid(wire)
        by_hash[hu.uid_record_hash(uid)] = uid
    history = hcc.IdentityHistory(identity)
    for index, data in enumerate(entries):
        found = history.match(data)
        if found is not None:
            history.add(index, found[1], by_hash[found[1]])
    if made is not None:
        history.check_own(made)
    return history


def uid_cases() -> list[Case]:
    return (_uid_create_cases() + _uid_update_cases() + _uid_reply_cases()
            + _sealed_uid_cases() + _history_cases() + _keyinit_cases() + _flush_cases())


# --- verification: the consumer side ---------------------------------------------------------

def _verify_uid_create(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> bytes:
        uid = hu.parse_uid(inputs["uid"])
        return hu.verify_uid_create(uid, now=inputs["now"], domains=inputs["domains"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    record_hash = check()
    uid = hu.parse_uid(inputs["uid"])
    outcome = compare(case, intermediates=_uid_intermediates(uid),
                      outputs={"record_hash": record_hash})
    producer = inputs.get("producer")
    if outcome.agreed and producer is not None:
        made = hu.sign_uid(hu.UidContent(
            **{**vars(uid.content),
               "sigkey": primitives.ed25519_public_key(hx(producer["sigkey_seed"], "s")),
               "sigescrow": primitives.ed25519_public_key(hx(producer["sigescrow_seed"], "e")),
               "x25519": primitives.x25519_public_key(hx(producer["x25519_private"], "x"))}),
            sigkey_seed=hx(producer["sigkey_seed"], "s"),
            sigescrow_seed=hx(producer["sigescrow_seed"], "e"))
        if hu.uid_to_wire(made) != inputs["uid"]:
            return Outcome(False, "the producer seeds do not rebuild the UID")
    return outcome


def _verify_uid_update(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> bytes:
        previous = hu.parse_uid(inputs["previous"])
        uid = hu.parse_uid(inputs["uid"])
        return hu.verify_uid_update(uid, previous, now=inputs["now"], domains=inputs["domains"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    record_hash = check()
    return compare(case, intermediates=_uid_intermediates(hu.parse_uid(inputs["uid"])),
                   outputs={"record_hash": record_hash})


def _verify_sealed_uid(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    sealed, record_hash = hx(inputs["sealed_uid"], "sealed_uid"), hx(inputs["record_hash"], "h")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: hu.open_sealed_uid(sealed, record_hash))
    uid = hu.open_sealed_uid(sealed, record_hash)
    return compare(case, intermediates={"key": hu.uid_seal_key(record_hash),
                                        "plaintext": hu.uid_json(uid)},
                   outputs={"uid": hu.uid_to_wire(uid)})


def _verify_keyinit(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> hu.KeyInit:
        ki = hu.parse_keyinit(inputs["keyinit"])
        hu.verify_keyinit(ki, identity=inputs["identity"],
                          current_sigkey=hx(inputs["current_sigkey"], "current_sigkey"),
                          now=inputs["now"])
        return ki

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    ki = check()
    return compare(case, intermediates={"message": hu.keyinit_message(
        ki.identity, ki.sigkey, ki.key_id, ki.not_before, ki.not_after, ki.x25519)},
        outputs={})


def _verify_flush(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> hu.FlushRequest:
        req = hu.parse_flush(inputs["request"])
        hu.verify_flush(req, origin=inputs["origin"], identity=inputs["identity"],
                        current_sigkey=hx(inputs["current_sigkey"], "current_sigkey"),
                        now=inputs["now"], nonce_seen=inputs["nonce_seen"])
        return req

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    req = check()
    return compare(case, intermediates={"message": hu.flush_message(
        inputs["origin"], req.identity, req.timestamp, req.nonce)}, outputs={})


def _verify_uid_reply(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> note.VerifiedCheckpoint:
        policy = note.WitnessPolicy(tuple(note.parse_vkey(v) for v in i["witnesses"]),
                                    quorum=i["quorum"])
        return hu.verify_uid_reply(hu.parse_uid_reply(i["reply"]), hu.parse_uid(i["uid"]),
                                   origin=i["origin"],
                                   log_keys=[note.parse_vkey(v) for v in i["log_keys"]],
                                   policy=policy, now=i["now"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    verified = run()
    reply = hu.parse_uid_reply(i["reply"])
    entry = hc.decode_entry(reply.entry)
    return compare(case, intermediates={"leaf_hash": merkle.leaf_hash(reply.entry),
                                        "root": verified.checkpoint.root_hash},
                   outputs={"hash_id": entry.hash_id, "record_index": entry.record_index,
                            "size": verified.checkpoint.size})


def _verify_history(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    made = None if i["made"] is None else [hx(h, "made") for h in i["made"]]

    def run() -> hcc.IdentityHistory:
        return run_history(i["identity"], [hx(e, "entry") for e in i["entries"]], i["uids"],
                           made)

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    history = run()
    return compare(case, outputs={"indexes": [item.index for item in history.items],
                                  "current": hu.uid_record_hash(history.current())})


VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_UID_CREATE): _verify_uid_create,
    ("v1", OP_UID_UPDATE): _verify_uid_update,
    ("v1", OP_UID_REPLY): _verify_uid_reply,
    ("v1", OP_SEALED_UID): _verify_sealed_uid,
    ("v1", OP_HISTORY): _verify_history,
    ("v1", OP_KEYINIT): _verify_keyinit,
    ("v1", OP_FLUSH): _verify_flush,
}
