"""keypair-publication checks: behaviour (publish, fetch, replace, delete, discover) and
attacks (cross-user access, replays, misbound records, bad points and signatures,
private material on public endpoints)."""

from __future__ import annotations

import base64
import os
from typing import Any

from keyflows.conformance.checks.key_derivation import CLIENT as KD_CLIENT
from keyflows.conformance.checks.key_derivation import password_record
from keyflows.conformance.checks.support import (
    expect_absent,
    expect_same_record,
    expect_stored,
    expect_unauthorized,
    first_difference,
    mutated,
)
from keyflows.conformance.clients import (
    LOW_ORDER_X25519,
    Sealed,
    b64_of_length,
    non_canonical_x25519,
    public_of,
    resign,
    seal_with_application_key,
    with_x25519_public,
)
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.spec.keypair_publication import (
    MAX_KEY_VERSION,
    PUBLIC_MEMBERS,
    public_view,
    validate_public_view,
)

CLIENT = "kp-app"


# --- behaviour -----------------------------------------------------------------------------

@check("keypair-publication/publish/create", requirements=("KP-7", "KP-9"))
def publish_create(t: Probe) -> None:
    """The owner publishes a record: 201 with the stored record as the body."""
    user = t.user("create")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    exchange = t.put_keypair(user.user_id, CLIENT, sealed.record, token=user.token)
    t.expect_status(exchange, 201, what="PUT a new record as its owner")
    expect_same_record(t, exchange, sealed.record, what="the body of the 201")


@check("keypair-publication/fetch/own-record-unchanged", requirements=("KP-9",))
def fetch_unchanged(t: Probe) -> None:
    """The owner fetches the record with every field byte-equal to what was published,
    for both KEK methods."""
    user = t.user("fetch")
    sealed = t.publish(user, CLIENT)
    expect_stored(t, user, CLIENT, sealed.record, what="GET own application-key record")
    pw_user, pw_sealed = password_record(t)
    expect_stored(t, pw_user, KD_CLIENT, pw_sealed.record, what="GET own password record")


@check("keypair-publication/fetch/absent", requirements=("KP-12",))
def fetch_absent(t: Probe) -> None:
    """Fetching or deleting a record that does not exist answers 404, to its owner."""
    user = t.user("absent")
    t.expect_rejected(t.get_keypair(user.user_id, CLIENT, token=user.token), 404,
                      what="GET a record never published")
    t.expect_rejected(t.delete_keypair(user.user_id, CLIENT, token=user.token), 404,
                      what="DELETE a record never published")
    t.expect_rejected(t.get_public_keys(user.user_id, CLIENT), 404,
                      what="GET the public keys of a record never published")


@check("keypair-publication/replace/higher-version", requirements=("KP-8", "KP-9", "KP-17"))
def replace_higher(t: Probe) -> None:
    """A rotation to the next key_version, signed by the replaced key, replaces the stored
    record: 200, and every endpoint serves the new version."""
    user = t.user("replace")
    first = t.publish(user, CLIENT, 1)
    newer = seal_with_application_key(user.user_id, CLIENT, 2, previous=first)
    exchange = t.put_keypair(user.user_id, CLIENT, newer.record, token=user.token)
    t.expect_status(exchange, 200, what="PUT a rotation to key_version 2 over key_version 1")
    expect_same_record(t, exchange, newer.record, what="the body of the 200")
    expect_stored(t, user, CLIENT, newer.record, what="GET after the replacement")
    exchange = t.get_public_keys(user.user_id, CLIENT)
    t.expect_status(exchange, 200, what="GET public keys after the replacement")
    expect_same_record(t, exchange, public_view(newer.record),
                       what="GET public keys after the replacement")
    expect_listed(t, user, [(CLIENT, 2)])


def expect_refused_replay(t: Probe, user: User, record: dict[str, Any], stored: dict[str, Any],
                          *, what: str) -> None:
    exchange = t.put_keypair(user.user_id, record["client_id"], record, token=user.token)
    t.expect_rejected(exchange, 409, what=what, failure_class="replay")
    expect_stored(t, user, record["client_id"], stored, what=f"GET after: {what}")


