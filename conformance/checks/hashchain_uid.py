"""hashchain checks, UIDs and KeyInits: creations signed by SIGKEY and SIGESCROW are
accepted with a tlog-proof of their entry, every defective one is refused, an identity
can be created only once, updates chain to and are authorised by the UID they replace,
the identity's history read from the log is valid, and KeyInits are served once.

The runner makes every UID, KeyInit and flush request with keyflows.spec.hashchain_uid
and judges the answers with the same module and keyflows.spec.hashchain_client.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from keyflows.conformance.checks.hashchain_support import (
    CONCURRENT_WRITERS,
    FLOW,
    NEEDS,
    UIDS,
    Person,
    checked_reply,
    create,
    expect_spec,
    expect_unchanged,
    flip,
    get_json,
    history_of,
    identity_path,
    make_uid,
    person,
    post_uid,
    refused_uid,
    synced,
    uid_content,
)
from keyflows.conformance.checks.support import advertised_capacity
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode, b64url_encode

# The identity point: as a key with R = identity and S = 0 it "signs" every message for
# a verifier without the strict rule's checks (HC-35).
IDENTITY_POINT = bytes([1]) + bytes(31)


@check("hashchain/uid/create-reply-verifies",
       requirements=("HC-16", "HC-21", "HC-2", "HC-3", "HC-4"), needs=NEEDS)
def create_reply(t: Probe) -> None:
    """A UID signed by SIGKEY and SIGESCROW is accepted with 201 and a tlog-proof: the
    entry is included in a checkpoint signed by the log, and names this identity and UID
    (its hash_id is the identity's under the entry's nonce, its sealed hash opens with the
    identity's key to the UID's record hash, and its record index is that hash's)."""
    create(t, "create")


@check("hashchain/uid/identity-found", requirements=("HC-13", "HC-48"), needs=NEEDS)
def identity_found(t: Probe) -> None:
    """Following the log finds the new identity exactly at the reply's entry, with a
    valid one-creation history; the lookup endpoint names that index; an unknown
    identity is not found."""
    p, client, who, uid, reply = create(t, "found")
    client.sync()
    history = history_of(t, client, who.identity)
    if [item.index for item in history.items] != [reply.index] or history.current() != uid:
        t.fail("the log does not hold the identity exactly at the reply's entry",
               expected=str([reply.index]), actual=str([i.index for i in history.items]))
    exchange, body = get_json(t, identity_path(who.identity), what="GET the identity")
    if body.get("indexes") != [reply.index]:
        t.fail("the lookup endpoint does not name the identity's entry",
               expected=str([reply.index]), actual=describe(exchange), exchange=exchange)
    t.expect_rejected(t.request("GET", identity_path(person(t, p, "nobody").identity)), 404,
                      what="GET an identity without a UID")


@check("hashchain/uid/sealed-uid-served", requirements=("HC-24",), needs=NEEDS)
def sealed_uid(t: Probe) -> None:
    """The repository serves the UID by record index only sealed; it opens with the
    record hash from the log to exactly the UID sent. An unknown record index is 404, one
    that is not 32 bytes 400."""
    _, _, who, uid, reply = create(t, "sealed")
    index = b64url_encode(hc.record_index_of(reply.record_hash))
    exchange, body = get_json(t, f"{UIDS}/{index}", what="GET the sealed UID")
    opened = expect_spec(t, "the sealed UID does not open to the UID", exchange,
                         lambda: hu.open_sealed_uid(b64url_decode(body["sealed_uid"]),
                                                    reply.record_hash))
    if opened != uid or body.get("index") != reply.index:
        t.fail("the repository serves another UID or index", expected=repr(reply.index),
               actual=describe(exchange), exchange=exchange)
    if who.identity.encode() in exchange.response_body:
        t.fail("the repository names the identity in clear", expected="only sealed data",
               actual=describe(exchange), exchange=exchange)
    t.expect_rejected(t.request("GET", f"{UIDS}/{b64url_encode(os.urandom(32))}"), 404,
                      what="GET the sealed UID of an unknown record index")
    t.expect_rejected(t.request("GET", f"{UIDS}/{b64url_encode(os.urandom(31))}"), 400,
                      what="GET a record index of 31 bytes")


@check("hashchain/uid/bad-signatures-refused", requirements=("HC-15", "HC-16"), needs=NEEDS)
def bad_signatures(t: Probe) -> None:
    """A UID whose SIGKEY or SIGESCROW signature is bad, or a creation signed by SIGKEY
    alone, or whose X25519 key is not the one signed, is refused with 422 (signature);
    one whose X25519 key is of small order with 422 (point); the log does not grow."""
    p, _, checkpoint = synced(t)
    uid = make_uid(person(t, p, "badsig"), checkpoint)
    bad_key = hu.Uid(content=uid.content, sig_sigkey=flip(uid.sig_sigkey),
                     sig_sigescrow=uid.sig_sigescrow, previous_role=None, sig_previous=None)
    refused_uid(t, bad_key, 422, "signature", what="POST a UID with a bad SIGKEY signature")
    bad_escrow = hu.Uid(content=uid.content, sig_sigkey=uid.sig_sigkey,
                        sig_sigescrow=flip(uid.sig_sigescrow or bytes(64)), previous_role=None,
                        sig_previous=None)
    refused_uid(t, bad_escrow, 422, "signature",
                what="POST a UID with a bad SIGESCROW signature")
    wire = hu.uid_to_wire(uid)
    del wire["signatures"]["sigescrow"]
    refused_uid(t, wire, 422, "signature", what="POST a UID without the SIGESCROW signature")
    wire = hu.uid_to_wire(uid)
    wire["public_keys"]["x25519"] = b64url_encode(primitives.x25519_public_key(os.urandom(32)))
    refused_uid(t, wire, 422, "signature", what="POST a UID whose X25519 key is not the one "
                "its signatures cover")
    who = person(t, p, "badx")
    small = make_uid(who, checkpoint, x25519=bytes(32))
    refused_uid(t, small, 422, "point", what="POST a UID whose X25519 key is of small order")


@check("hashchain/uid/creation-shape-checked", requirements=("HC-16",), needs=NEEDS)
def creation_shape(t: Probe) -> None:
    """A creation carrying an update's fields, every signature on it valid, is refused
    with 422 (binding): msg_count 1, a previous record hash, or a signature by a previous
    key; so is one whose SIGKEY is its SIGESCROW (one key would then hold both roles).
    The log does not grow."""
    p, _, checkpoint = synced(t)
    who = person(t, p, "shape")
    refused_uid(t, make_uid(who, checkpoint, msg_count=1), 422, "binding",
                what="POST a creation with msg_count 1")
    refused_uid(t, make_uid(who, checkpoint, previous=os.urandom(32)), 422, "binding",
                what="POST a creation naming a previous UID")
    with_previous = hu.sign_uid(uid_content(who, checkpoint), sigkey_seed=who.sigkey_seed,
                                sigescrow_seed=who.escrow_seed, previous_seed=who.sigkey_seed,
                                previous_role="sigkey")
    refused_uid(t, with_previous, 422, "binding",
                what="POST a creation carrying a signature by a previous SIGKEY")
    one_key = Person(identity=who.identity, sigkey_seed=who.sigkey_seed,
                     escrow_seed=who.sigkey_seed, x25519_private=who.x25519_private)
    refused_uid(t, make_uid(one_key, checkpoint), 422, "binding",
                what="POST a creation whose SIGKEY is also its SIGESCROW")


@check("hashchain/uid/lax-ed25519-refused", requirements=("HC-35", "HC-16"), needs=NEEDS)
def lax_ed25519(t: Probe) -> None:
    """A UID whose SIGKEY is the identity point, with the "signature" R = identity,
    S = 0 that a lax verifier accepts for any message, is refused with 422 (point); a
    signature with S + L in place of S with 422 (signature)."""
    p, _, checkpoint = synced(t)
    who = person(t, p, "lax")
    content = uid_content(who, checkpoint, sigkey=IDENTITY_POINT)
    body = hu.uid_content_bytes(content)
    sig = primitives.ed25519_sign(who.escrow_seed, hu.uid_signature_message("sigescrow", body))
    lax = hu.Uid(content=content, sig_sigkey=IDENTITY_POINT + bytes(32), sig_sigescrow=sig,
                 previous_role=None, sig_previous=None)
    refused_uid(t, lax, 422, "point", what="POST a UID with a small-order SIGKEY")
    uid = make_uid(who, checkpoint)
    s = int.from_bytes(uid.sig_sigkey[32:], "little") + primitives.ED25519_L
    malleated = hu.Uid(content=uid.content, sig_sigkey=uid.sig_sigkey[:32] + s.to_bytes(32,
                                                                                         "little"),
                       sig_sigescrow=uid.sig_sigescrow, previous_role=None, sig_previous=None)
    refused_uid(t, malleated, 422, "signature", what="POST a UID whose SIGKEY signature has "
                "S + L in place of S")


@check("hashchain/uid/second-creation-refused", requirements=("HC-20", "HC-48"), needs=NEEDS)
def second_creation(t: Probe) -> None:
    """A second creation for an identity that has a UID, with other keys, is refused with
    409 and leaves the identity's history in the log one creation long."""
    _, client, who, _, reply = create(t, "dup")
    _, _, checkpoint = synced(t)
    rival = Person(identity=who.identity, sigkey_seed=os.urandom(32),
                   escrow_seed=os.urandom(32), x25519_private=os.urandom(32))
    t.expect_rejected(post_uid(t, make_uid(rival, checkpoint)), 409,
                      what="POST a second creation of the same identity",
                      failure_class="replay")
    client.sync()
    history = history_of(t, client, who.identity)
    if [item.index for item in history.items] != [reply.index]:
        t.fail("the log holds more than the one creation of the identity",
               expected=str([reply.index]), actual=str([i.index for i in history.items]))


@check("hashchain/uid/identity-syntax-and-domain", requirements=("HC-14", "HC-34"),
       needs=NEEDS)
def identity_syntax(t: Probe) -> None:
    """An identity not in mapped form or not well formed (length, characters, '@', DNS
    domain) is 400, in a UID (created or updated) or a path; a well-formed one at the
    length limits (a localpart of 3 or 64 bytes) is not; a domain the server does not
    serve is 422, in a creation or an update's path."""
    p, _, checkpoint = synced(t)
    who = person(t, p, "syntax")
    local = who.identity.split("@")[0]
    unmapped = Person(identity=f"J{local}@{p.domains[0]}", sigkey_seed=who.sigkey_seed,
                      escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    refused_uid(t, make_uid(unmapped, checkpoint), 400, "decode",
                what="POST a UID whose identity is not in mapped form")
    t.expect_rejected(t.request("GET", identity_path(unmapped.identity)), 400,
                      what="GET an identity path not in mapped form")
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hu.uid_to_wire(make_uid(unmapped, checkpoint))), 400,
                      what="PUT a UID whose identity is not in mapped form",
                      failure_class="decode")
    domain = p.domains[0]
    long_domain = f"{'x' * 63}.{'y' * 63}.{'z' * 61}"  # 189 bytes: 64 + 1 + 189 = 254
    for bad, why in (("ab", "a localpart shorter than 3"), ("-abc", "a leading '-'"),
                     ("abc-", "a trailing '-'"), ("ab--c", "the sequence '--'"),
                     ("ab!c", "a character outside the mapped alphabet"),
                     ("a" * 65, "a localpart longer than 64")):
        t.expect_rejected(t.request("GET", identity_path(f"{bad}@{domain}")), 400,
                          what=f"GET an identity with {why}")
    for bad, why in (("abcdef", "no '@'"), ("abc@localhost", "a one-label domain"),
                     ("abc@bad_label.test", "a domain label with '_'"),
                     (f"{'a' * 64}@{long_domain[:-1]}q2", "255 bytes")):
        t.expect_rejected(t.request("GET", identity_path(bad)), 400,
                          what=f"GET an identity with {why}")
    # at the limits: well formed, so unknown here (404) or on a domain not served (422)
    for edge in ("a" * 64, "abc"):
        t.expect_rejected(t.request("GET", identity_path(f"{edge}@{domain}")), 404,
                          what=f"GET an unknown identity with a {len(edge)}-byte localpart")
    refused_uid(t, make_uid(Person(identity=f"{'a' * 64}@{long_domain}",
                                   sigkey_seed=who.sigkey_seed, escrow_seed=who.escrow_seed,
                                   x25519_private=who.x25519_private), checkpoint), 422,
                "binding", what="POST a UID with a 254-byte identity on a domain not served")
    foreign = Person(identity=f"{local}@not-served.invalid", sigkey_seed=who.sigkey_seed,
                     escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    refused_uid(t, make_uid(foreign, checkpoint), 422, "binding",
                what="POST a UID for a domain the server does not serve")
    t.expect_rejected(t.request("PUT", identity_path(foreign.identity, "/uid"),
                                json_body=hu.uid_to_wire(make_uid(foreign, checkpoint))), 422,
                      what="PUT a UID to an identity on a domain the server does not serve",
                      failure_class="binding")


@check("hashchain/uid/last-checkpoint-checked", requirements=("HC-19",), needs=NEEDS)
def last_checkpoint_checked(t: Probe) -> None:
    """A UID naming a checkpoint that is not one of this log (another root, a size
    beyond it, or the empty tree: no log signs size 0) is refused with 422 (link), in a
    creation or an update."""
    p, _, checkpoint = synced(t)
    empty_root = hashlib.sha256(b"").digest()  # the root of the empty tree
    for last in (hu.LastCheckpoint(size=checkpoint.size, root=os.urandom(32)),
                 hu.LastCheckpoint(size=checkpoint.size + 1000, root=checkpoint.root_hash),
                 hu.LastCheckpoint(size=0, root=empty_root)):
        uid = make_uid(person(t, p, "last"), checkpoint, last_checkpoint=last)
        refused_uid(t, uid, 422, "link", what=f"POST a UID naming a checkpoint of size "
                    f"{last.size} this log did not sign")
    _, client, who, current, _ = create(t, "lastu")
    checkpoint = client.sync()
    update = update_of(who, current, checkpoint, new_seed=os.urandom(32),
                       last=hu.LastCheckpoint(size=checkpoint.size, root=os.urandom(32)))
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hu.uid_to_wire(update)), 422,
                      what="PUT an update naming a checkpoint this log did not sign",
                      failure_class="link")


