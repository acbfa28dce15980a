"""Flow: session-challenge.

A user with no password at hand logs in by proving possession of the X25519 private key
it published through the keypair-publication flow: the server seals a fresh random token
to that key, the client opens it and returns it, and the server exchanges a correct,
timely, first answer for a short-lived session token.

Steps (see the session-challenge chapter):
  1. The client asks for a challenge for (user_id, client_id), without credentials.
  2. The server looks up the published keypair of (user_id, client_id); without one it
     refuses, in one way whatever the reason (SC-1).
  3. It enforces the attempt limit: at most max_attempts challenges per user_id and
     requester within any challenge_lifetime window (SC-2).
  4. It draws challenge_id (16 bytes), token (32 bytes) and ikmE (32 bytes) fresh, and
     fixes expires_at = now + challenge_lifetime (SC-3); the origin is its configured
     origin, never one taken from the request (SC-17).
  5. It seals the token with HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
     AES-256-GCM, to the record's X25519 key, info = labelled_context("session-challenge",
     origin, challenge_id, user_id, client_id, u32be(key_version), u64be(expires_at))
     (SC-4).
  6. The client checks the suite and that the challenge is for the user, application and
     key version it asked for (SC-5) and for the origin it asked (SC-18), that enc is a
     valid point (SC-6), and opens the token with its private key (SC-7).
  7. The client answers with the token.
  8. The server's challenge state machine, issued -> answered | burned | expired: the
     first answer ends the challenge (SC-8); an answer at or after expires_at is refused
     (SC-9); the token is compared in constant time and a wrong one burns the challenge
     (SC-10); every refusal looks the same (SC-11).
  9. On an accepted answer the server issues a session token bound to the key_version the
     challenge was sealed to, with the scope "keypair:read" (SC-12, SC-19).
  10. The session token authorizes one operation, reading the owner's record (SC-15), of
      its (user_id, client_id) only, until it expires (SC-13), and only while the live
      record still has its key_version (SC-16).
  11. The server advertises its lifetimes and attempt limit in its capabilities (SC-14).
  12. The post-quantum hybrid suite: when the record has an ML-KEM-768 key, step 5 seals
      with HPKE base mode and KEM MLKEM768-X25519 (0x647a) to mlkem768 || x25519 (SC-50),
      and a client holding the ML-KEM seed accepts that suite only (SC-51).

Everything here is pure: randomness is a RandomSource, time is an int of Unix seconds
passed as `now`, and the server's challenge is an immutable record that each transition
replaces (in the manner of h11's state machine), so the caller owns storage and clocks.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from keyflows.spec import hpke, primitives, wire
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import (
    b64url_decode,
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
    LengthError,
    ParamsError,
    ReplayError,
    SpecError,
)
from keyflows.spec.key_derivation import check_identifier

FLOW_ID = "session-challenge"

CHALLENGE_ID_LEN = 16
TOKEN_LEN = 32
IKM_E_LEN = hpke.N_SK
SEALED_TOKEN_LEN = TOKEN_LEN + hpke.N_T
SESSION_TOKEN_LEN = 32
MAX_KEY_VERSION = 2**32 - 1
MAX_TIME = 2**64 - 1

MIN_CHALLENGE_LIFETIME = 1
MAX_CHALLENGE_LIFETIME = 300
MIN_SESSION_LIFETIME = 1
MAX_SESSION_LIFETIME = 86400
MIN_ATTEMPTS = 1
MAX_ATTEMPTS = 1000

#: The HPKE suite of profile v1, as it appears on the wire (RFC 9180 registry values).
SUITE: dict[str, int] = {"kem_id": hpke.KEM_ID, "kdf_id": hpke.KDF_ID, "aead_id": hpke.AEAD_ID}
#: The hybrid suite, for a record with an ML-KEM-768 key (SC-50): KEM MLKEM768-X25519.
HYBRID_SUITE: dict[str, int] = {"kem_id": hpke.HYBRID_KEM_ID, "kdf_id": hpke.KDF_ID,
                                "aead_id": hpke.AEAD_ID}
#: The token is sealed with an empty aad: everything it is bound to is in the info.
CHALLENGE_AAD = b""
TOKEN_TYPE = "Bearer"

#: The one scope a session token has (SC-15, SC-19).
SESSION_SCOPE = "keypair:read"

CHALLENGE_MEMBERS = ("origin", "challenge_id", "user_id", "client_id", "key_version",
                     "expires_at", "suite", "enc", "ciphertext")
ANSWER_MEMBERS = ("token",)
SESSION_MEMBERS = ("session_token", "token_type", "scope", "user_id", "client_id",
                   "key_version", "expires_at")

MAX_ORIGIN_LEN = 255
_HOST = r"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: SC-17: the ASCII serialization of an RFC 6454 origin, at most 255 characters: scheme
#: "https" or "http", a lowercase host (DNS name, dotted IPv4 or bracketed IPv6) and a port
#: in 1..65535 only when it is not the scheme's default; no userinfo, path, query or
#: fragment, no trailing slash.
ORIGIN = re.compile(
    rf"(?=.{{1,{MAX_ORIGIN_LEN}}}\Z)"
    rf"(?:https://{_HOST}(?::(?!443\Z){_PORT})?|http://{_HOST}(?::(?!80\Z){_PORT})?)\Z",
    re.ASCII)
DEFAULT_PORTS = {"https": 443, "http": 80}


class Operation(enum.Enum):
    """The authenticated operations a credential may be presented for (SC-15).

    An account-server access token (API-3) allows every one of them; a session token
    allows GET_KEYPAIR only. OTHER stands for every authenticated operation of the other
    flows, which a session token never allows."""

    GET_KEYPAIR = "get-keypair"
    PUT_KEYPAIR = "put-keypair"
    DELETE_KEYPAIR = "delete-keypair"
    OTHER = "other"


#: SC-15: what a session token allows; anything else needs an access token.
SESSION_OPERATIONS: frozenset[Operation] = frozenset({Operation.GET_KEYPAIR})
LIMITS_MEMBERS = ("challenge_lifetime_seconds", "max_attempts", "session_lifetime_seconds")


class ChallengeState(enum.Enum):
    """The server-side life of a challenge. Only ISSUED has successors."""

    ISSUED = "issued"
    ANSWERED = "answered"
    BURNED = "burned"
    EXPIRED = "expired"


#: Every legal transition of the state machine; the terminal states have none.
TRANSITIONS: dict[ChallengeState, frozenset[ChallengeState]] = {
    ChallengeState.ISSUED: frozenset({ChallengeState.ANSWERED, ChallengeState.BURNED,
                                      ChallengeState.EXPIRED}),
    ChallengeState.ANSWERED: frozenset(),
    ChallengeState.BURNED: frozenset(),
    ChallengeState.EXPIRED: frozenset(),
}


@dataclass(frozen=True)
class Limits:
    """What a server advertises (SC-14) and enforces (SC-2, SC-3, SC-12)."""

    challenge_lifetime: int
    max_attempts: int
    session_lifetime: int


@dataclass(frozen=True)
class Binding:
    """What a sealed token is bound to: every field enters the HPKE info (SC-4)."""

    origin: str
    challenge_id: bytes
    user_id: str
    client_id: str
    key_version: int
    expires_at: int


@dataclass(frozen=True)
class ServerChallenge:
    """The server's record of one challenge; transitions return a new record."""

    binding: Binding
    token: bytes
    issued_at: int
    state: ChallengeState = ChallengeState.ISSUED


