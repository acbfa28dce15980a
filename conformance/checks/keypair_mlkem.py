"""keypair-publication checks of the optional ML-KEM-768 key (the hybrid suites' key):
a record carrying one is stored and served whole, its public view carries the key under
both signatures, and the server refuses a key failing FIPS 203's modulus check, a key
of the wrong length, and a ciphertext whose length does not fit the public keys."""

from __future__ import annotations

import copy
from typing import Any

from keyflows.conformance.checks.support import expect_absent, expect_stored
from keyflows.conformance.clients import Sealed, resign, seal_with_application_key
from keyflows.conformance.probe import Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec import keypair_publication as kp
from keyflows.spec import mlkem
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

CLIENT = "pq-app"


def with_mlkem(user: User, client_id: str) -> Sealed:
    """A fresh version-1 record with an ML-KEM-768 key, not yet published."""
    return seal_with_application_key(user.user_id, client_id, 1, with_mlkem=True)


def unreduced_key(key: bytes) -> bytes:
    """`key` with the first 12-bit coefficient of t-hat set to q = 3329: a key of the
    right length that FIPS 203's modulus check (section 7.2) refuses."""
    q = mlkem.Q
    return bytes([q & 0xFF, (key[1] & 0xF0) | (q >> 8)]) + key[2:]


def refused(t: Probe, user: User, client_id: str, record: dict[str, Any], status: int,
            failure_class: str, *, what: str) -> None:
    exchange = t.put_keypair(user.user_id, client_id, record, token=user.token)
    t.expect_rejected(exchange, status, what=what, failure_class=failure_class)
    expect_absent(t, user, client_id, what=f"GET after: {what}")


@check("keypair-publication/mlkem/round-trip",
       requirements=("KP-1", "KP-3", "KP-5", "KP-9", "KP-10", "KP-11"))
def mlkem_round_trip(t: Probe) -> None:
    """A record with an ML-KEM-768 key is accepted (201); the owner gets it back byte for
    byte and opens the ML-KEM seed with the rest; the public view carries the key, and
    both signatures verify over it."""
    user = t.user("pq")
    sealed = with_mlkem(user, CLIENT)
    t.publish(user, CLIENT, sealed=sealed)
    expect_stored(t, user, CLIENT, sealed.record, what="GET the record with an ML-KEM key")
    exchange = t.get_public_keys(user.user_id, CLIENT)
    body = t.expect_ok_json(exchange, 200, what="GET the public view of an ML-KEM record")
    try:
        view = kp.validate_public_view(body, user_id=user.user_id, client_id=CLIENT)
    except SpecError as exc:
        t.fail(f"the public view does not verify: {exc}", expected="a verifying public view",
               actual=describe(exchange), exchange=exchange)
    published = sealed.record["public_keys"]["mlkem768"]
    if view.public_keys.mlkem768 != b64url_decode(published):
        t.fail("the public view lacks the record's ML-KEM-768 key or serves another one "
               "(a downgrade to the X25519 suites)", expected=f"mlkem768 {published[:16]}...",
               actual=describe(exchange), exchange=exchange)


@check("keypair-publication/mlkem/invalid-key-refused", requirements=("KP-5", "API-1"))
def mlkem_invalid_key_refused(t: Probe) -> None:
    """An ML-KEM-768 key with a coefficient >= q, correctly signed, is refused with 422
    (point); one byte short or one byte long, with 400 (length). Nothing is stored."""
    user = t.user("pq-bad")
    sealed = with_mlkem(user, CLIENT)
    key = b64url_decode(sealed.record["public_keys"]["mlkem768"])

    def variant(value: bytes) -> dict[str, Any]:
        record = copy.deepcopy(sealed.record)
        record["public_keys"]["mlkem768"] = b64url_encode(value)
        return resign(record, sealed.private.ed25519_seed,
                      x25519_private=sealed.private.x25519)

    refused(t, user, CLIENT, variant(unreduced_key(key)), 422, "point",
            what="PUT a record whose ML-KEM-768 key fails the modulus check")
    refused(t, user, CLIENT, variant(key[:-1]), 400, "length",
            what="PUT a record whose ML-KEM-768 key is 1183 bytes")
    refused(t, user, CLIENT, variant(key + b"\x00"), 400, "length",
            what="PUT a record whose ML-KEM-768 key is 1185 bytes")


@check("keypair-publication/mlkem/ciphertext-fits-keys", requirements=("KP-3", "KP-6"))
def mlkem_ciphertext_fits_keys(t: Probe) -> None:
    """The ciphertext's length must fit the public keys (KP-3): a record with an
    ML-KEM-768 key and an 80-byte ciphertext, and one whose ML-KEM key was removed
    (144-byte ciphertext left), are refused with 400 (length); a stored record is not
    replaced by them."""
    user = t.user("pq-fit")
    sealed = with_mlkem(user, CLIENT)
    short = copy.deepcopy(sealed.record)
    ciphertext = b64url_decode(short["encrypted_private_keys"]["ciphertext"])
    short["encrypted_private_keys"]["ciphertext"] = b64url_encode(ciphertext[:kp.CIPHERTEXT_LEN])
    refused(t, user, CLIENT, short, 400, "length",
            what="PUT an ML-KEM record with the 80-byte ciphertext of a record without one")
    dropped = copy.deepcopy(sealed.record)
    del dropped["public_keys"]["mlkem768"]
    dropped = resign(dropped, sealed.private.ed25519_seed,
                     x25519_private=sealed.private.x25519)
    refused(t, user, CLIENT, dropped, 400, "length",
            what="PUT a record whose ML-KEM key was removed, its 144-byte ciphertext kept")
    t.publish(user, CLIENT, sealed=sealed)
    exchange = t.put_keypair(user.user_id, CLIENT, short, token=user.token)
    t.expect_rejected(exchange, 400, what="PUT a mismatched ciphertext over a stored record",
                      failure_class="length")
    expect_stored(t, user, CLIENT, sealed.record, what="GET after the refused replacement")