MAX_FILLED_LAG = 64


@check("hashchain/uid/last-checkpoint-lag", requirements=("HC-19",),
       needs=(*NEEDS, "keypair-publication"))
def last_checkpoint_lag(t: Probe) -> None:
    """A UID whose last_checkpoint lies exactly the advertised max_checkpoint_lag entries
    behind the log is taken (201); one lying one entry further behind is refused with 422
    (expired). The runner names earlier sizes of the log it follows, so the log needs
    max_checkpoint_lag + 2 entries: a shorter one is filled with keypair publications (one
    entry each, HC-29) for a lag up to 64, and the check is skipped for a longer lag."""
    p, client, checkpoint = synced(t)
    lag = ((t.session.capabilities or {}).get(FLOW) or {}).get("max_checkpoint_lag")
    if not isinstance(lag, int) or isinstance(lag, bool) or lag < 0:
        t.fail("capabilities.hashchain.max_checkpoint_lag is not a number of entries",
               expected="an integer >= 0", actual=repr(lag))
    if checkpoint.size < lag + 2:
        if lag > MAX_FILLED_LAG:
            raise CheckSkipped(f"the log holds {checkpoint.size} entries, fewer than "
                               f"max_checkpoint_lag + 2 = {lag + 2}")
        user = t.user("hc-lag")
        for i in range(lag + 2 - checkpoint.size):
            t.publish(user, f"lag{i}", 1)
        checkpoint = client.sync()

    def last_at(size: int) -> hu.LastCheckpoint:
        leaves = [hc.entry_leaf_hash(entry) for entry in client.entries[:size]]
        return hu.LastCheckpoint(size=size, root=merkle.root_of(leaves))

    edge = make_uid(person(t, p, "lag"), checkpoint,
                    last_checkpoint=last_at(checkpoint.size - lag))
    checked_reply(t, p, post_uid(t, edge), edge, 201)
    checkpoint = client.sync()
    behind = make_uid(person(t, p, "lagged"), checkpoint,
                      last_checkpoint=last_at(checkpoint.size - lag - 1))
    refused_uid(t, behind, 422, "expired", what=f"POST a UID naming a checkpoint "
                f"{lag + 1} entries behind the log (max_checkpoint_lag {lag})")


