"""keypair-publication checks of step 10 (possession of both private keys) and step 11
(continuity): rotations signed by the replaced key, resets, signed deletions, and the
attacks on them (an unsigned change, a change signed by another user's key, a replayed
signed change, a skipped version, another user's encryption key under a new name)."""

from __future__ import annotations

import copy
import hashlib
import os
from typing import Any

from keyflows.conformance.checks.support import expect_absent, expect_stored
from keyflows.conformance.clients import (
    Sealed,
    new_private_keys,
    resign,
    seal_with_application_key,
)
from keyflows.conformance.probe import Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec import keypair_publication as kp
from keyflows.spec import primitives, xeddsa
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import application_key

CLIENT = "kc-app"


def refused_put(t: Probe, user: User, record: dict[str, Any], stored: Sealed | None,
                status: int, failure_class: str, *, what: str) -> None:
    """PUT `record` expecting a refusal; the stored record (or its absence) is unchanged."""
    exchange = t.put_keypair(user.user_id, record["client_id"], record, token=user.token)
    t.expect_rejected(exchange, status, what=what, failure_class=failure_class)
    if stored is None:
        expect_absent(t, user, record["client_id"], what=f"GET after: {what}")
    else:
        expect_stored(t, user, record["client_id"], stored.record, what=f"GET after: {what}")


def with_change_signature(record: dict[str, Any], signature: bytes) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out["change"] = {"type": kp.CHANGE_ROTATION, "signature": b64url_encode(signature)}
    return out


def public_view_of(t: Probe, user: User, client_id: str) -> kp.Record:
    exchange = t.get_public_keys(user.user_id, client_id)
    body = t.expect_ok_json(exchange, 200, what="GET public keys")
    try:
        return kp.validate_public_view(body, user_id=user.user_id, client_id=client_id)
    except SpecError as exc:
        t.fail(f"the public view does not verify: {exc}", expected="a verifying public view",
               actual=describe(exchange), exchange=exchange)


# --- behaviour ---------------------------------------------------------------------------------

@check("keypair-publication/rotation/chain-verifies", requirements=("KP-15", "KP-17", "KP-20"))
def rotation_chain_verifies(t: Probe) -> None:
    """Two rotations are accepted, and a discoverer that pinned version 1 follows them to
    version 3 through the public views it saw, each signed by the key before it."""
    user = t.user("chain")
    t.publish(user, CLIENT, 1)
    pinned = public_view_of(t, user, CLIENT)
    seen = []
    for version in (2, 3):
        t.publish(user, CLIENT, version)
        seen.append(public_view_of(t, user, CLIENT))
    try:
        history = kp.follow_history(kp.predecessor_of(pinned), seen)
    except SpecError as exc:
        t.fail(f"the served rotations do not verify from version 1: {exc}",
               expected="version 2 signed by version 1's key, version 3 by version 2's")
    if history.resets or history.latest.key_version != 3:
        t.fail("the history shows a reset or ends elsewhere than version 3",
               expected="two rotations", actual=str(history))


@check("keypair-publication/reset/accepted-and-marked", requirements=("KP-15", "KP-18"))
def reset_accepted(t: Probe) -> None:
    """An owner who lost the old keys publishes the next version as a reset (no signature
    by an earlier key): 200, and the public view says reset, so monitors can surface it."""
    user = t.user("reset")
    t.publish(user, CLIENT, 2)
    reset = seal_with_application_key(user.user_id, CLIENT, 3)
    exchange = t.put_keypair(user.user_id, CLIENT, reset.record, token=user.token)
    t.expect_status(exchange, 200, what="PUT a reset to key_version 3")
    view = public_view_of(t, user, CLIENT)
    if view.change.type != kp.CHANGE_RESET or view.key_version != 3:
        t.fail("the public view after a reset does not say reset",
               expected="change.type reset at key_version 3",
               actual=f"{view.change.type} at {view.key_version}")