@dataclass(frozen=True)
class IssuedChallenge:
    """Steps 4 and 5: the stored record, the wire object and every HPKE intermediate."""

    challenge: ServerChallenge
    info: bytes
    sealed: hpke.Sealed | hpke.HybridSealed
    wire: dict[str, Any]


@dataclass(frozen=True)
class ParsedChallenge:
    binding: Binding
    enc: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class OpenedChallenge:
    """Step 6, client side: the parsed challenge, the info it recomputed and the token."""

    parsed: ParsedChallenge
    info: bytes
    opened: hpke.Opened | hpke.HybridOpened

    @property
    def token(self) -> bytes:
        return self.opened.plaintext


@dataclass(frozen=True)
class AnswerResult:
    """Step 8: the challenge after the answer, and the refusal if there was one."""

    challenge: ServerChallenge
    error: SpecError | None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Session:
    """What a server keeps of a session token: its digest, never the token (SC-12)."""

    digest: bytes
    user_id: str
    client_id: str
    key_version: int
    expires_at: int


@dataclass(frozen=True)
class IssuedSession:
    token: bytes
    session: Session
    wire: dict[str, Any]


# --- limits (SC-14, SC-3, SC-12, SC-2) ------------------------------------------------------

def _int_in(value: object, low: int, high: int, what: str, requirement: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ParamsError(f"{what} must be an integer in {low}..{high}", requirement=requirement)
    return value


def check_limits(limits: Limits) -> Limits:
    """Step 11: lifetimes and the attempt limit are within the profile's ranges."""
    _int_in(limits.challenge_lifetime, MIN_CHALLENGE_LIFETIME, MAX_CHALLENGE_LIFETIME,
            "challenge_lifetime_seconds", "SC-3")
    _int_in(limits.max_attempts, MIN_ATTEMPTS, MAX_ATTEMPTS, "max_attempts", "SC-2")
    _int_in(limits.session_lifetime, MIN_SESSION_LIFETIME, MAX_SESSION_LIFETIME,
            "session_lifetime_seconds", "SC-12")
    return limits


def limits_to_wire(limits: Limits) -> dict[str, int]:
    """Step 11 (SC-14): the flow's member of GET /v1/capabilities."""
    check_limits(limits)
    return {"challenge_lifetime_seconds": limits.challenge_lifetime,
            "max_attempts": limits.max_attempts,
            "session_lifetime_seconds": limits.session_lifetime}


def parse_limits(obj: object) -> Limits:
    """Step 11, client side: read the advertised limits (unknown members are ignored, as
    clients must ignore unknown capability members)."""
    if not isinstance(obj, dict):
        raise DecodeError("session-challenge capabilities must be a JSON object",
                          requirement="SC-14")
    missing = [k for k in LIMITS_MEMBERS if k not in obj]
    if missing:
        raise DecodeError(f"session-challenge capabilities lack {', '.join(missing)}",
                          requirement="SC-14")
    return check_limits(Limits(challenge_lifetime=obj["challenge_lifetime_seconds"],
                               max_attempts=obj["max_attempts"],
                               session_lifetime=obj["session_lifetime_seconds"]))


# --- step 3: attempt limit ----------------------------------------------------------------

def attempts_in_window(issued_at: Iterable[int], *, now: int, window: int) -> int:
    """How many of the user's challenges were issued in the window (now - window, now]."""
    return sum(1 for t in issued_at if now - window < t <= now)


def check_attempt_limit(issued_at: Iterable[int], *, now: int, limits: Limits) -> None:
    """Step 3 (SC-2): refuse a new challenge once max_attempts were issued to this user_id
    for this requester in the last challenge_lifetime seconds. A challenge admits exactly
    one answer (SC-8), so this bounds the answers a user_id can be tried with, too."""
    count = attempts_in_window(issued_at, now=now, window=limits.challenge_lifetime)
    if count >= limits.max_attempts:
        raise AuthzError(f"{count} challenges issued in the last {limits.challenge_lifetime} s;"
                         f" the limit is {limits.max_attempts}", requirement="SC-2")


# --- steps 4 and 5: issuing -------------------------------------------------------------------

def check_origin(origin: object, *, requirement: str = "SC-17") -> str:
    """SC-17: `origin` is the ASCII serialization of an http(s) origin (RFC 6454 section
    6.2), at most 255 characters, with the default port left out (the ORIGIN pattern)."""
    if not isinstance(origin, str) or ORIGIN.match(origin) is None:
        raise DecodeError("origin must be scheme://host[:port] with scheme https or http, a "
                          "lowercase host, no default port and no path, at most "
                          f"{MAX_ORIGIN_LEN} characters", requirement=requirement)
    return origin


_URL = re.compile(r"\A(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:[^@/?#]*@)?"
                  r"(?P<host>\[[^\]/?#]*\]|[^:/?#]*)(?::(?P<port>[0-9]*))?(?:[/?#].*)?\Z",
                  re.DOTALL)


def origin_of_url(url: str) -> str:
    """The origin a client asks when it sends its requests to base URL `url` (SC-18):
    scheme and host in lowercase, the port unless it is the scheme's default; userinfo,
    path, query and fragment dropped (RFC 6454 section 4)."""
    match = _URL.match(url)
    if match is None:
        raise DecodeError(f"{url!r} is not an absolute http(s) URL", requirement="SC-18")
    scheme, host = match.group("scheme").lower(), match.group("host").lower()
    port = match.group("port")
    origin = f"{scheme}://{host}"
    if port and int(port) != DEFAULT_PORTS.get(scheme):
        origin += f":{int(port)}"
    return check_origin(origin, requirement="SC-18")


def check_binding_fields(binding: Binding) -> None:
    """The fields of the info have their profile syntax before they are used."""
    check_origin(binding.origin)
    if len(binding.challenge_id) != CHALLENGE_ID_LEN:
        raise LengthError(f"challenge_id must be {CHALLENGE_ID_LEN} bytes", requirement="SC-3")
    check_identifier(binding.user_id, "user_id")
    check_identifier(binding.client_id, "client_id")
    _int_in(binding.key_version, 1, MAX_KEY_VERSION, "key_version", "SC-4")
    _int_in(binding.expires_at, 0, MAX_TIME, "expires_at", "SC-3")


def challenge_info(binding: Binding) -> bytes:
    """Step 5 (SC-4): the HPKE info binding the token to its origin, challenge, owner, key
    and expiry. Its callers checked the fields first: issue_challenge with
    check_binding_fields, the client in parse_challenge."""
    return labelled_context("session-challenge", binding.origin.encode("ascii"),
                            binding.challenge_id,
                            binding.user_id.encode("ascii"), binding.client_id.encode("ascii"),
                            u32be(binding.key_version), u64be(binding.expires_at))


def challenge_to_wire(binding: Binding, enc: bytes, ciphertext: bytes,
                      suite: dict[str, int] = SUITE) -> dict[str, Any]:
    """Step 5: the JSON body of a created challenge."""
    return {
        "origin": binding.origin,
        "challenge_id": b64url_encode(binding.challenge_id),
        "user_id": binding.user_id,
        "client_id": binding.client_id,
        "key_version": binding.key_version,
        "expires_at": binding.expires_at,
        "suite": dict(suite),
        "enc": b64url_encode(enc),
        "ciphertext": b64url_encode(ciphertext),
    }


def issue_challenge(*, origin: str, user_id: str, client_id: str, key_version: int,
                    recipient_public: bytes, now: int, lifetime: int,
                    random: RandomSource,
                    recipient_mlkem768: bytes | None = None) -> IssuedChallenge:
    """Steps 4 and 5 (SC-3, SC-4, SC-17, SC-50). `origin` is the server's configured origin.
    Draws, in this order, challenge_id (16 bytes), token (32 bytes) and ikmE (32 bytes)
    from `random`, so a vector's randomness replays exactly. With `recipient_mlkem768`
    (the record's ML-KEM-768 key) the token is sealed with the hybrid suite (SC-50) to
    mlkem768 || x25519, drawing ML-KEM's m (32) and the X25519 ephemeral scalar (32) in
    place of ikmE."""
    _int_in(lifetime, MIN_CHALLENGE_LIFETIME, MAX_CHALLENGE_LIFETIME,
            "challenge_lifetime_seconds", "SC-3")
    _int_in(now, 0, MAX_TIME - lifetime, "now", "SC-3")
    challenge_id = random(CHALLENGE_ID_LEN)
    token = random(TOKEN_LEN)
    binding = Binding(origin=origin, challenge_id=challenge_id, user_id=user_id,
                      client_id=client_id, key_version=key_version, expires_at=now + lifetime)
    check_binding_fields(binding)
    info = challenge_info(binding)
    if recipient_mlkem768 is not None:
        hybrid = hpke.seal_hybrid(recipient_mlkem768 + recipient_public, info, CHALLENGE_AAD,
                                  token, random=random, requirement="SC-50")
        wire = challenge_to_wire(binding, hybrid.encapsulation.enc, hybrid.ciphertext,
                                 HYBRID_SUITE)
        return IssuedChallenge(
            challenge=ServerChallenge(binding=binding, token=token, issued_at=now),
            info=info, sealed=hybrid, wire=wire)
    ikm_e = random(IKM_E_LEN)
    sealed = hpke.seal_base(recipient_public, info, CHALLENGE_AAD, token, ikm_e=ikm_e,
                            requirement="SC-4")
    return IssuedChallenge(
        challenge=ServerChallenge(binding=binding, token=token, issued_at=now),
        info=info, sealed=sealed, wire=challenge_to_wire(binding, sealed.enc, sealed.ciphertext))


# --- step 6: the client checks and opens ---------------------------------------------------------

def _integer(obj: dict[str, Any], key: str, where: str, high: int, requirement: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise DecodeError(f"{where}.{key} must be an integer in 0..{high}",
                          requirement=requirement)
    return value


def check_suite(obj: object, *, hybrid: bool = False) -> None:
    """Step 6 (SC-5, SC-51): exactly the suite the client's keys call for -- the v1 suite,
    or the hybrid suite for a client holding an ML-KEM-768 seed, which refuses the v1
    suite as a downgrade; anything else is refused before any DH."""
    wanted = HYBRID_SUITE if hybrid else SUITE
    suite = wire.members(obj, tuple(wanted), "suite")
    for key, expected in wanted.items():
        value = suite[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise DecodeError(f"suite.{key} must be an integer", requirement="API-6")
        if value != expected:
            raise ParamsError(f"suite.{key} must be {expected}, got {value}",
                              requirement="SC-51" if hybrid else "SC-5")


def parse_challenge(obj: object, *, hybrid: bool = False) -> ParsedChallenge:
    """Step 6: decode a challenge body (decode, length, params); `hybrid` for a client
    holding an ML-KEM-768 seed (SC-51: the hybrid suite, a 1120-byte enc)."""
    members = wire.members(obj, CHALLENGE_MEMBERS, "challenge")
    origin = check_origin(members["origin"], requirement="SC-18")
    challenge_id = b64url_decode_exact(wire.string(members, "challenge_id", "challenge"),
                                       CHALLENGE_ID_LEN, field="challenge_id",
                                       requirement="API-1")
    user_id = wire.string(members, "user_id", "challenge")
    client_id = wire.string(members, "client_id", "challenge")
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    key_version = _integer(members, "key_version", "challenge", MAX_KEY_VERSION, "SC-4")
    if key_version == 0:
        raise DecodeError("challenge.key_version must be at least 1", requirement="SC-4")
    expires_at = _integer(members, "expires_at", "challenge", MAX_TIME, "SC-3")
    check_suite(members["suite"], hybrid=hybrid)
    enc = b64url_decode_exact(wire.string(members, "enc", "challenge"),
                              hpke.HYBRID_N_ENC if hybrid else hpke.N_ENC, field="enc",
                              requirement="SC-51" if hybrid else "SC-6")
    ciphertext = b64url_decode_exact(wire.string(members, "ciphertext", "challenge"),
                                     SEALED_TOKEN_LEN, field="ciphertext", requirement="API-1")
    binding = Binding(origin=origin, challenge_id=challenge_id, user_id=user_id,
                      client_id=client_id, key_version=key_version, expires_at=expires_at)
    return ParsedChallenge(binding=binding, enc=enc, ciphertext=ciphertext)


def check_challenge_binding(parsed: ParsedChallenge, *, origin: str, user_id: str,
                            client_id: str, key_version: int) -> None:
    """Step 6 (SC-18, SC-5): the challenge is for the origin the client sent its request
    to (a challenge relayed from another server names that server), then for the user,
    application and key version the client asked about and holds the private key of."""
    binding = parsed.binding
    if binding.origin != origin:
        raise BindingError(f"challenge is for origin {binding.origin!r}, the client asked "
                           f"{origin!r} (a relayed challenge)", requirement="SC-18")
    if binding.user_id != user_id or binding.client_id != client_id:
        raise BindingError("challenge is for another user or application", requirement="SC-5")
    if binding.key_version != key_version:
        raise BindingError(f"challenge is for key_version {binding.key_version}, "
                           f"the client holds {key_version}", requirement="SC-5")


def open_challenge(obj: object, *, origin: str, user_id: str, client_id: str,
                   key_version: int, x25519_private: bytes,
                   mlkem_seed: bytes | None = None) -> OpenedChallenge:
    """Step 6, client side: parse (SC-5), check binding (SC-18, SC-5), check enc (SC-6),
    then OpenBase with the info recomputed from the challenge's own fields (SC-7), which
    the binding check made equal to what the client expects. `origin` is the origin the
    client sent its request to (origin_of_url of its base URL). A client whose record has
    an ML-KEM-768 key passes its `mlkem_seed` and accepts the hybrid suite only (SC-51)."""
    check_origin(origin, requirement="SC-18")
    hybrid = mlkem_seed is not None
    parsed = parse_challenge(obj, hybrid=hybrid)
    check_challenge_binding(parsed, origin=origin, user_id=user_id, client_id=client_id,
                            key_version=key_version)
    # The X25519 part of enc (all of it, or ct_T after the ML-KEM ciphertext).
    primitives.check_x25519_public_key(parsed.enc[-primitives.X25519_KEY_LEN:],
                                       requirement="SC-6")
    info = challenge_info(parsed.binding)
    opened: hpke.Opened | hpke.HybridOpened
    if mlkem_seed is not None:
        opened = hpke.open_hybrid(parsed.enc, hpke.HybridPrivateKey(mlkem_seed=mlkem_seed,
                                                                    x25519=x25519_private),
                                  info, CHALLENGE_AAD, parsed.ciphertext, requirement="SC-51")
    else:
        opened = hpke.open_base(parsed.enc, x25519_private, info, CHALLENGE_AAD,
                                parsed.ciphertext, requirement="SC-7")
    return OpenedChallenge(parsed=parsed, info=info, opened=opened)


# --- step 7: the answer ------------------------------------------------------------------------

def answer_to_wire(token: bytes) -> dict[str, str]:
    """Step 7: the JSON body the client answers with."""
    return {"token": b64url_encode(token)}


def parse_answer(obj: object) -> bytes:
    """Step 8, server side, before the state machine: the body is {"token": b64url(32)}.
    A malformed body is a decode/length error and leaves the challenge untouched."""
    members = wire.members(obj, ANSWER_MEMBERS, "answer")
    return b64url_decode_exact(wire.string(members, "token", "answer"), TOKEN_LEN, field="token",
                               requirement="API-1")


# --- step 8: the challenge state machine ---------------------------------------------------------

def is_expired(challenge: ServerChallenge, *, now: int) -> bool:
    """A challenge is answerable while now < expires_at, and never from expires_at on."""
    return now >= challenge.binding.expires_at


def _transition(challenge: ServerChallenge, state: ChallengeState) -> ServerChallenge:
    if state not in TRANSITIONS[challenge.state]:
        raise ValueError(f"no transition {challenge.state.value} -> {state.value}")
    return replace(challenge, state=state)


def answer_challenge(challenge: ServerChallenge, token: bytes, *, now: int) -> AnswerResult:
    """Step 8: one answer, one transition, in this order of checks:

    - not ISSUED (answered, burned or expired): refused, unchanged (SC-8, replay);
    - now >= expires_at: ISSUED -> EXPIRED, refused (SC-9, expired);
    - token differs (constant-time compare): ISSUED -> BURNED, refused (SC-10, authz);
    - otherwise ISSUED -> ANSWERED, accepted.
    """
    if challenge.state is not ChallengeState.ISSUED:
        return AnswerResult(challenge, ReplayError(
            f"challenge is {challenge.state.value}; a challenge takes one answer",
            requirement="SC-8"))
    if is_expired(challenge, now=now):
        return AnswerResult(_transition(challenge, ChallengeState.EXPIRED), ExpiredError(
            f"challenge expired at {challenge.binding.expires_at}, answer at {now}",
            requirement="SC-9"))
    if not primitives.constant_time_equal(token, challenge.token):
        return AnswerResult(_transition(challenge, ChallengeState.BURNED), AuthzError(
            "token does not match; the challenge is burned", requirement="SC-10"))
    return AnswerResult(_transition(challenge, ChallengeState.ANSWERED), None)


def expire_challenge(challenge: ServerChallenge, *, now: int) -> ServerChallenge:
    """Step 8: the sweep a server may run: an ISSUED challenge past its expiry becomes
    EXPIRED; any other challenge is returned unchanged."""
    if challenge.state is ChallengeState.ISSUED and is_expired(challenge, now=now):
        return _transition(challenge, ChallengeState.EXPIRED)
    return challenge


def challenge_token_digest(token: bytes) -> bytes:
    """Steps 4 and 8: what a server may keep of a challenge token instead of the token:
    SHA-256(labelled_context("challenge-token", token)). answer_challenge compares digests
    as it compares tokens, so a reader of the server's storage cannot answer for the user."""
    return primitives.sha256(labelled_context("challenge-token", token))


# --- step 9: the session token --------------------------------------------------------------------

def session_token_digest(token: bytes) -> bytes:
    """Step 9 (SC-12): what the server stores and looks tokens up by:
    SHA-256(labelled_context("session-token", token))."""
    return primitives.sha256(labelled_context("session-token", token))


def session_to_wire(token: bytes, session: Session) -> dict[str, Any]:
    """Step 9 (SC-19): the JSON body of an accepted answer."""
    return {"session_token": b64url_encode(token), "token_type": TOKEN_TYPE,
            "scope": SESSION_SCOPE, "user_id": session.user_id,
            "client_id": session.client_id, "key_version": session.key_version,
            "expires_at": session.expires_at}


def issue_session(challenge: ServerChallenge, *, now: int, lifetime: int,
                  random: RandomSource) -> IssuedSession:
    """Step 9 (SC-12, SC-19): 32 random bytes, valid until now + session_lifetime, for the
    user, application and key_version of an ANSWERED challenge only."""
    if challenge.state is not ChallengeState.ANSWERED:
        raise ValueError("a session is issued for an answered challenge only")
    _int_in(lifetime, MIN_SESSION_LIFETIME, MAX_SESSION_LIFETIME, "session_lifetime_seconds",
            "SC-12")
    _int_in(now, 0, MAX_TIME - lifetime, "now", "SC-12")
    token = random(SESSION_TOKEN_LEN)
    session = Session(digest=session_token_digest(token), user_id=challenge.binding.user_id,
                      client_id=challenge.binding.client_id,
                      key_version=challenge.binding.key_version, expires_at=now + lifetime)
    return IssuedSession(token=token, session=session, wire=session_to_wire(token, session))


def parse_session(obj: object) -> tuple[bytes, Session]:
    """Step 9, client side: decode the session body; returns the token and its record."""
    members = wire.members(obj, SESSION_MEMBERS, "session")
    token = b64url_decode_exact(wire.string(members, "session_token", "session"), SESSION_TOKEN_LEN,
                                field="session_token", requirement="API-1")
    if members["token_type"] != TOKEN_TYPE:
        raise DecodeError("session.token_type must be Bearer", requirement="SC-12")
    if members["scope"] != SESSION_SCOPE:
        raise DecodeError(f"session.scope must be {SESSION_SCOPE!r}", requirement="SC-19")
    user_id = wire.string(members, "user_id", "session")
    client_id = wire.string(members, "client_id", "session")
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    key_version = _integer(members, "key_version", "session", MAX_KEY_VERSION, "SC-19")
    if key_version == 0:
        raise DecodeError("session.key_version must be at least 1", requirement="SC-19")
    expires_at = _integer(members, "expires_at", "session", MAX_TIME, "SC-12")
    return token, Session(digest=session_token_digest(token), user_id=user_id,
                          client_id=client_id, key_version=key_version,
                          expires_at=expires_at)


def check_session_answer(session: Session, *, user_id: str, client_id: str,
                         key_version: int) -> None:
    """Step 9, client side (SC-19): the session is for the user, application and key
    version whose challenge the client answered."""
    if (session.user_id, session.client_id) != (user_id, client_id):
        raise BindingError("session is for another user or application", requirement="SC-19")
    if session.key_version != key_version:
        raise BindingError(f"session is for key_version {session.key_version}, the answered "
                           f"challenge for {key_version}", requirement="SC-19")


# --- step 10: the session token as a credential -----------------------------------------------

def session_token_from_bearer(credential: str) -> bytes | None:
    """Step 10: the 32 bytes to look a session up by, if the bearer credential is shaped
    like a session token (43 characters of canonical base64url), else None. A server that
    finds no session for the credential treats it as an access token (API-3): account
    server tokens are opaque strings and may have the same shape."""
    if len(credential) != 43:
        return None
    try:
        return b64url_decode(credential)
    except DecodeError:
        return None


def check_session(session: Session, *, user_id: str, client_id: str, operation: Operation,
                  now: int) -> None:
    """Step 10 (SC-13, SC-15): a session authorizes the operations of SESSION_OPERATIONS on
    the (user_id, client_id) it was issued for, while now < expires_at. In this order:
    expiry (expired), resource (authz), operation (authz). The server answers every
    refusal with the uniform 401 of API-4. The key version is checked against the record
    the operation reads (check_session_key_version, SC-16)."""
    if now >= session.expires_at:
        raise ExpiredError(f"session expired at {session.expires_at}", requirement="SC-13")
    if session.user_id != user_id or session.client_id != client_id:
        raise AuthzError("session is for another user or application", requirement="SC-13")
    if operation not in SESSION_OPERATIONS:
        raise AuthzError(f"a session token does not allow {operation.value}; it allows "
                         f"{SESSION_SCOPE} only", requirement="SC-15")


def check_session_key_version(session: Session, live_key_version: int | None) -> None:
    """Step 10 (SC-16): a session lives only as long as the record whose key answered its
    challenge: once the live record has another key_version (a rotation or a reset) or
    there is no live record (None: a deletion), the session is over (failure class
    binding)."""
    if live_key_version != session.key_version:
        raise BindingError(f"the session was won with key_version {session.key_version}; "
                           f"the live record has {live_key_version or 'been deleted'}",
                           requirement="SC-16")