@check("hashchain/uid/validity-checked", requirements=("HC-18",), needs=NEEDS)
def validity_checked(t: Probe) -> None:
    """An expired or not yet valid UID is refused with 422 (expired); an empty or
    reversed validity, or one a second over 366 days, with 400 (params). A validity of
    exactly 366 days is taken."""
    p, _, checkpoint = synced(t)
    now = int(time.time())
    expired = make_uid(person(t, p, "old"), checkpoint, not_before=now - 7200,
                       not_after=now - 3600)
    refused_uid(t, expired, 422, "expired", what="POST an expired UID")
    early = make_uid(person(t, p, "early"), checkpoint, not_before=now + 3600,
                     not_after=now + 7200)
    refused_uid(t, early, 422, "expired", what="POST a UID valid only from in an hour")
    too_long = make_uid(person(t, p, "long"), checkpoint, not_before=now - 60,
                        not_after=now - 60 + hu.MAX_UID_VALIDITY + 1)
    refused_uid(t, too_long, 400, "params", what="POST a UID valid for more than 366 days")
    for label, not_after, what in (("empty", now - 60, "an empty validity"),
                                   ("reversed", now - 120, "not_after before not_before")):
        uid = make_uid(person(t, p, label), checkpoint, not_before=now - 60,
                       not_after=not_after)
        refused_uid(t, uid, 400, "params", what=f"POST a UID with {what}")
    longest = make_uid(person(t, p, "longest"), checkpoint, not_before=now - 60,
                       not_after=now - 60 + hu.MAX_UID_VALIDITY)
    checked_reply(t, p, post_uid(t, longest), longest, 201)