@check("keypair-publication/delete/signed-deletion", requirements=("KP-19", "KP-12"))
def signed_deletion(t: Probe) -> None:
    """A deletion signed by the live record's key is accepted (204); one signed by another
    key (422, signature), naming an older version (409, replay) or with no signature (400)
    is refused and the record stays."""
    user = t.user("deletion")
    t.publish(user, CLIENT, 1)
    stored = t.publish(user, CLIENT, 2)
    forged = kp.sign_deletion(user_id=user.user_id, client_id=CLIENT, key_version=2,
                              private=new_private_keys())
    for body, status, cls, what in (
            (forged, 422, "signature", "DELETE signed by another key"),
            (kp.deletion_to_wire(1, b"\x00" * 64), 409, "replay",
             "DELETE naming the replaced key_version 1"),
            ({}, 400, "decode", "DELETE without a signed body")):
        exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token, body=body)
        t.expect_rejected(exchange, status, what=what, failure_class=cls)
        expect_stored(t, user, CLIENT, stored.record, what=f"GET after: {what}")
    exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token,
                                body=stored.deletion())
    t.expect_status(exchange, 204, what="DELETE signed by the live record's key")


@check("keypair-publication/rotation/rewrap-same-keys", requirements=("KP-22", "KP-17"))
def rewrap_same_keys(t: Probe) -> None:
    """After a kB rotation the owner re-wraps its record: it reads the record, opens it
    with the old kB and publishes the next version with the SAME keys under the new kB, a
    rotation signed by those keys. The server accepts it (200) and serves it to the owner
    (it opens with the new kB only, to the same private keys) and to discoverers (the
    same public keys, following version 1 as a rotation)."""
    user = t.user("rewrap")
    old_kb, new_kb = os.urandom(32), os.urandom(32)
    first = t.publish(user, CLIENT, sealed=seal_with_application_key(
        user.user_id, CLIENT, 1, kb=old_kb))
    pinned = public_view_of(t, user, CLIENT)
    exchange = t.get_keypair(user.user_id, CLIENT, token=user.token)
    served = t.expect_ok_json(exchange, 200, what="GET the owner's record to re-wrap it")
    try:
        rewrapped = kp.rewrap_record(served, user_id=user.user_id, client_id=CLIENT,
                                     old_kb=old_kb, new_kb=new_kb,
                                     nonce=os.urandom(primitives.GCM_NONCE_LEN),
                                     z=os.urandom(xeddsa.Z_LEN))
    except SpecError as exc:
        t.fail(f"the served record does not open with the kB it was sealed under: {exc}",
               expected="the published record", actual=describe(exchange), exchange=exchange)
    new_kek = application_key(new_kb, CLIENT)
    t.publish(user, CLIENT, sealed=Sealed(record=rewrapped.record, private=first.private,
                                          kek=new_kek, kb=new_kb))
    exchange = t.get_keypair(user.user_id, CLIENT, token=user.token)
    served = t.expect_ok_json(exchange, 200, what="GET the re-wrapped record")
    try:
        private = kp.open_record(served, user_id=user.user_id, client_id=CLIENT, kek=new_kek,
                                 key_version=2)
    except SpecError as exc:
        t.fail(f"the re-wrapped record does not open with the new kB: {exc}",
               expected="version 2 under the new kB", actual=describe(exchange),
               exchange=exchange)
    if private != first.private:
        t.fail("the re-wrapped record holds other private keys",
               expected="the keys of version 1", actual="other keys")
    try:
        history = kp.follow_history(kp.predecessor_of(pinned),
                                    [public_view_of(t, user, CLIENT)])
    except SpecError as exc:
        t.fail(f"a discoverer that pinned version 1 cannot follow the re-wrap: {exc}",
               expected="a rotation signed by version 1's key")
    if history.resets or history.latest.public_keys != pinned.public_keys:
        t.fail("the public view after a re-wrap shows a reset or other keys",
               expected="a rotation keeping the public keys", actual=str(history.latest))


# --- attacks -------------------------------------------------------------------------------------