@check("keypair-publication/replace/same-version-refused", requirements=("KP-8",))
def replace_same_version(t: Probe) -> None:
    """A new record with the stored key_version is refused with 409; nothing changes."""
    user = t.user("same")
    stored = t.publish(user, CLIENT, 2)
    rival = seal_with_application_key(user.user_id, CLIENT, 2)
    expect_refused_replay(t, user, rival.record, stored.record,
                          what="PUT other keys with the stored key_version 2")


@check("keypair-publication/replace/lower-version-refused", requirements=("KP-8",))
def replace_lower_version(t: Probe) -> None:
    """A record with a lower key_version is refused with 409; nothing changes."""
    user = t.user("lower")
    stored = t.publish(user, CLIENT, 3)
    older = seal_with_application_key(user.user_id, CLIENT, 2)
    expect_refused_replay(t, user, older.record, stored.record,
                          what="PUT key_version 2 over key_version 3")


@check("keypair-publication/replace/identical-replay-refused", requirements=("KP-8",))
def replace_identical(t: Probe) -> None:
    """Replaying the very record that is stored is refused with 409."""
    user = t.user("identical")
    stored = t.publish(user, CLIENT, 1)
    expect_refused_replay(t, user, stored.record, stored.record,
                          what="PUT the stored record again")


@check("keypair-publication/replace/old-record-replay-refused", requirements=("KP-8",))
def replace_old_replay(t: Probe) -> None:
    """Replaying a superseded record (a rollback to old keys) is refused with 409."""
    user = t.user("rollback")
    old = t.publish(user, CLIENT, 1)
    new = t.publish(user, CLIENT, 2)
    expect_refused_replay(t, user, old.record, new.record,
                          what="PUT the superseded key_version 1 record again")


@check("keypair-publication/replace/refused-attempt-changes-nothing",
       requirements=("KP-7", "KP-8"))
def refused_changes_nothing(t: Probe) -> None:
    """A refused publication neither changes the record nor uses up its key_version."""
    user = t.user("atomic")
    stored = t.publish(user, CLIENT, 1)
    attempt = seal_with_application_key(user.user_id, CLIENT, 2, previous=stored)
    forged = mutated(attempt.record, "binding_signature", flip_bit(
        attempt.record["binding_signature"]))
    exchange = t.put_keypair(user.user_id, CLIENT, forged, token=user.token)
    t.expect_rejected(exchange, 422, what="PUT key_version 2 with a bad signature",
                      failure_class="signature")
    expect_stored(t, user, CLIENT, stored.record, what="GET after the refused PUT")
    exchange = t.put_keypair(user.user_id, CLIENT, attempt.record, token=user.token)
    t.expect_status(exchange, 200, what="PUT the valid key_version 2 after the refused one")


@check("keypair-publication/delete/then-gone", requirements=("KP-12",))
def delete_then_gone(t: Probe) -> None:
    """After DELETE (204) the record, its public keys and its list entry are gone."""
    user = t.user("delete")
    t.publish(user, CLIENT, 1)
    exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token)
    t.expect_status(exchange, 204, what="DELETE own record")
    if exchange.response_body:
        t.fail("DELETE answered 204 with a body", expected="an empty body",
               actual=describe(exchange), exchange=exchange)
    expect_absent(t, user, CLIENT, what="GET own record after DELETE")
    t.expect_rejected(t.get_public_keys(user.user_id, CLIENT), 404,
                      what="GET public keys after DELETE")
    t.expect_rejected(t.delete_keypair(user.user_id, CLIENT, token=user.token), 404,
                      what="DELETE again")
    expect_listed(t, user, [])