def update_of(who: Person, current: hu.Uid, checkpoint: note.Checkpoint, *, new_seed: bytes,
              escrow_seed: bytes | None = None, role: str = "sigkey",
              escrow_signs: bool = False, last: hu.LastCheckpoint | None = None,
              **changes: Any) -> hu.Uid:
    if last is not None:
        changes["last_checkpoint"] = last
    fields: dict[str, Any] = {
        "msg_count": current.content.msg_count + 1, "previous": hu.uid_record_hash(current),
        "sigkey": primitives.ed25519_public_key(new_seed),
        "sigescrow": primitives.ed25519_public_key(escrow_seed or who.escrow_seed)}
    content = uid_content(who, checkpoint, **(fields | changes))
    return hu.sign_uid(content, sigkey_seed=new_seed,
                       sigescrow_seed=(escrow_seed or who.escrow_seed) if escrow_signs else None,
                       previous_seed=who.sigkey_seed if role == "sigkey" else who.escrow_seed,
                       previous_role=role)


@check("hashchain/uid/update-chains", requirements=("HC-17", "HC-21", "HC-48"), needs=NEEDS)
def update_chains(t: Probe) -> None:
    """An update authorised by the previous SIGKEY is accepted with a verified reply; the
    identity's history in the log is then the creation and this update; replaying the
    update is refused with 409."""
    p, client, who, uid, first = create(t, "upd")
    checkpoint = client.sync()
    update = update_of(who, uid, checkpoint, new_seed=os.urandom(32))
    exchange = t.request("PUT", identity_path(who.identity, "/uid"),
                         json_body=hu.uid_to_wire(update))
    reply = checked_reply(t, p, exchange, update, 200)
    client.sync()
    history = history_of(t, client, who.identity)
    if [i.index for i in history.items] != [first.index, reply.index] \
            or history.current() != update:
        t.fail("after the update the identity's history is not its creation and update",
               expected=f"entries {first.index} and {reply.index}",
               actual=str([i.index for i in history.items]))
    again = t.request("PUT", identity_path(who.identity, "/uid"),
                      json_body=hu.uid_to_wire(update))
    t.expect_rejected(again, 409, what="PUT the same update again", failure_class="replay")


