"""Properties of the session-challenge specification (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyflows.spec import primitives
from keyflows.spec import session_challenge as sc
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

identifiers = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-",
                      min_size=1, max_size=64)
versions = st.integers(min_value=1, max_value=2**32 - 1)
times = st.integers(min_value=0, max_value=2**40)
lifetimes = st.integers(min_value=sc.MIN_CHALLENGE_LIFETIME, max_value=sc.MAX_CHALLENGE_LIFETIME)
seeds = st.text(min_size=1, max_size=16)
hosts = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?\Z")
origins = st.builds(lambda scheme, host, port: f"{scheme}://{host}"
                    + ("" if port is None or port == sc.DEFAULT_PORTS[scheme] else f":{port}"),
                    st.sampled_from(["https", "http"]), hosts,
                    st.none() | st.integers(min_value=1, max_value=65535))
operations = st.sampled_from(list(sc.Operation))


@st.composite
def issued_challenges(draw: st.DrawFn) -> tuple[sc.IssuedChallenge, bytes]:
    private = Drbg(f"prop/key/{draw(seeds)}")(32)
    issued = sc.issue_challenge(origin=draw(origins), user_id=draw(identifiers),
                                client_id=draw(identifiers),
                                key_version=draw(versions),
                                recipient_public=primitives.x25519_public_key(private),
                                now=draw(times), lifetime=draw(lifetimes),
                                random=Drbg(f"prop/challenge/{draw(seeds)}"))
    return issued, private


def open_as_owner(wire: dict[str, Any], issued: sc.IssuedChallenge, private: bytes,
                  **expect: Any) -> sc.OpenedChallenge:
    binding = issued.challenge.binding
    args: dict[str, Any] = {"origin": binding.origin, "user_id": binding.user_id,
                            "client_id": binding.client_id,
                            "key_version": binding.key_version, "x25519_private": private}
    args.update(expect)
    return sc.open_challenge(wire, **args)


def failure_class(wire: dict[str, Any], issued: sc.IssuedChallenge, private: bytes,
                  **expect: Any) -> str:
    try:
        open_as_owner(wire, issued, private, **expect)
    except SpecError as exc:
        return exc.failure_class
    return "accepted"


@SETTINGS
@given(issued_challenges())
def test_round_trip(case: tuple[sc.IssuedChallenge, bytes]) -> None:
    issued, private = case
    opened = open_as_owner(issued.wire, issued, private)
    assert opened.token == issued.challenge.token
    result = sc.answer_challenge(issued.challenge, opened.token, now=issued.challenge.issued_at)
    assert result.accepted


@SETTINGS
@given(issued_challenges(), st.data())
def test_any_bit_flip_in_the_sealed_token_is_rejected(
        case: tuple[sc.IssuedChallenge, bytes], data: st.DataObject) -> None:
    issued, private = case
    member = data.draw(st.sampled_from(["enc", "ciphertext"]))
    raw = bytearray(b64url_decode(issued.wire[member]))
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(raw) - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    wire = dict(issued.wire, **{member: b64url_encode(bytes(raw))})
    got = failure_class(wire, issued, private)
    if member == "enc" and not primitives.x25519_is_canonical(bytes(raw)):
        assert got == "point"
    elif member == "enc" and primitives.x25519_is_low_order(bytes(raw)):
        assert got == "point"  # pragma: no cover - a flip landing on a low-order u
    else:
        assert got == "aead"


@SETTINGS
@given(issued_challenges(), st.data())
def test_any_change_to_a_bound_field_is_rejected(
        case: tuple[sc.IssuedChallenge, bytes], data: st.DataObject) -> None:
    issued, private = case
    binding = issued.challenge.binding
    member = data.draw(st.sampled_from(["origin", "challenge_id", "user_id", "client_id",
                                        "key_version", "expires_at"]))
    value: Any
    if member == "origin":
        value = data.draw(origins.filter(lambda v: v != binding.origin))
    elif member == "challenge_id":
        value = b64url_encode(data.draw(st.binary(min_size=16, max_size=16).filter(
            lambda b: b != binding.challenge_id)))
    elif member in ("user_id", "client_id"):
        value = data.draw(identifiers.filter(lambda v: v != getattr(binding, member)))
    elif member == "key_version":
        value = data.draw(versions.filter(lambda v: v != binding.key_version))
    else:
        value = data.draw(st.integers(min_value=0, max_value=2**64 - 1).filter(
            lambda v: v != binding.expires_at))
    wire = dict(issued.wire, **{member: value})
    # A client asking about the original context sees a binding error for the fields it
    # checks; one asking about the relabelled context gets as far as the AEAD.
    if member in ("origin", "user_id", "client_id", "key_version"):
        assert failure_class(wire, issued, private) == "binding"
        assert failure_class(wire, issued, private, **{member: value}) == "aead"
    else:
        assert failure_class(wire, issued, private) == "aead"


@SETTINGS
@given(issued_challenges(), st.binary(min_size=32, max_size=32))
def test_only_the_owner_key_opens(case: tuple[sc.IssuedChallenge, bytes], other: bytes) -> None:
    issued, private = case
    if primitives.x25519_public_key(other) == primitives.x25519_public_key(private):
        return  # the same clamped scalar
    assert failure_class(issued.wire, issued, private, x25519_private=other) == "aead"


answers = st.lists(st.tuples(st.booleans(), st.integers(min_value=-5, max_value=400)),
                   min_size=1, max_size=6)


@SETTINGS
@given(issued_challenges(), answers)
def test_state_machine_invariants(case: tuple[sc.IssuedChallenge, bytes],
                                  script: list[tuple[bool, int]]) -> None:
    """Whatever the answers and their times: at most one is accepted, only the first, only
    if it is right and in time; once the challenge leaves ISSUED it never changes again and
    every later answer is a replay."""
    issued, _ = case
    challenge = issued.challenge
    wrong = bytes(b ^ 0xFF for b in challenge.token)
    accepted = 0
    for index, (right, offset) in enumerate(script):
        now = challenge.issued_at + offset
        before = challenge
        result = sc.answer_challenge(challenge, challenge.token if right else wrong, now=now)
        challenge = result.challenge
        if before.state is not sc.ChallengeState.ISSUED:
            assert result.error is not None and result.error.failure_class == "replay"
            assert challenge == before
            continue
        assert index == 0
        assert challenge.state in sc.TRANSITIONS[sc.ChallengeState.ISSUED]
        expired = now >= before.binding.expires_at
        if expired:
            assert challenge.state is sc.ChallengeState.EXPIRED
            assert result.error is not None and result.error.failure_class == "expired"
        elif not right:
            assert challenge.state is sc.ChallengeState.BURNED
            assert result.error is not None and result.error.failure_class == "authz"
        else:
            assert challenge.state is sc.ChallengeState.ANSWERED and result.accepted
            accepted += 1
    assert accepted <= 1


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
       st.integers(min_value=0, max_value=10_000), lifetimes,
       st.integers(min_value=1, max_value=20))
def test_attempt_limit_matches_the_window_count(issued_at: list[int], now: int, window: int,
                                                max_attempts: int) -> None:
    limits = sc.Limits(challenge_lifetime=window, max_attempts=max_attempts,
                       session_lifetime=900)
    count = sum(1 for t in issued_at if now - window < t <= now)
    try:
        sc.check_attempt_limit(issued_at, now=now, limits=limits)
        refused = False
    except SpecError as exc:
        assert exc.requirement == "SC-2"
        refused = True
    assert refused == (count >= max_attempts)
    # After a whole window without new challenges, the user can always try again.
    sc.check_attempt_limit(issued_at, now=max(issued_at, default=0) + window, limits=limits)


@SETTINGS
@given(st.binary(min_size=32, max_size=32), identifiers, identifiers, versions, times,
       st.integers(min_value=1, max_value=sc.MAX_SESSION_LIFETIME), st.integers(0, 10**6),
       operations, st.none() | versions)
def test_session_is_valid_exactly_for_its_owner_read_key_version_and_lifetime(
        token_seed: bytes, user_id: str, client_id: str, key_version: int, now: int,
        lifetime: int, later: int, operation: sc.Operation, live: int | None) -> None:
    """SC-13, SC-15, SC-16: a session authorizes a request iff it is in time, for its own
    resource, a read, and the live record still has its key_version; every refusal has
    the class of the first rule it breaks."""
    session = sc.Session(digest=sc.session_token_digest(token_seed), user_id=user_id,
                         client_id=client_id, key_version=key_version,
                         expires_at=now + lifetime)
    at = now + later
    try:
        sc.check_session(session, user_id=user_id, client_id=client_id, operation=operation,
                         now=at)
        sc.check_session_key_version(session, live)
        verdict = "accepted"
    except SpecError as exc:
        verdict = exc.failure_class
    if at >= now + lifetime:
        assert verdict == "expired"
    elif operation is not sc.Operation.GET_KEYPAIR:
        assert verdict == "authz"
    elif live != key_version:
        assert verdict == "binding"
    else:
        assert verdict == "accepted"
    try:
        sc.check_session(session, user_id=user_id + "x", client_id=client_id,
                         operation=sc.Operation.GET_KEYPAIR, now=now)
    except SpecError as exc:
        assert exc.failure_class in ("authz", "expired")
    else:  # pragma: no cover
        raise AssertionError("a session opened another user's resource")


@SETTINGS
@given(st.data())
def test_any_change_to_a_session_body_member_is_refused(data: st.DataObject) -> None:
    """SC-19: the client takes only the session of the challenge it answered."""
    challenge = sc.issue_challenge(
        origin="https://keys.example", user_id=data.draw(identifiers),
        client_id=data.draw(identifiers), key_version=data.draw(versions),
        recipient_public=primitives.x25519_public_key(bytes(32)), now=1_700_000_000,
        lifetime=60, random=Drbg(f"prop/session/{data.draw(seeds)}")).challenge
    answered = sc.answer_challenge(challenge, challenge.token, now=1_700_000_000).challenge
    issued = sc.issue_session(answered, now=1_700_000_000, lifetime=900,
                              random=Drbg("prop/session-token"))
    b = challenge.binding
    member = data.draw(st.sampled_from(["user_id", "client_id", "key_version", "scope"]))
    value: Any = (data.draw(versions.filter(lambda v: v != b.key_version))
                  if member == "key_version" else
                  data.draw(identifiers.filter(lambda v: v != issued.wire[member])))
    try:
        _token, session = sc.parse_session(dict(issued.wire, **{member: value}))
        sc.check_session_answer(session, user_id=b.user_id, client_id=b.client_id,
                                key_version=b.key_version)
        verdict = "accepted"
    except SpecError as exc:
        verdict = exc.failure_class
    assert verdict == ("decode" if member == "scope" else "binding")


@SETTINGS
@given(st.binary(min_size=32, max_size=32))
def test_session_token_survives_the_bearer_header(token: bytes) -> None:
    assert sc.session_token_from_bearer(b64url_encode(token)) == token