@check("keypair-publication/delete/deleted-version-replay-refused", requirements=("KP-8",))
def deleted_version_replay(t: Probe) -> None:
    """After a delete, the deleted record and any key_version up to it are refused (409);
    the next one, a reset, is accepted."""
    user = t.user("tombstone")
    deleted = t.publish(user, CLIENT, 3)
    exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token)
    t.expect_status(exchange, 204, what="DELETE own record")
    for record, what in ((deleted.record, "PUT the deleted key_version 3 record again"),
                         (seal_with_application_key(user.user_id, CLIENT, 2).record,
                          "PUT key_version 2 after key_version 3 was deleted")):
        exchange = t.put_keypair(user.user_id, CLIENT, record, token=user.token)
        t.expect_rejected(exchange, 409, what=what, failure_class="replay")
        expect_absent(t, user, CLIENT, what=f"GET after: {what}")
    newer = seal_with_application_key(user.user_id, CLIENT, 4)
    exchange = t.put_keypair(user.user_id, CLIENT, newer.record, token=user.token)
    t.expect_status(exchange, 201, what="PUT a reset to key_version 4 after key_version 3 "
                                        "was deleted")


@check("keypair-publication/publish/key-version-range", requirements=("KP-8", "KP-16"))
def key_version_range(t: Probe) -> None:
    """key_version outside 1..2^32-1 is refused with 400; 2^32-1 as the first record of
    an application is refused with 422 (link): versions are never skipped, so no single
    request exhausts them and locks the owner out."""
    user = t.user("versions")
    for i, version in enumerate((0, -1, MAX_KEY_VERSION + 1)):
        client_id = f"version-{i}"
        record = seal_with_application_key(user.user_id, client_id, 1).record
        exchange = t.put_keypair(user.user_id, client_id,
                                 mutated(record, "key_version", version), token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT key_version {version}")
    top = seal_with_application_key(user.user_id, "version-max", MAX_KEY_VERSION)
    exchange = t.put_keypair(user.user_id, "version-max", top.record, token=user.token)
    t.expect_rejected(exchange, 422, what=f"PUT key_version {MAX_KEY_VERSION} as a first "
                                          "record", failure_class="link")
    t.publish(user, "version-max")


@check("keypair-publication/storage/records-independent", requirements=("KP-9", "KP-12"))
def records_independent(t: Probe) -> None:
    """Records of different apps and of different users with the same client_id never
    affect each other."""
    alice, bob = t.user("alice"), t.user("bob")
    a1 = t.publish(alice, "app-1")
    a2 = t.publish(alice, "app-2")
    b1 = t.publish(bob, "app-1")
    a1_new = t.publish(alice, "app-1", 2)
    expect_stored(t, alice, "app-2", a2.record, what="alice's app-2 after replacing app-1")
    expect_stored(t, bob, "app-1", b1.record, what="bob's app-1 after alice replaced hers")
    t.expect_status(t.delete_keypair(alice.user_id, "app-1", token=alice.token), 204,
                    what="DELETE alice's app-1")
    expect_stored(t, alice, "app-2", a2.record, what="alice's app-2 after deleting app-1")
    expect_stored(t, bob, "app-1", b1.record, what="bob's app-1 after alice deleted hers")
    del a1, a1_new


# --- discovery: public view and application list --------------------------------------------

@check("keypair-publication/public-keys/public-view-only", requirements=("KP-10",))
def public_view_only(t: Probe) -> None:
    """GET public-keys answers exactly the public view: no encrypted_private_keys."""
    user = t.user("view")
    sealed = t.publish(user, CLIENT)
    exchange = t.get_public_keys(user.user_id, CLIENT)
    body = t.expect_ok_json(exchange, 200, what="GET public keys (no credentials)")
    if isinstance(body, dict):
        extra = sorted(set(body) - set(PUBLIC_MEMBERS))
        if extra:
            t.fail(f"the public view carries {', '.join(extra)}",
                   expected=f"exactly {', '.join(PUBLIC_MEMBERS)}", actual=describe(exchange),
                   exchange=exchange)
    expect_same_record(t, exchange, public_view(sealed.record), what="GET public keys")


@check("keypair-publication/public-keys/binding-verifies", requirements=("KP-4", "KP-6"))
def binding_verifies(t: Probe) -> None:
    """The public view verifies: its binding signature covers the addressed user, app and
    key_version under the published Ed25519 key."""
    user = t.user("binding")
    sealed = t.publish(user, CLIENT, 3)
    exchange = t.get_public_keys(user.user_id, CLIENT)
    body = t.expect_ok_json(exchange, 200, what="GET public keys")
    try:
        parsed = validate_public_view(body, user_id=user.user_id, client_id=CLIENT)
    except SpecError as exc:
        t.fail(f"the public view does not verify: {exc} (failure class {exc.failure_class})",
               expected="a public view whose binding signature verifies",
               actual=describe(exchange), exchange=exchange)
    if parsed.public_keys != public_of(sealed) or parsed.key_version != 3:
        t.fail("the public view names other keys or another key_version",
               expected="the published public keys, key_version 3",
               actual=describe(exchange), exchange=exchange)


def expect_listed(t: Probe, user: User, apps: list[tuple[str, int]]) -> None:
    """The owner's application list (KP-23) is exactly `apps`."""
    exchange = t.get_apps(user.user_id, token=user.token)
    body = t.expect_ok_json(exchange, 200, what="GET the application list as its owner")
    expected = {"user_id": user.user_id,
                "apps": [{"client_id": c, "key_version": v} for c, v in sorted(apps)]}
    diff = first_difference(expected, body)
    if diff:
        t.fail(f"the application list is not as expected: {diff}", expected=str(expected),
               actual=describe(exchange), exchange=exchange)


@check("keypair-publication/apps/list", requirements=("KP-10", "KP-23"))
def apps_list(t: Probe) -> None:
    """GET apps lists, to its owner, client_id and key_version of each app, sorted by
    client_id, with no private member; an owner without records has an empty list."""
    user = t.user("apps")
    t.publish(user, "zeta", 4)
    t.publish(user, "Alpha", 1)
    t.publish(user, "mid.app", 2)
    expect_listed(t, user, [("Alpha", 1), ("mid.app", 2), ("zeta", 4)])
    expect_listed(t, t.user("nobody"), [])


@check("keypair-publication/apps/owner-only", requirements=("KP-23", "API-4"))
def apps_owner_only(t: Probe) -> None:
    """Nobody but the owner enumerates a user's applications: without a token or with
    another user's token the list is the uniform 401, the same for a user with records
    and for one without (no existence oracle); the owner gets it."""
    user, snoop = t.user("apps-owner"), t.user("apps-snoop")
    t.publish(user, CLIENT)
    nobody = t.session.new_user_id("apps-nobody")
    baseline = t.get_apps(nobody, token=None)
    expect_unauthorized(t, baseline, what="GET the applications of a user without records, "
                                          "without credentials")
    for who, token, what in ((user.user_id, None, "without credentials"),
                             (user.user_id, snoop.token, "with another user's token"),
                             (nobody, snoop.token, "of a user without records, with another "
                                                   "user's token")):
        exchange = t.get_apps(who, token=token)
        expect_unauthorized(t, exchange, what=f"GET the applications {what}")
        if exchange.response_body != baseline.response_body:
            t.fail(f"GET the applications {what}: the 401 differs from the one for a user "
                   "without records (an existence oracle)", expected=describe(baseline),
                   actual=describe(exchange), exchange=exchange)
    expect_listed(t, user, [(CLIENT, 1)])


def secret_strings(sealed: Sealed) -> dict[str, str]:
    """Every private value of a record, in the encodings a leak could take."""
    enc = sealed.record["encrypted_private_keys"]
    raw = {"ciphertext": b64url_decode(enc["ciphertext"]), "nonce": b64url_decode(enc["nonce"]),
           "x25519 private key": sealed.private.x25519,
           "ed25519 seed": sealed.private.ed25519_seed, "KEK": sealed.kek}
    if "salt" in enc["kek"]:
        raw["salt"] = b64url_decode(enc["kek"]["salt"])
    out = {}
    for name, value in raw.items():
        out[f"{name} (base64url)"] = b64url_encode(value)
        out[f"{name} (base64)"] = base64.b64encode(value).decode().rstrip("=")
        out[f"{name} (hex)"] = value.hex()
    out["the member encrypted_private_keys"] = "encrypted_private_keys"
    return out


def find_leak(exchange: Exchange, secrets: dict[str, str]) -> str | None:
    haystack = exchange.response_body.decode("utf-8", errors="replace") + "\n" + "\n".join(
        f"{k}: {v}" for k, v in exchange.response_headers)
    lowered = haystack.lower()
    for name, value in secrets.items():
        if value in haystack or (name.endswith("(hex)") and value.lower() in lowered):
            return name
    return None


@check("keypair-publication/public/no-private-material", requirements=("KP-10", "KP-9"))
def no_private_material(t: Probe) -> None:
    """No public or refused answer carries any private value of a published record
    (ciphertext, nonce, salt, KEK, private keys) in any common encoding."""
    user = t.user("leak")
    sealed = t.publish(user, CLIENT)
    pw_user, pw_sealed = password_record(t)
    other = t.user("snoop")
    secrets = {**secret_strings(sealed), **{f"password record {k}": v
                                            for k, v in secret_strings(pw_sealed).items()}}
    answers = [
        t.request("GET", "/v1/capabilities"),
        t.get_public_keys(user.user_id, CLIENT),
        t.get_public_keys(pw_user.user_id, KD_CLIENT),
        t.get_apps(user.user_id, token=user.token),
        t.get_apps(pw_user.user_id, token=pw_user.token),
        t.get_keypair(user.user_id, CLIENT, token=None),
        t.get_keypair(user.user_id, CLIENT, token=other.token),
        t.get_keypair(pw_user.user_id, KD_CLIENT, token=other.token),
        t.request("GET", f"/v1/users/{user.user_id}/apps/{CLIENT}/private-keys"),
        t.request("POST", f"/v1/users/{user.user_id}/apps/{CLIENT}/public-keys"),
        t.request("GET", f"/v1/users/{user.user_id}/apps/{CLIENT}/public-keys?full=1"),
        t.request("GET", f"/v1/users/{user.user_id}/apps?include=private"),
    ]
    for exchange in answers:
        leak = find_leak(exchange, secrets)
        if leak:
            t.fail(f"{exchange.method} {exchange.url} (no owner credentials) answered "
                   f"{exchange.status} carrying {leak}",
                   expected="no private material", actual=describe(exchange),
                   exchange=exchange)


# --- cross-user access (owner checks) ---------------------------------------------------------

def victim_and_attacker(t: Probe) -> tuple[User, Sealed, User]:
    """A victim with a record, and an attacker who is a genuine user with a record of
    their own (so a server that only checks 'is this token valid' lets them in)."""
    victim = t.user("victim")
    sealed = t.publish(victim, CLIENT)
    attacker = t.user("attacker")
    t.publish(attacker, CLIENT)
    return victim, sealed, attacker


@check("keypair-publication/fetch/other-user-refused", requirements=("API-4", "KP-9"))
def fetch_other_user(t: Probe) -> None:
    """Another user's valid token cannot fetch the record: 401, no private material."""
    victim, sealed, attacker = victim_and_attacker(t)
    exchange = t.get_keypair(victim.user_id, CLIENT, token=attacker.token)
    if find_leak(exchange, secret_strings(sealed)):
        t.fail("another user's token fetched the victim's encrypted private keys",
               expected="401", actual=describe(exchange), exchange=exchange)
    expect_unauthorized(t, exchange, what="GET the victim's record with the attacker's token")


@check("keypair-publication/replace/other-user-refused", requirements=("API-4", "KP-7"))
def replace_other_user(t: Probe) -> None:
    """Another user's valid token cannot replace the record, even with a well-formed
    record bound to the victim: 401, and the stored record is unchanged."""
    victim, sealed, attacker = victim_and_attacker(t)
    planted = seal_with_application_key(victim.user_id, CLIENT, 9)
    exchange = t.put_keypair(victim.user_id, CLIENT, planted.record, token=attacker.token)
    expect_unauthorized(t, exchange, what="PUT a record over the victim's with the "
                                          "attacker's token")
    expect_stored(t, victim, CLIENT, sealed.record, what="the victim's record afterwards")
    planted_new = seal_with_application_key(victim.user_id, "planted-app", 1)
    exchange = t.put_keypair(victim.user_id, "planted-app", planted_new.record,
                             token=attacker.token)
    expect_unauthorized(t, exchange, what="PUT a new app for the victim with the attacker's "
                                          "token")
    expect_absent(t, victim, "planted-app", what="the victim's planted-app afterwards")


@check("keypair-publication/delete/other-user-refused", requirements=("API-4", "KP-7"))
def delete_other_user(t: Probe) -> None:
    """Another user's valid token cannot delete the record: 401, the record stays."""
    victim, sealed, attacker = victim_and_attacker(t)
    exchange = t.delete_keypair(victim.user_id, CLIENT, token=attacker.token)
    expect_unauthorized(t, exchange, what="DELETE the victim's record with the attacker's "
                                          "token")
    expect_stored(t, victim, CLIENT, sealed.record, what="the victim's record afterwards")


# --- misbound and malformed records ------------------------------------------------------------

@check("keypair-publication/publish/user-binding", requirements=("KP-7",))
def user_binding(t: Probe) -> None:
    """A record (correctly signed) for another user_id than the path's is refused with
    422 (binding)."""
    owner = t.user("binder")
    elsewhere = seal_with_application_key(t.session.new_user_id("someone"), CLIENT, 1)
    exchange = t.put_keypair(owner.user_id, CLIENT, elsewhere.record, token=owner.token)
    t.expect_rejected(exchange, 422, what="PUT a record bound to another user_id",
                      failure_class="binding")
    expect_absent(t, owner, CLIENT, what="GET after the refused PUT")


@check("keypair-publication/publish/client-binding", requirements=("KP-7",))
def client_binding(t: Probe) -> None:
    """A record (correctly signed) for another client_id than the path's is refused with
    422 (binding)."""
    owner = t.user("binder")
    elsewhere = seal_with_application_key(owner.user_id, "other-app", 1)
    exchange = t.put_keypair(owner.user_id, CLIENT, elsewhere.record, token=owner.token)
    t.expect_rejected(exchange, 422, what="PUT a record bound to another client_id",
                      failure_class="binding")
    expect_absent(t, owner, CLIENT, what="GET after the refused PUT")


def expect_point_refused(t: Probe, points: dict[str, bytes], kind: str) -> None:
    user = t.user("points")
    for i, (name, point) in enumerate(points.items()):
        client_id = f"point-{i}"
        sealed = seal_with_application_key(user.user_id, client_id, 1)
        exchange = t.put_keypair(user.user_id, client_id, with_x25519_public(sealed, point),
                                 token=user.token)
        t.expect_rejected(exchange, 422, what=f"PUT an X25519 public key that is {kind} "
                                              f"({name})", failure_class="point")


@check("keypair-publication/publish/low-order-x25519", requirements=("KP-5",))
def low_order_x25519(t: Probe) -> None:
    """X25519 public keys of small order (0, 1, p-1, the order-8 points) are refused with
    422 (point), even when correctly signed."""
    expect_point_refused(t, LOW_ORDER_X25519, "of low order")


@check("keypair-publication/publish/non-canonical-x25519", requirements=("KP-5",))
def non_canonical_point(t: Probe) -> None:
    """Non-canonical X25519 encodings (top bit set, u >= p) are refused with 422 (point)."""
    valid = public_of(seal_with_application_key("probe", "probe", 1)).x25519
    expect_point_refused(t, non_canonical_x25519(valid), "non-canonical")


def flip_bit(value: str) -> str:
    raw = bytearray(b64url_decode(value))
    raw[len(raw) // 2] ^= 0x01
    return b64url_encode(bytes(raw))


def expect_signature_refused(t: Probe, user: User, client_id: str, record: dict[str, Any], *,
                             what: str) -> None:
    exchange = t.put_keypair(user.user_id, client_id, record, token=user.token)
    t.expect_rejected(exchange, 422, what=what, failure_class="signature")
    expect_absent(t, user, client_id, what=f"GET after: {what}")


@check("keypair-publication/publish/bad-signature", requirements=("KP-6",))
def bad_signature(t: Probe) -> None:
    """A record whose binding signature does not verify is refused with 422 (signature)."""
    user = t.user("badsig")
    record = seal_with_application_key(user.user_id, "sig-1", 1).record
    expect_signature_refused(t, user, "sig-1", mutated(record, "binding_signature", flip_bit(
        record["binding_signature"])), what="PUT with one bit of the signature flipped")
    record = seal_with_application_key(user.user_id, "sig-2", 1).record
    expect_signature_refused(t, user, "sig-2", mutated(record, "binding_signature",
                                                       b64url_encode(bytes(64))),
                             what="PUT with an all-zero signature")
    record = seal_with_application_key(user.user_id, "sig-3", 1).record
    expect_signature_refused(t, user, "sig-3", mutated(record, "public_keys.x25519",
                                                       b64url_encode(public_of(
                                                           seal_with_application_key(
                                                               "x", "y", 1)).x25519)),
                             what="PUT with the X25519 key swapped after signing")


@check("keypair-publication/publish/signature-other-context", requirements=("KP-6",))
def signature_other_context(t: Probe) -> None:
    """A signature made for another user's or app's context (a lifted signature) is
    refused with 422 (signature)."""
    user = t.user("lifted")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    seed = sealed.private.ed25519_seed
    for what, lifted in (
            ("another user_id", resign(sealed.record, seed,
                                       user_id=t.session.new_user_id("else"))),
            ("another client_id", resign(sealed.record, seed, client_id="other-app"))):
        expect_signature_refused(t, user, CLIENT, lifted,
                                 what=f"PUT a record signed for {what}")


@check("keypair-publication/publish/signature-other-version", requirements=("KP-6",))
def signature_other_version(t: Probe) -> None:
    """A signature made for another key_version is refused with 422 (signature)."""
    user = t.user("version")
    sealed = seal_with_application_key(user.user_id, CLIENT, 2)
    lifted = resign(sealed.record, sealed.private.ed25519_seed, key_version=1)
    expect_signature_refused(t, user, CLIENT, lifted,
                             what="PUT key_version 2 signed for key_version 1")


@check("keypair-publication/publish/signature-other-key", requirements=("KP-6",))
def signature_other_key(t: Probe) -> None:
    """A signature by an Ed25519 key other than the published one is refused with 422."""
    user = t.user("otherkey")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    forged = resign(sealed.record, os.urandom(32))
    expect_signature_refused(t, user, CLIENT, forged,
                             what="PUT a record signed by another Ed25519 key")


WRONG_LENGTHS = (("public_keys.x25519", (31, 33)), ("public_keys.ed25519", (31, 33)),
                 ("binding_signature", (63, 65)), ("encrypted_private_keys.nonce", (11, 13, 24)),
                 ("encrypted_private_keys.commitment", (31, 33, 16)),
                 ("encrypted_private_keys.ciphertext", (0, 79, 81, 64)))


@check("keypair-publication/publish/wrong-lengths",
       requirements=("KP-3", "KP-5", "KP-21", "API-1"))
def wrong_lengths(t: Probe) -> None:
    """Keys, signature, nonce, key commitment and ciphertext of the wrong length (an
    empty ciphertext too) are refused with 400 (length)."""
    user = t.user("lengths")
    for field, lengths in WRONG_LENGTHS:
        for n in lengths:
            client_id = f"len-{field.rsplit('.', 1)[-1]}-{n}"
            sealed = seal_with_application_key(user.user_id, client_id, 1)
            record = mutated(sealed.record, field, b64_of_length(n))
            if field.startswith("public_keys"):
                record = resign(record, sealed.private.ed25519_seed)
            exchange = t.put_keypair(user.user_id, client_id, record, token=user.token)
            t.expect_rejected(exchange, 400, what=f"PUT with a {n}-byte {field}",
                              failure_class="length")


@check("keypair-publication/publish/unsupported-algorithms", requirements=("KP-2", "KP-3"))
def unsupported_algorithms(t: Probe) -> None:
    """An AEAD, KEK method or KDF other than the profile's is refused with 400."""
    user = t.user("algs")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    salt = b64_of_length(16)
    for path, value in (("encrypted_private_keys.aead", "A128GCM"),
                        ("encrypted_private_keys.aead", "a256gcm"),
                        ("encrypted_private_keys.kek", {"method": "none"}),
                        ("encrypted_private_keys.kek", {"method": "password", "kdf": "scrypt",
                                                        "salt": salt, "t": 2, "m": 19456,
                                                        "p": 1})):
        exchange = t.put_keypair(user.user_id, CLIENT, mutated(record, path, value),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT with {path} = {value!r}")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")