@check("hashchain/uid/update-authorisation", requirements=("HC-17", "HC-20"), needs=NEEDS)
def update_authorisation(t: Probe) -> None:
    """A new SIGESCROW authorised only by the previous SIGKEY is refused with 422 (authz);
    an update signed by a stranger with 422 (signature); an update sent to another
    identity's path with 422 (binding); an update of an identity without a UID with
    404."""
    p, client, who, uid, _ = create(t, "auth")
    checkpoint = client.sync()
    escrow_swap = update_of(who, uid, checkpoint, new_seed=os.urandom(32),
                            escrow_seed=os.urandom(32), escrow_signs=True)
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hu.uid_to_wire(escrow_swap)), 422,
                      what="PUT a new SIGESCROW authorised by SIGKEY only",
                      failure_class="authz")
    thief = Person(identity=who.identity, sigkey_seed=os.urandom(32),
                   escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    stolen = update_of(thief, uid, checkpoint, new_seed=os.urandom(32))
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hu.uid_to_wire(stolen)), 422,
                      what="PUT an update signed by a stranger", failure_class="signature")
    other = update_of(who, uid, checkpoint, new_seed=os.urandom(32))
    other_who = person(t, p, "other")
    t.expect_rejected(t.request("PUT", identity_path(other_who.identity, "/uid"),
                                json_body=hu.uid_to_wire(other)), 422,
                      what="PUT an update to another identity's path", failure_class="binding")
    nobody = person(t, p, "nouid")
    t.expect_rejected(t.request("PUT", identity_path(nobody.identity, "/uid"),
                                json_body=hu.uid_to_wire(make_uid(nobody, checkpoint))), 404,
                      what="PUT an update for an identity without a UID")


@check("hashchain/uid/update-shape-checked", requirements=("HC-15", "HC-16", "HC-17",
                                                          "HC-18"), needs=NEEDS)
def update_shape(t: Probe) -> None:
    """Updates authorised by the current SIGKEY are still refused for what they carry:
    a previous hash that is not the current UID's (422 link); a SIGKEY equal to the
    SIGESCROW (422 binding); no signature by a previous key (422 signature) or one by a
    role other than sigkey or sigescrow (400 decode); a new
    SIGESCROW, authorised by the current SIGESCROW, that does not sign the update itself
    (422 signature); a bad SIGESCROW signature on an update keeping the SIGESCROW (422
    signature); an expired validity (422 expired) or one over 366 days (400 params). The
    log does not grow. A new SIGESCROW authorised by the current SIGESCROW and signing
    the update is then taken (200, with a verified reply)."""
    p, client, who, uid, _ = create(t, "ushape")
    checkpoint = client.sync()
    now = int(time.time())
    path = identity_path(who.identity, "/uid")
    new_escrow = os.urandom(32)
    unsigned = hu.uid_to_wire(update_of(who, uid, checkpoint, new_seed=os.urandom(32)))
    del unsigned["signatures"]["previous"]
    other_role = hu.uid_to_wire(update_of(who, uid, checkpoint, new_seed=os.urandom(32)))
    other_role["signatures"]["previous"]["key"] = "x25519"
    kept = update_of(who, uid, checkpoint, new_seed=os.urandom(32), escrow_signs=True)
    bad_escrow_sig = hu.Uid(content=kept.content, sig_sigkey=kept.sig_sigkey,
                            sig_sigescrow=flip(kept.sig_sigescrow or bytes(64)),
                            previous_role=kept.previous_role, sig_previous=kept.sig_previous)
    refused: tuple[tuple[hu.Uid | dict[str, Any], int, str, str], ...] = (
        (update_of(who, uid, checkpoint, new_seed=os.urandom(32), previous=os.urandom(32)),
         422, "link", "a previous hash that is not the current UID's"),
        (update_of(who, uid, checkpoint, new_seed=who.escrow_seed), 422, "binding",
         "the SIGESCROW as its new SIGKEY"),
        (unsigned, 422, "signature", "no signature by a key of the current UID"),
        (other_role, 400, "decode", "a previous signature by a role neither sigkey nor "
         "sigescrow"),
        (update_of(who, uid, checkpoint, new_seed=os.urandom(32), escrow_seed=new_escrow,
                   role="sigescrow"), 422, "signature",
         "a new SIGESCROW, authorised by the current one, that does not sign it"),
        (bad_escrow_sig, 422, "signature", "a bad SIGESCROW signature"),
        (update_of(who, uid, checkpoint, new_seed=os.urandom(32), not_before=now - 7200,
                   not_after=now - 3600), 422, "expired", "an expired validity"),
        (update_of(who, uid, checkpoint, new_seed=os.urandom(32), not_before=now - 60,
                   not_after=now - 60 + hu.MAX_UID_VALIDITY + 1), 400, "params",
         "a validity one second over 366 days"))
    for update, status, failure_class, what in refused:
        body = hu.uid_to_wire(update) if isinstance(update, hu.Uid) else update
        t.expect_rejected(t.request("PUT", path, json_body=body), status,
                          what=f"PUT an update with {what}", failure_class=failure_class)
    expect_unchanged(t, client, checkpoint, what="PUT refused updates")
    escrow_change = update_of(who, uid, checkpoint, new_seed=os.urandom(32),
                              escrow_seed=new_escrow, role="sigescrow", escrow_signs=True)
    checked_reply(t, p, t.request("PUT", path, json_body=hu.uid_to_wire(escrow_change)),
                  escrow_change, 200)


# --- KeyInits ---------------------------------------------------------------------------------