@check("keypair-publication/rotation/unsigned-change-refused", requirements=("KP-15", "KP-17"))
def unsigned_change(t: Probe) -> None:
    """A rotation whose hand-over is signed by the new key itself, or is all zeros, is
    refused with 422 (signature): only the replaced key can sign a rotation."""
    user = t.user("unsigned")
    stored = t.publish(user, CLIENT, 1)
    attempt = seal_with_application_key(user.user_id, CLIENT, 2, previous=stored)
    message = kp.rotation_message(user.user_id, CLIENT, kp.Predecessor(
        1, kp.public_keys_of(stored.private)), 2, kp.public_keys_of(attempt.private))
    self_signed = primitives.ed25519_sign(attempt.private.ed25519_seed, message)
    for signature, what in ((self_signed, "signed by the new key"),
                            (bytes(64), "with an all-zero signature")):
        refused_put(t, user, with_change_signature(attempt.record, signature), stored, 422,
                    "signature", what=f"PUT a rotation {what}")


@check("keypair-publication/rotation/other-users-key-refused", requirements=("KP-17",))
def other_users_key(t: Probe) -> None:
    """A rotation of the victim's record signed by another user's (the attacker's) key is
    refused with 422 (signature), even when the attacker holds the victim's token."""
    victim, attacker = t.user("victim"), t.user("attacker")
    stored = t.publish(victim, CLIENT, 1)
    own = t.publish(attacker, CLIENT, 1)
    planted = seal_with_application_key(victim.user_id, CLIENT, 2, previous=own)
    refused_put(t, victim, planted.record, stored, 422, "signature",
                what="PUT a rotation of the victim's record signed by the attacker's key")


@check("keypair-publication/rotation/replayed-change-refused", requirements=("KP-8", "KP-17"))
def replayed_change(t: Probe) -> None:
    """Replaying an old, correctly signed rotation (to roll back to key_version 2 after 3)
    is refused with 409 (replay)."""
    user = t.user("replayed")
    t.publish(user, CLIENT, 1)
    old_rotation = t.publish(user, CLIENT, 2)
    current = t.publish(user, CLIENT, 3)
    refused_put(t, user, old_rotation.record, current, 409, "replay",
                what="PUT the signed rotation to key_version 2 again after key_version 3")


@check("keypair-publication/rotation/version-gap-refused", requirements=("KP-16",))
def version_gap(t: Probe) -> None:
    """A rotation signed by the replaced key that skips a version is refused with 422
    (link)."""
    user = t.user("gap")
    stored = t.publish(user, CLIENT, 1)
    skip = seal_with_application_key(user.user_id, CLIENT, 3, previous=stored)
    refused_put(t, user, skip.record, stored, 422, "link",
                what="PUT key_version 3 over key_version 1")


@check("keypair-publication/change/wrong-type-refused", requirements=("KP-15",))
def wrong_change_type(t: Probe) -> None:
    """An initial record where one was accepted before, and a reset or rotation where none
    was, are refused with 422 (link)."""
    user = t.user("types")
    fresh = seal_with_application_key(user.user_id, "types-fresh", 1)
    reset = copy.deepcopy(fresh.record)
    reset["change"] = {"type": kp.CHANGE_RESET}
    refused_put(t, user, resign(reset, fresh.private.ed25519_seed,
                                x25519_private=fresh.private.x25519),
                None, 422, "link", what="PUT a reset as the first record")
    stored = t.publish(user, CLIENT, 1)
    again = seal_with_application_key(user.user_id, CLIENT, 2)
    initial = copy.deepcopy(again.record)
    initial["change"] = {"type": kp.CHANGE_INITIAL}
    refused_put(t, user, resign(initial, again.private.ed25519_seed,
                                x25519_private=again.private.x25519),
                stored, 422, "link", what="PUT an initial record over key_version 1")


@check("keypair-publication/possession/x25519-key-proven", requirements=("KP-14",))
def x25519_possession(t: Probe) -> None:
    """A record whose x25519_signature is not made by its X25519 private key is refused with
    422 (signature): among them, another user's encryption key published under a new name
    by someone who does not hold its private key."""
    victim, attacker = t.user("victim"), t.user("attacker")
    stolen = t.publish(victim, CLIENT, 1)
    mine = seal_with_application_key(attacker.user_id, CLIENT, 1)
    lifted = copy.deepcopy(mine.record)
    lifted["public_keys"]["x25519"] = stolen.record["public_keys"]["x25519"]
    lifted = resign(lifted, mine.private.ed25519_seed, x25519_private=mine.private.x25519)
    refused_put(t, attacker, lifted, None, 422, "signature",
                what="PUT the victim's X25519 key under the attacker's name")
    other = seal_with_application_key(attacker.user_id, "possession-2", 1)
    zeroed = copy.deepcopy(other.record)
    zeroed["x25519_signature"] = b64url_encode(bytes(64))
    refused_put(t, attacker, zeroed, None, 422, "signature",
                what="PUT a record with an all-zero x25519_signature")


