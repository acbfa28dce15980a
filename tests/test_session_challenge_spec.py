"""The executable specification of the session-challenge flow (spec/session_challenge.py)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from keyflows.spec import hpke, primitives
from keyflows.spec import session_challenge as sc
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode, labelled_context
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import LABELS
from keyflows.spec.requirements import registry

USER, CLIENT, VERSION, NOW, LIFETIME = "alice", "notes.app", 3, 1_700_000_000, 60
ORIGIN = "https://keys.example"
RECIPIENT_PRIVATE = Drbg("test/session-challenge/recipient")(32)
RECIPIENT_PUBLIC = primitives.x25519_public_key(RECIPIENT_PRIVATE)
LIMITS = sc.Limits(challenge_lifetime=LIFETIME, max_attempts=3, session_lifetime=900)


def issue(label: str = "case", **overrides: Any) -> sc.IssuedChallenge:
    args: dict[str, Any] = {"origin": ORIGIN, "user_id": USER, "client_id": CLIENT,
                            "key_version": VERSION,
                            "recipient_public": RECIPIENT_PUBLIC, "now": NOW,
                            "lifetime": LIFETIME, "random": Drbg(f"test/{label}")}
    args.update(overrides)
    return sc.issue_challenge(**args)


def open_wire(wire: object, **overrides: Any) -> sc.OpenedChallenge:
    args: dict[str, Any] = {"origin": ORIGIN, "user_id": USER, "client_id": CLIENT,
                            "key_version": VERSION, "x25519_private": RECIPIENT_PRIVATE}
    args.update(overrides)
    return sc.open_challenge(wire, **args)


def rejection(wire: object, **overrides: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        open_wire(wire, **overrides)
    return info.value


# --- issuing (steps 4 and 5) ---------------------------------------------------------------

def test_issue_draws_id_token_and_ikm_in_that_order() -> None:
    stream = Drbg("test/order")(16 + 32 + 32)
    issued = issue(random=Drbg("test/order"))
    assert issued.challenge.binding.challenge_id == stream[:16]
    assert issued.challenge.token == stream[16:48]
    assert isinstance(issued.sealed, hpke.Sealed)
    assert issued.sealed.encapsulation.ikm_e == stream[48:80]
    assert issued.sealed.enc == hpke.derive_key_pair(stream[48:80]).public


def test_issue_sets_expiry_and_state() -> None:
    challenge = issue().challenge
    assert challenge.binding.expires_at == NOW + LIFETIME
    assert challenge.issued_at == NOW
    assert challenge.state is sc.ChallengeState.ISSUED


def test_info_is_the_labelled_context_of_every_bound_field() -> None:
    issued = issue()
    b = issued.challenge.binding
    expected = (b"keyflows-v1\x00session-challenge\x00"
                + b"\x00\x14https://keys.example"
                + b"\x00\x10" + b.challenge_id
                + b"\x00\x05alice" + b"\x00\x09notes.app"
                + b"\x00\x04" + VERSION.to_bytes(4, "big")
                + b"\x00\x08" + (NOW + LIFETIME).to_bytes(8, "big"))
    assert issued.info == expected == sc.challenge_info(b)


def test_sealed_token_is_rfc9180_seal_base_of_the_token() -> None:
    issued = issue()
    assert isinstance(issued.sealed, hpke.Sealed)
    again = hpke.seal_base(RECIPIENT_PUBLIC, issued.info, b"", issued.challenge.token,
                           ikm_e=issued.sealed.encapsulation.ikm_e)
    assert again == issued.sealed
    assert len(issued.sealed.ciphertext) == sc.SEALED_TOKEN_LEN == 48


def test_wire_has_exactly_the_challenge_members() -> None:
    wire = issue().wire
    assert tuple(wire) == sc.CHALLENGE_MEMBERS
    assert wire["suite"] == {"kem_id": 32, "kdf_id": 1, "aead_id": 2}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", wire["challenge_id"])
    assert wire["expires_at"] == NOW + LIFETIME


def test_challenge_id_is_an_identifier() -> None:
    # base64url's alphabet is within the identifier syntax, so ids fit URL paths.
    assert re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", issue().wire["challenge_id"])


def test_issue_refuses_lifetime_outside_the_profile() -> None:
    for lifetime in (0, 301, -5):
        with pytest.raises(SpecError) as info:
            issue(lifetime=lifetime)
        assert info.value.failure_class == "params"
        assert info.value.requirement == "SC-3"


def test_issue_refuses_a_low_order_recipient_key() -> None:
    with pytest.raises(SpecError) as info:
        issue(recipient_public=bytes(32))
    assert info.value.failure_class == "point"


def test_issue_refuses_bad_identifiers_and_versions() -> None:
    for overrides in ({"user_id": "al ice"}, {"client_id": ""}, {"key_version": 0},
                      {"key_version": 2**32}):
        with pytest.raises(SpecError):
            issue(**overrides)


# --- the client opens (step 6) ---------------------------------------------------------------

def test_client_opens_the_token() -> None:
    issued = issue()
    opened = open_wire(issued.wire)
    assert opened.token == issued.challenge.token
    assert opened.info == issued.info
    assert opened.opened.schedule == issued.sealed.schedule


def test_wrong_private_key_does_not_open() -> None:
    error = rejection(issue().wire, x25519_private=Drbg("test/other-key")(32))
    assert (error.failure_class, error.requirement) == ("aead", "SC-7")


@pytest.mark.parametrize("member,value", [("user_id", "mallory"), ("client_id", "other.app"),
                                          ("key_version", VERSION + 1)])
def test_challenge_for_another_context_is_a_binding_error(member: str, value: object) -> None:
    wire = issue().wire
    wire[member] = value
    error = rejection(wire)
    assert (error.failure_class, error.requirement) == ("binding", "SC-5")


@pytest.mark.parametrize("member,value,expect", [
    ("user_id", "mallory", {"user_id": "mallory"}),
    ("client_id", "other.app", {"client_id": "other.app"}),
    ("key_version", VERSION + 1, {"key_version": VERSION + 1}),
    ("expires_at", NOW + LIFETIME + 1, {}),
    ("challenge_id", b64url_encode(bytes(16)), {}),
])
def test_relabelled_challenge_does_not_open(member: str, value: object,
                                            expect: dict[str, Any]) -> None:
    # The client asks about the relabelled context, so the binding check passes and the
    # info mismatch is caught where it must be: by the AEAD (SC-7).
    wire = issue().wire
    wire[member] = value
    error = rejection(wire, **expect)
    assert (error.failure_class, error.requirement) == ("aead", "SC-7")


def test_token_sealed_for_another_challenge_does_not_open() -> None:
    first, second = issue("first").wire, issue("second").wire
    spliced = dict(first, enc=second["enc"], ciphertext=second["ciphertext"])
    assert rejection(spliced).failure_class == "aead"


@pytest.mark.parametrize("suite,klass", [
    ({"kem_id": 32, "kdf_id": 1, "aead_id": 1}, "params"),
    ({"kem_id": 16, "kdf_id": 1, "aead_id": 2}, "params"),
    ({"kem_id": 32, "kdf_id": 3, "aead_id": 2}, "params"),
    ({"kem_id": 32, "kdf_id": 1}, "decode"),
    ({"kem_id": 32, "kdf_id": 1, "aead_id": 2, "mode": 0}, "decode"),
    ({"kem_id": "32", "kdf_id": 1, "aead_id": 2}, "decode"),
    ("X25519-SHA256-A256GCM", "decode"),
])
def test_suite_is_exactly_the_v1_suite(suite: object, klass: str) -> None:
    wire = issue().wire
    wire["suite"] = suite
    assert rejection(wire).failure_class == klass


@pytest.mark.parametrize("u", sorted(primitives.X25519_LOW_ORDER_U))
def test_low_order_enc_is_a_point_error(u: int) -> None:
    wire = issue().wire
    wire["enc"] = b64url_encode(u.to_bytes(32, "little"))
    error = rejection(wire)
    assert (error.failure_class, error.requirement) == ("point", "SC-6")


def test_non_canonical_enc_is_a_point_error() -> None:
    issued = issue()
    enc = issued.sealed.enc
    for bad in (enc[:31] + bytes([enc[31] | 0x80]),
                (primitives.X25519_P + 1).to_bytes(32, "little")):
        wire = dict(issued.wire, enc=b64url_encode(bad))
        assert rejection(wire).failure_class == "point"


@pytest.mark.parametrize("member,cut", [("enc", 31), ("ciphertext", 47), ("challenge_id", 15)])
def test_truncated_fields_are_length_errors(member: str, cut: int) -> None:
    issued = issue()
    raw = {"enc": issued.sealed.enc, "ciphertext": issued.sealed.ciphertext,
           "challenge_id": issued.challenge.binding.challenge_id}[member]
    wire = dict(issued.wire, **{member: b64url_encode(raw[:cut])})
    assert rejection(wire).failure_class == "length"
    wire = dict(issued.wire, **{member: b64url_encode(raw + b"\x00")})
    assert rejection(wire).failure_class == "length"


@pytest.mark.parametrize("member", ["enc", "ciphertext", "challenge_id"])
def test_non_canonical_base64url_is_a_decode_error(member: str) -> None:
    wire = issue().wire
    text = wire[member]
    for bad in (text + "=", text[:-1] + "+", " " + text):
        assert rejection(dict(wire, **{member: bad})).failure_class == "decode"
    # A last character with non-zero unused bits decodes to the same bytes in a lax
    # decoder; v1 accepts one text per byte string.
    if len(text) % 4:  # 48-byte ciphertexts have no unused bits
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        sibling = alphabet[alphabet.index(text[-1]) | 1]
        assert sibling != text[-1]
        assert rejection(dict(wire, **{member: text[:-1] + sibling})).failure_class == "decode"


@pytest.mark.parametrize("mutate", [
    lambda w: w.pop("enc"),
    lambda w: w.update(extra=1),
    lambda w: w.update(key_version="3"),
    lambda w: w.update(key_version=True),
    lambda w: w.update(key_version=0),
    lambda w: w.update(expires_at=-1),
    lambda w: w.update(expires_at=2**64),
    lambda w: w.update(user_id="a/b"),
    lambda w: w.update(enc=None),
], ids=["missing", "unknown", "string-version", "bool-version", "zero-version",
        "negative-expiry", "huge-expiry", "bad-user", "null-enc"])
def test_malformed_challenges_are_decode_errors(mutate: Any) -> None:
    wire = copy.deepcopy(issue().wire)
    mutate(wire)
    assert rejection(wire).failure_class == "decode"


def test_a_challenge_that_is_not_an_object_is_a_decode_error() -> None:
    body: object
    for body in ([], "challenge", None, 3):
        assert rejection(body).failure_class == "decode"


# --- the answer (steps 7 and 8) ----------------------------------------------------------------

def test_answer_round_trip() -> None:
    token = issue().challenge.token
    assert sc.parse_answer(sc.answer_to_wire(token)) == token


@pytest.mark.parametrize("body,klass", [
    ({"token": b64url_encode(bytes(31))}, "length"),
    ({"token": b64url_encode(bytes(33))}, "length"),
    ({"token": b64url_encode(bytes(32)) + "="}, "decode"),
    ({"token": 5}, "decode"),
    ({}, "decode"),
    ({"token": b64url_encode(bytes(32)), "session": 1}, "decode"),
    ([b64url_encode(bytes(32))], "decode"),
])
def test_malformed_answers(body: object, klass: str) -> None:
    with pytest.raises(SpecError) as info:
        sc.parse_answer(body)
    assert info.value.failure_class == klass


def test_right_token_in_time_is_accepted_once() -> None:
    challenge = issue().challenge
    first = sc.answer_challenge(challenge, challenge.token, now=NOW + 1)
    assert first.accepted and first.challenge.state is sc.ChallengeState.ANSWERED
    replay = sc.answer_challenge(first.challenge, challenge.token, now=NOW + 2)
    assert not replay.accepted
    assert replay.error is not None
    assert (replay.error.failure_class, replay.error.requirement) == ("replay", "SC-8")
    assert replay.challenge == first.challenge


def test_wrong_token_burns_the_challenge() -> None:
    challenge = issue().challenge
    wrong = bytes(a ^ 1 for a in challenge.token)
    burned = sc.answer_challenge(challenge, wrong, now=NOW + 1)
    assert burned.error is not None
    assert (burned.error.failure_class, burned.error.requirement) == ("authz", "SC-10")
    assert burned.challenge.state is sc.ChallengeState.BURNED
    after = sc.answer_challenge(burned.challenge, challenge.token, now=NOW + 2)
    assert after.error is not None and after.error.failure_class == "replay"
    assert after.challenge.state is sc.ChallengeState.BURNED


def test_wrong_length_token_burns_too() -> None:
    challenge = issue().challenge
    result = sc.answer_challenge(challenge, challenge.token[:31], now=NOW)
    assert result.challenge.state is sc.ChallengeState.BURNED


def test_expiry_boundary() -> None:
    challenge = issue().challenge
    expires_at = challenge.binding.expires_at
    assert sc.answer_challenge(challenge, challenge.token, now=expires_at - 1).accepted
    late = sc.answer_challenge(challenge, challenge.token, now=expires_at)
    assert late.error is not None
    assert (late.error.failure_class, late.error.requirement) == ("expired", "SC-9")
    assert late.challenge.state is sc.ChallengeState.EXPIRED
    again = sc.answer_challenge(late.challenge, challenge.token, now=NOW)
    assert again.error is not None and again.error.failure_class == "replay"


def test_expired_wins_over_wrong_token() -> None:
    challenge = issue().challenge
    result = sc.answer_challenge(challenge, bytes(32), now=NOW + LIFETIME + 100)
    assert result.challenge.state is sc.ChallengeState.EXPIRED


def test_expire_sweep() -> None:
    challenge = issue().challenge
    assert sc.expire_challenge(challenge, now=NOW + LIFETIME - 1) == challenge
    swept = sc.expire_challenge(challenge, now=NOW + LIFETIME)
    assert swept.state is sc.ChallengeState.EXPIRED
    answered = sc.answer_challenge(challenge, challenge.token, now=NOW).challenge
    assert sc.expire_challenge(answered, now=NOW + 10**6) == answered


def test_terminal_states_have_no_transitions() -> None:
    assert sc.TRANSITIONS[sc.ChallengeState.ISSUED] == {
        sc.ChallengeState.ANSWERED, sc.ChallengeState.BURNED, sc.ChallengeState.EXPIRED}
    for state in (sc.ChallengeState.ANSWERED, sc.ChallengeState.BURNED,
                  sc.ChallengeState.EXPIRED):
        assert not sc.TRANSITIONS[state]


def test_answer_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = primitives.constant_time_equal

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    challenge = issue().challenge
    monkeypatch.setattr(primitives, "constant_time_equal", spy)
    sc.answer_challenge(challenge, challenge.token, now=NOW)
    assert calls == [(challenge.token, challenge.token)]


# --- attempt limit (step 3) -----------------------------------------------------------------

def test_attempts_are_counted_in_the_lifetime_window() -> None:
    times = [NOW - LIFETIME, NOW - LIFETIME + 1, NOW - 1, NOW, NOW + 1]
    # (now - window, now]: the first is out, the future one too.
    assert sc.attempts_in_window(times, now=NOW, window=LIFETIME) == 3


def test_attempt_limit() -> None:
    sc.check_attempt_limit([NOW - 1, NOW], now=NOW, limits=LIMITS)
    with pytest.raises(SpecError) as info:
        sc.check_attempt_limit([NOW - 2, NOW - 1, NOW], now=NOW, limits=LIMITS)
    assert (info.value.failure_class, info.value.requirement) == ("authz", "SC-2")
    sc.check_attempt_limit([NOW - 2, NOW - 1, NOW], now=NOW + LIFETIME - 1, limits=LIMITS)


# --- sessions (steps 9 and 10) ----------------------------------------------------------------

def answered() -> sc.ServerChallenge:
    challenge = issue().challenge
    return sc.answer_challenge(challenge, challenge.token, now=NOW).challenge


def test_session_is_issued_for_an_answered_challenge_only() -> None:
    with pytest.raises(ValueError):
        sc.issue_session(issue().challenge, now=NOW, lifetime=900, random=Drbg("s"))
    issued = sc.issue_session(answered(), now=NOW, lifetime=900, random=Drbg("test/session"))
    assert issued.token == Drbg("test/session")(32)
    assert issued.session == sc.Session(digest=sc.session_token_digest(issued.token),
                                        user_id=USER, client_id=CLIENT, key_version=VERSION,
                                        expires_at=NOW + 900)
    assert tuple(issued.wire) == sc.SESSION_MEMBERS
    assert issued.wire["token_type"] == "Bearer"
    assert (issued.wire["scope"], issued.wire["key_version"]) == ("keypair:read", VERSION)


def test_session_digest_is_labelled_sha256() -> None:
    token = bytes(range(32))
    assert sc.session_token_digest(token) == primitives.sha256(
        labelled_context("session-token", token))
    assert token not in sc.session_token_digest(token)


def test_session_wire_round_trip() -> None:
    issued = sc.issue_session(answered(), now=NOW, lifetime=900, random=Drbg("test/session"))
    token, session = sc.parse_session(issued.wire)
    assert (token, session) == (issued.token, issued.session)
    for broken in (dict(issued.wire, token_type="MAC"), dict(issued.wire, extra=1),
                   dict(issued.wire, session_token=issued.wire["session_token"][:-2]),
                   dict(issued.wire, scope="keypair:write"), dict(issued.wire, key_version=0)):
        with pytest.raises(SpecError):
            sc.parse_session(broken)
    sc.check_session_answer(session, user_id=USER, client_id=CLIENT, key_version=VERSION)
    for user_id, client_id, version in ((USER, CLIENT, VERSION + 1), ("bob", CLIENT, VERSION),
                                        (USER, "other.app", VERSION)):
        with pytest.raises(SpecError) as info:
            sc.check_session_answer(session, user_id=user_id, client_id=client_id,
                                    key_version=version)
        assert (info.value.failure_class, info.value.requirement) == ("binding", "SC-19")


READ = sc.Operation.GET_KEYPAIR


def test_session_scope_and_expiry() -> None:
    session = sc.issue_session(answered(), now=NOW, lifetime=900, random=Drbg("x")).session
    sc.check_session(session, user_id=USER, client_id=CLIENT, operation=READ, now=NOW + 899)
    for user_id, client_id in ((USER, "other.app"), ("bob", CLIENT), ("bob", "other.app")):
        with pytest.raises(SpecError) as info:
            sc.check_session(session, user_id=user_id, client_id=client_id, operation=READ,
                             now=NOW)
        assert (info.value.failure_class, info.value.requirement) == ("authz", "SC-13")
    with pytest.raises(SpecError) as info:
        sc.check_session(session, user_id=USER, client_id=CLIENT, operation=READ,
                         now=NOW + 900)
    assert info.value.failure_class == "expired"


def test_session_allows_reading_only() -> None:
    """SC-15: a live session on its own record allows GET_KEYPAIR and nothing else."""
    session = sc.issue_session(answered(), now=NOW, lifetime=900, random=Drbg("x")).session
    assert sc.SESSION_OPERATIONS == {sc.Operation.GET_KEYPAIR}
    for operation in sc.Operation:
        if operation is READ:
            continue
        with pytest.raises(SpecError) as info:
            sc.check_session(session, user_id=USER, client_id=CLIENT, operation=operation,
                             now=NOW)
        assert (info.value.failure_class, info.value.requirement) == ("authz", "SC-15")


def test_session_ends_with_its_key_version() -> None:
    """SC-16: a rotation, a reset (both a new key_version) or a deletion ends a session."""
    session = sc.issue_session(answered(), now=NOW, lifetime=900, random=Drbg("x")).session
    sc.check_session_key_version(session, VERSION)
    for live in (VERSION + 1, VERSION - 1, None):
        with pytest.raises(SpecError) as info:
            sc.check_session_key_version(session, live)
        assert (info.value.failure_class, info.value.requirement) == ("binding", "SC-16")


# --- origins (SC-17, SC-18) ---------------------------------------------------------------------

@pytest.mark.parametrize("origin", [
    "https://keys.example", "http://127.0.0.1:8000", "https://[2001:db8::1]:8443",
    "http://localhost", "https://a.b-c.example:1",
])
def test_valid_origins(origin: str) -> None:
    assert sc.check_origin(origin) == origin


@pytest.mark.parametrize("origin", [
    "https://keys.example/", "https://keys.example/v1", "HTTPS://keys.example",
    "https://Keys.example", "https://keys.example:443", "http://keys.example:80",
    "https://user@keys.example", "wss://keys.example", "https://keys.example:0",
    "https://keys.example:65536", "https://keys.example:08443", "https://-keys.example",
    "https://keys.example?x", "https://" + "a" * 248, "", 443, None,
])
def test_invalid_origins(origin: Any) -> None:
    with pytest.raises(SpecError) as info:
        sc.check_origin(origin)
    assert info.value.failure_class == "decode"


@pytest.mark.parametrize(("url", "origin"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/prefix/", "http://127.0.0.1:8000"),
    ("HTTPS://Keys.Example:443/v1", "https://keys.example"),
    ("http://[::1]:9000", "http://[::1]:9000"),
])
def test_origin_of_url(url: str, origin: str) -> None:
    assert sc.origin_of_url(url) == origin


def test_relayed_challenge_is_refused_before_any_cryptography() -> None:
    """SC-18: a challenge this server issued, opened by a client that asked another origin
    (a relay), is refused with class binding; relabelled to the relay's origin it does not
    open."""
    wire = issue().wire
    error = rejection(wire, origin="https://relay.example")
    assert (error.failure_class, error.requirement) == ("binding", "SC-18")
    error = rejection(dict(wire, origin="https://relay.example"), origin="https://relay.example")
    assert (error.failure_class, error.requirement) == ("aead", "SC-7")


def test_session_lifetime_range() -> None:
    for lifetime in (0, 86401):
        with pytest.raises(SpecError):
            sc.issue_session(answered(), now=NOW, lifetime=lifetime, random=Drbg("x"))


def test_bearer_shape() -> None:
    token = bytes(range(32))
    assert sc.session_token_from_bearer(b64url_encode(token)) == token
    assert sc.session_token_from_bearer("short") is None
    assert sc.session_token_from_bearer("!" * 43) is None
    assert sc.session_token_from_bearer(b64url_encode(token)[:-1] + "B") is None  # bits


# --- limits and capabilities (step 11) --------------------------------------------------------

def test_limits_round_trip_and_ranges() -> None:
    wire = sc.limits_to_wire(LIMITS)
    assert wire == {"challenge_lifetime_seconds": 60, "max_attempts": 3,
                    "session_lifetime_seconds": 900}
    assert sc.parse_limits(dict(wire, future_member=True)) == LIMITS
    for bad in (dict(wire, challenge_lifetime_seconds=0), dict(wire, max_attempts=0),
                dict(wire, session_lifetime_seconds=10**6), dict(wire, max_attempts="3")):
        with pytest.raises(SpecError) as info:
            sc.parse_limits(bad)
        assert info.value.failure_class == "params"
    with pytest.raises(SpecError):
        sc.parse_limits({"max_attempts": 3})


# --- registries --------------------------------------------------------------------------

def test_labels_are_registered() -> None:
    assert "session-challenge" in LABELS and "session-token" in LABELS


def test_every_sc_requirement_is_implemented_and_every_cited_one_exists() -> None:
    source = Path(sc.__file__).read_text(encoding="utf-8")
    cited = set(re.findall(r"\bSC-\d+\b", source))
    known = {rid for rid, req in registry().items() if req.flow == sc.FLOW_ID}
    assert cited == known
    assert all(registry()[rid].level.startswith("MUST") for rid in known)