def keyinits(who: Person, count: int, *, seed: bytes | None = None) -> list[hu.KeyInit]:
    now = int(time.time())
    return [hu.make_keyinit(identity=who.identity, sigkey_seed=seed or who.sigkey_seed,
                            not_before=now - 60, not_after=now + 86400, random=os.urandom)[0]
            for _ in range(count)]


def publish_keyinits(t: Probe, who: Person, kis: list[hu.KeyInit]) -> Exchange:
    return t.request("POST", identity_path(who.identity, "/keyinits"),
                     json_body={"keyinits": [hu.keyinit_to_wire(k) for k in kis]})


def fetch_keyinit(t: Probe, who: Person) -> Exchange:
    return t.request("POST", identity_path(who.identity, "/keyinits/fetch"))


def served_key(t: Probe, who: Person, exchange: Exchange) -> bytes:
    body = t.expect_ok_json(exchange, 200, what="fetch a KeyInit")
    ki = expect_spec(t, "the KeyInit does not decode", exchange,
                     lambda: hu.parse_keyinit(body["keyinit"]))
    expect_spec(t, "the KeyInit does not verify against the identity's SIGKEY", exchange,
                lambda: hu.verify_keyinit(ki, identity=who.identity, current_sigkey=who.sigkey,
                                          now=int(time.time())))
    return bytes(ki.key_id)


@check("hashchain/keyinit/served-once", requirements=("HC-25", "HC-27"), needs=NEEDS)
def served_once(t: Probe) -> None:
    """Three published KeyInits are handed out once each, each signed by SIGKEY; the
    fourth fetch is 404."""
    _, _, who, _, _ = create(t, "ki")
    kis = keyinits(who, 3)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what="publish 3 KeyInits")
    served = [served_key(t, who, fetch_keyinit(t, who)) for _ in range(3)]
    if sorted(served) != sorted(k.key_id for k in kis):
        t.fail("the KeyInits handed out are not the three published, once each",
               expected=str(sorted(k.key_id.hex() for k in kis)),
               actual=str(sorted(s.hex() for s in served)))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="a fourth fetch")


@check("hashchain/keyinit/concurrent-fetch-once", requirements=("HC-27",), needs=NEEDS)
def concurrent_fetch(t: Probe) -> None:
    """Six KeyInits and sixteen concurrent fetches: exactly six succeed, with six
    distinct KeyInits; the others are 404. (Fewer of both when the server's advertised
    keyinit-fetch-identity bucket is smaller: the runner stays under it.)"""
    _, _, who, _, _ = create(t, "kic")
    fetches = advertised_capacity(t, "keyinit-fetch-identity", CONCURRENT_WRITERS)
    count = max(1, min(6, fetches - 1))
    kis = keyinits(who, count)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what=f"publish {count} KeyInits")
    with ThreadPoolExecutor(max_workers=fetches) as pool:
        exchanges = list(pool.map(lambda _: fetch_keyinit(t, who), range(fetches)))
    ok = [e for e in exchanges if e.status == 200]
    keys = [served_key(t, who, e) for e in ok]
    if len(ok) != count or len(set(keys)) != count:
        t.fail("concurrent fetches did not hand out each KeyInit exactly once",
               expected=f"{count} answers 200 with {count} distinct KeyInits",
               actual=f"{len(ok)} answers 200 with {len(set(keys))} distinct KeyInits",
               exchange=ok[0] if ok else exchanges[0])
    for e in exchanges:
        if e.status != 200:
            t.expect_rejected(e, 404, what="a concurrent fetch after the pool ran dry")


@check("hashchain/keyinit/signer-and-replay-checked", requirements=("HC-25", "HC-26"),
       needs=NEEDS)
def keyinit_signer(t: Probe) -> None:
    """KeyInits signed by another key than the current SIGKEY are refused (422); one
    naming another identity is refused (422 binding) even signed by the SIGKEY; a key_id
    published twice is refused (409); nothing of a refused batch is served; KeyInits for
    an identity without a UID are 404."""
    p, _, who, _, _ = create(t, "kis")
    t.expect_rejected(publish_keyinits(t, who, keyinits(who, 1, seed=who.escrow_seed)), 422,
                      what="publish a KeyInit signed by SIGESCROW", failure_class="authz")
    now = int(time.time())
    elsewhere = hu.make_keyinit(identity=f"x{who.identity}", sigkey_seed=who.sigkey_seed,
                                not_before=now - 60, not_after=now + 86400,
                                random=os.urandom)[0]
    t.expect_rejected(publish_keyinits(t, who, [elsewhere]), 422, failure_class="binding",
                      what="publish, under this identity, a KeyInit naming another one "
                           "signed by this identity's SIGKEY")
    kis = keyinits(who, 1)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what="publish a KeyInit")
    t.expect_rejected(publish_keyinits(t, who, kis + keyinits(who, 1)), 409,
                      what="publish a batch repeating a key_id", failure_class="replay")
    served_key(t, who, fetch_keyinit(t, who))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after the only valid KeyInit")
    nobody = person(t, p, "noki")
    t.expect_rejected(publish_keyinits(t, nobody, keyinits(nobody, 1)), 404,
                      what="publish KeyInits for an identity without a UID")