@check("keypair-publication/reset/version-gap-refused", requirements=("KP-16", "KP-18"))
def reset_version_gap(t: Probe) -> None:
    """A reset is exactly the next version too: one that skips a version is refused with
    422 (link) over a live record and after a deletion, and nothing is stored."""
    user = t.user("reset-gap")
    stored = t.publish(user, CLIENT, 1)
    skip = seal_with_application_key(user.user_id, CLIENT, 3)
    refused_put(t, user, skip.record, stored, 422, "link",
                what="PUT a reset to key_version 3 over key_version 1")
    deleted = "kc-deleted"
    t.publish(user, deleted, 1)
    exchange = t.delete_keypair(user.user_id, deleted, token=user.token)
    t.expect_status(exchange, 204, what="DELETE key_version 1")
    skip = seal_with_application_key(user.user_id, deleted, 3)
    refused_put(t, user, skip.record, None, 422, "link",
                what="PUT a reset to key_version 3 after deleting key_version 1")


@check("keypair-publication/rotation/after-deletion-refused", requirements=("KP-18",))
def rotation_after_deletion(t: Probe) -> None:
    """After a deletion no key is left to rotate from: a rotation to the next version,
    even one signed by the deleted record's key, is refused with 422 (link); only a reset
    follows a deletion."""
    user = t.user("rotate-deleted")
    stored = t.publish(user, CLIENT, 1)
    exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token)
    t.expect_status(exchange, 204, what="DELETE key_version 1")
    rotation = seal_with_application_key(user.user_id, CLIENT, 2, previous=stored)
    refused_put(t, user, rotation.record, None, 422, "link",
                what="PUT a rotation signed by the deleted key_version 1")


@check("keypair-publication/change/unknown-type-refused", requirements=("KP-15",))
def unknown_change_type(t: Probe) -> None:
    """A change type other than initial, rotation and reset is malformed: 400 (decode),
    even with binding and possession signatures made over it, and nothing is stored."""
    user = t.user("change-kind")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    for kind in ("upgrade", "Initial", ""):
        record = copy.deepcopy(sealed.record)
        record["change"] = {"type": kind}
        refused_put(t, user, resign(record, sealed.private.ed25519_seed,
                                    x25519_private=sealed.private.x25519),
                    None, 400, "decode", what=f'PUT a record whose change.type is "{kind}"')


def identity_r_signature(seed: bytes, message: bytes) -> bytes:
    """An Ed25519 signature by the holder of `seed` whose R is the identity point:
    S = k * a mod L with k = SHA-512(R || A || M). [S]B - [k]A is then the identity, so
    the cofactorless equation holds; only the strict rule (R not of small order) refuses
    it."""
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    scalar = int.from_bytes(digest, "little")
    public = primitives.ed25519_public_key(seed)
    r = bytes([1]) + bytes(31)
    k = int.from_bytes(hashlib.sha512(r + public + message).digest(), "little")
    return r + (k * scalar % primitives.ED25519_L).to_bytes(32, "little")


@check("keypair-publication/publish/small-order-r-refused", requirements=("KP-6", "HC-35"))
def small_order_r(t: Probe) -> None:
    """A binding signature made by the key's own holder with R = the identity point
    satisfies the equation a plain verifier checks, but not the strict rule: the record
    is refused with 422 (signature) and nothing is stored."""
    user = t.user("identity-r")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    record = copy.deepcopy(sealed.record)
    message = kp.binding_message(user.user_id, CLIENT, 1, kp.public_keys_of(sealed.private),
                                 kp.CHANGE_INITIAL)
    record["binding_signature"] = b64url_encode(
        identity_r_signature(sealed.private.ed25519_seed, message))
    refused_put(t, user, record, None, 422, "signature",
                what="PUT a record whose binding signature has R = the identity point")
