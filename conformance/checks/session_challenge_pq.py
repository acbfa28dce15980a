"""session-challenge checks of the post-quantum hybrid suite: for a record with an
ML-KEM-768 key the challenge is sealed with HPKE base mode and KEM MLKEM768-X25519
(SC-50), so a client holding the ML-KEM seed opens it with the hybrid suite only (SC-51)
and logs in; a record without one keeps the X25519 suite."""

from __future__ import annotations

from typing import Any

from keyflows.conformance.checks.session_challenge import (
    NEEDS,
    Owner,
    answer,
    expect_session,
    expected_origin,
    new_challenge,
)
from keyflows.conformance.clients import seal_with_application_key
from keyflows.conformance.probe import Probe
from keyflows.conformance.registry import check
from keyflows.spec import session_challenge as sc
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError

CLIENT = "sc-pq-app"


def pq_owner(t: Probe, label: str) -> Owner:
    """A user whose record (version 1) has an ML-KEM-768 key."""
    user = t.user(label)
    sealed = seal_with_application_key(user.user_id, CLIENT, 1, with_mlkem=True)
    return Owner(user=user, client_id=CLIENT, sealed=t.publish(user, CLIENT, sealed=sealed))


def open_hybrid(t: Probe, who: Owner, challenge: dict[str, Any]) -> bytes:
    """Step 6 as a client holding the ML-KEM seed: the hybrid suite only (SC-51)."""
    private = who.sealed.private
    try:
        opened = sc.open_challenge(challenge, origin=expected_origin(t), user_id=who.user_id,
                                   client_id=who.client_id, key_version=who.key_version,
                                   x25519_private=private.x25519,
                                   mlkem_seed=private.mlkem_seed)
    except SpecError as exc:
        t.fail(f"a client holding the record's ML-KEM key cannot open the challenge: {exc} "
               f"(failure class {exc.failure_class})",
               expected=f"suite {sc.HYBRID_SUITE} (MLKEM768-X25519), enc of 1120 bytes, "
                        "sealed to the record's mlkem768 || x25519 (SC-50)",
               actual=f"suite {challenge.get('suite')!r}",
               exchange=t.exchanges[-1] if t.exchanges else None)
    return opened.token


@check("session-challenge/hybrid/login", requirements=("SC-50", "SC-51", "SC-12"), needs=NEEDS)
def hybrid_login(t: Probe) -> None:
    """For a record with an ML-KEM-768 key the challenge uses the hybrid suite (kem_id
    0x647a): the owner opens it with both private keys, answers, and reads its record
    with the session token."""
    who = pq_owner(t, "sc-pq")
    challenge = new_challenge(t, who)
    token = open_hybrid(t, who, challenge)
    session = expect_session(t, who, answer(t, who, challenge["challenge_id"], token),
                             what="answering a hybrid challenge with the right token")
    exchange = t.get_keypair(who.user_id, who.client_id, token=b64url_encode(session))
    t.expect_status(exchange, 200, what="GET the own keypair with the session token")


@check("session-challenge/hybrid/suite-follows-record", requirements=("SC-50", "SC-5"),
       needs=NEEDS)
def suite_follows_record(t: Probe) -> None:
    """The suite follows the record: the X25519 suite for a record without an ML-KEM key,
    the hybrid suite after a rotation to a record with one (never the X25519 suite: a
    downgrade a client holding the ML-KEM seed refuses)."""
    user = t.user("sc-pq-rot")
    plain = t.publish(user, CLIENT, 1)
    who = Owner(user=user, client_id=CLIENT, sealed=plain)
    first = new_challenge(t, who)
    if first.get("suite") != sc.SUITE:
        t.fail("a record without an ML-KEM key got another suite than X25519",
               expected=repr(sc.SUITE), actual=repr(first.get("suite")),
               exchange=t.exchanges[-1])
    rotated = seal_with_application_key(user.user_id, CLIENT, 2, previous=plain,
                                        with_mlkem=True)
    who = Owner(user=user, client_id=CLIENT, sealed=t.publish(user, CLIENT, sealed=rotated))
    second = new_challenge(t, who)
    if second.get("suite") != sc.HYBRID_SUITE:
        t.fail("after a rotation to a record with an ML-KEM key the challenge is not sealed "
               "with the hybrid suite (a downgrade)", expected=repr(sc.HYBRID_SUITE),
               actual=repr(second.get("suite")), exchange=t.exchanges[-1])
    open_hybrid(t, who, second)