def signed_keyinit(who: Person, *, identity: str | None = None,
                   x25519: bytes | None = None) -> hu.KeyInit:
    """A KeyInit signed by the identity's SIGKEY, for any identity string or X25519 key."""
    now = int(time.time())
    name = who.identity if identity is None else identity
    key = primitives.x25519_public_key(os.urandom(32)) if x25519 is None else x25519
    key_id = os.urandom(hu.KEYINIT_ID_LEN)
    message = hu.keyinit_message(name, who.sigkey, key_id, now - 60, now + 86400, key)
    return hu.KeyInit(identity=name, sigkey=who.sigkey, key_id=key_id, not_before=now - 60,
                      not_after=now + 86400, x25519=key,
                      signature=primitives.ed25519_sign(who.sigkey_seed, message))


@check("hashchain/keyinit/shape-checked", requirements=("HC-14", "HC-25", "HC-26"),
       needs=NEEDS)
def keyinit_shape(t: Probe) -> None:
    """KeyInits signed by the current SIGKEY are still refused for what they carry: an
    X25519 key of small order (422 point), an identity not in mapped form (400 decode),
    or one KeyInit twice in one batch (409 replay, the batch refused whole); nothing of
    them is served."""
    _, _, who, _, _ = create(t, "kishape")
    t.expect_rejected(publish_keyinits(t, who, [signed_keyinit(who, x25519=bytes(32))]), 422,
                      failure_class="point",
                      what="publish a KeyInit whose X25519 key is of small order")
    unmapped = "J" + who.identity
    t.expect_rejected(publish_keyinits(t, who, [signed_keyinit(who, identity=unmapped)]), 400,
                      failure_class="decode",
                      what="publish a KeyInit whose identity is not in mapped form")
    twice = signed_keyinit(who)
    t.expect_rejected(publish_keyinits(t, who, [twice, twice]), 409, failure_class="replay",
                      what="publish a batch holding one KeyInit twice")
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after only refused KeyInits")


@check("hashchain/keyinit/lifetime-checked", requirements=("HC-25",), needs=NEEDS)
def keyinit_lifetime(t: Probe) -> None:
    """A KeyInit signed by the current SIGKEY is still refused for its dates: an empty or
    reversed interval or one a second longer than the maximum lifetime (400 params), one
    already past its not_after (422 expired); nothing of them is served. One exactly the
    maximum lifetime long is taken (201)."""
    _, _, who, _, _ = create(t, "kilife")
    now = int(time.time())
    longest = hu.MAX_KEYINIT_LIFETIME
    refused = (((now - 60, now - 60), 400, "params", "not_after equal to not_before"),
               ((now + 60, now - 60), 400, "params", "not_after before not_before"),
               ((now - 60, now - 60 + longest + 1), 400, "params",
                "a lifetime one second over the maximum"),
               ((now - 600, now - 300), 422, "expired", "not_after five minutes ago"))
    for (not_before, not_after), status, failure_class, what in refused:
        ki = hu.make_keyinit(identity=who.identity, sigkey_seed=who.sigkey_seed,
                             not_before=not_before, not_after=not_after,
                             random=os.urandom)[0]
        t.expect_rejected(publish_keyinits(t, who, [ki]), status,
                          failure_class=failure_class,
                          what=f"publish a KeyInit signed by the SIGKEY with {what}")
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after only refused KeyInits")
    longest_ki = hu.make_keyinit(identity=who.identity, sigkey_seed=who.sigkey_seed,
                                 not_before=now - 60, not_after=now - 60 + longest,
                                 random=os.urandom)[0]
    t.expect_ok_json(publish_keyinits(t, who, [longest_ki]), 201,
                     what="publish a KeyInit exactly the maximum lifetime long")


@check("hashchain/keyinit/flush-signed-and-fresh", requirements=("HC-28",), needs=NEEDS)
def flush(t: Probe) -> None:
    """A signed fresh flush removes the pending KeyInits; replaying it is 409; a stale one,
    one signed by another key or one naming another identity than the path is 422, one
    naming an identity not in mapped form 400."""
    p, _, who, _, _ = create(t, "fl")
    t.expect_ok_json(publish_keyinits(t, who, keyinits(who, 2)), 201,
                     what="publish 2 KeyInits")
    path = identity_path(who.identity, "/keyinits/flush")
    now = int(time.time())

    def request(seed: bytes, timestamp: int) -> hu.FlushRequest:
        return hu.make_flush_request(origin=p.origin, identity=who.identity, sigkey_seed=seed,
                                     timestamp=timestamp, nonce=os.urandom(16))

    stale = request(who.sigkey_seed, now - hu.FLUSH_WINDOW - 60)
    t.expect_rejected(t.request("POST", path, json_body=hu.flush_to_wire(stale)), 422,
                      what="a stale flush", failure_class="expired")
    forged = request(who.escrow_seed, now)
    t.expect_rejected(t.request("POST", path, json_body=hu.flush_to_wire(forged)), 422,
                      what="a flush signed by another key", failure_class="signature")
    elsewhere = hu.make_flush_request(origin=p.origin, identity=person(t, p, "fl2").identity,
                                      sigkey_seed=who.sigkey_seed, timestamp=now,
                                      nonce=os.urandom(16))
    t.expect_rejected(t.request("POST", path, json_body=hu.flush_to_wire(elsewhere)), 422,
                      what="a flush naming another identity than the path",
                      failure_class="binding")
    unmapped = hu.make_flush_request(origin=p.origin, identity="J" + who.identity,
                                     sigkey_seed=who.sigkey_seed, timestamp=now,
                                     nonce=os.urandom(16))
    t.expect_rejected(t.request("POST", path, json_body=hu.flush_to_wire(unmapped)), 400,
                      what="a flush naming an identity not in mapped form",
                      failure_class="decode")
    good = request(who.sigkey_seed, now)
    body = t.expect_ok_json(t.request("POST", path, json_body=hu.flush_to_wire(good)), 200,
                            what="a signed fresh flush")
    if body.get("flushed") != 2:
        t.fail("the flush did not remove both KeyInits", expected="flushed 2",
               actual=repr(body))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after the flush")
    t.expect_rejected(t.request("POST", path, json_body=hu.flush_to_wire(good)), 409,
                      what="the same flush again", failure_class="replay")


# --- the edges of validity periods, at the server's clock --------------------------------------

EDGE_ATTEMPTS = 4
DATE_POLL_S = 0.01
DATE_WAIT_S = 3.0


def date_of(t: Probe, path: str) -> int:
    """The server's clock in whole seconds, from the Date header of a GET."""
    exchange = t.request("GET", path)
    value = exchange.header("date")
    try:
        return int(email.utils.parsedate_to_datetime(value or "").timestamp())
    except (TypeError, ValueError):
        raise CheckSkipped("the server sends no Date header (RFC 9110 section 6.6.1) to "
                           "read its clock from") from None


def server_second(t: Probe, path: str) -> int:
    """The second the server's clock has just turned to: its Date header, read until it
    moves, so requests sent right after are most likely judged within that second. A
    server stamps Date with the time it answers, so its clock is never behind a Date it
    sent before."""
    first = date_of(t, path)
    deadline = time.monotonic() + DATE_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(DATE_POLL_S)
        second = date_of(t, path)
        if second != first:
            return second
    t.fail(f"the server's Date header did not change in {DATE_WAIT_S:.0f} s",
           expected="a Date that follows the clock", actual=f"{first} throughout")


@check("hashchain/time/validity-edges", requirements=("HC-18", "HC-25", "HC-28"), needs=NEEDS)
def validity_edges(t: Probe) -> None:
    """Validity periods hold from their start and end before their end, at the server's
    clock, read from its Date header just as it turns to a second S: an update valid from
    S is taken (200), one valid until S refused (422 expired), a KeyInit valid until S
    refused (422 expired), a flush stamped S + 300 (the window's far edge) taken (200).
    Four rounds, each edge sent first in one of them: a server judging an edge off by
    one second fails when that request lands within S."""
    p, client, who, current, _ = create(t, "edge")
    probe_path = identity_path(who.identity)
    uid_path = identity_path(who.identity, "/uid")
    for first in range(EDGE_ATTEMPTS):
        checkpoint = client.sync()
        s = server_second(t, probe_path)
        # Both updates keep SIGKEY, so the KeyInit and the flush verify in any order.
        seed = who.sigkey_seed
        starting = update_of(who, current, checkpoint, new_seed=seed, not_before=s,
                             not_after=s + 86400)
        # The first request after the Date turns is the likeliest to land within S: each
        # edge goes first in one round; the update valid until S (refused) replaces the
        # UID that is current when it is sent.
        order = [(first + i) % 4 for i in range(4)]
        ending = update_of(who, starting if order.index(1) > order.index(0) else current,
                           checkpoint, new_seed=seed, not_before=s - 60, not_after=s)
        key_id = os.urandom(hu.KEYINIT_ID_LEN)
        x25519 = primitives.x25519_public_key(os.urandom(32))
        keyinit = hu.KeyInit(identity=who.identity, sigkey=who.sigkey, key_id=key_id,
                             not_before=s - 60, not_after=s, x25519=x25519,
                             signature=primitives.ed25519_sign(seed, hu.keyinit_message(
                                 who.identity, who.sigkey, key_id, s - 60, s, x25519)))
        flush = hu.make_flush_request(origin=p.origin, identity=who.identity,
                                      sigkey_seed=seed, timestamp=s + hu.FLUSH_WINDOW,
                                      nonce=os.urandom(16))
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("PUT", uid_path, hu.uid_to_wire(starting)),
            ("PUT", uid_path, hu.uid_to_wire(ending)),
            ("POST", identity_path(who.identity, "/keyinits"),
             {"keyinits": [hu.keyinit_to_wire(keyinit)]}),
            ("POST", identity_path(who.identity, "/keyinits/flush"), hu.flush_to_wire(flush))]
        sent = {i: t.request(requests[i][0], requests[i][1], json_body=requests[i][2])
                for i in order}
        checked_reply(t, p, sent[0], starting, 200)
        t.expect_rejected(sent[1], 422, failure_class="expired",
                          what=f"PUT an update valid until the server's second {s}")
        t.expect_rejected(sent[2], 422, failure_class="expired",
                          what=f"publish a KeyInit valid until the server's second {s}")
        t.expect_ok_json(sent[3], 200, what=f"a flush stamped {hu.FLUSH_WINDOW} s after the "
                         f"server's second {s}")
        current = starting
