"""Vectors of the session-challenge flow, profile v1.

Each base case (a user, an application, a key version, a clock and a challenge lifetime)
yields one case per operation:

  issue-challenge      the server's steps 4 and 5 with every HPKE intermediate: the ikmE
                       and the ephemeral key it derives, enc, dh, kem_context,
                       shared_secret, key_schedule_context, secret, key, base_nonce and the
                       ciphertext of the token
  open-challenge       the client's step 6 (and the answer it makes, step 7)
  answer-challenge     the server's state machine (step 8) over one or more answers, each
                       at a given `now`
  issue-session        step 9: the session token and the digest the server stores
  accept-session       step 9, client side: the session is for the answered challenge
  check-session        step 10: where, for what and until when the session token is
                       accepted
  check-attempt-limit  step 3

Negatives are mutation families over every base case, each declaring the failure class
and the step that must reject:

  open-challenge       a wrong private key; bit flips in enc (canonical result: aead; top
                       bit: point) and in each region of the ciphertext (body, tag); a
                       relabelled origin, challenge id, user, application, key version or
                       expiry that the client expects (the info mismatch: aead) or does not
                       expect (binding); a challenge relayed from another origin, as is
                       (binding) or relabelled (aead); a token spliced from another
                       challenge; truncated and extended fields; non-canonical base64url;
                       low-order and non-canonical enc; another suite; unknown, missing and
                       ill-typed members; origins that are not RFC 6454 serializations
  answer-challenge     a replayed answer; a wrong token, then the right one; an answer at
                       and after expires_at; a token of another challenge; malformed bodies
  accept-session       a session for another key version, user or application; another
                       scope
  check-session        expired; another user's or application's resource; a write (PUT,
                       DELETE) or another flow's operation; a record rotated, reset or
                       deleted since the challenge
  check-attempt-limit  the limit reached
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import hpke, mlkem, primitives
from keyflows.spec import session_challenge as sc
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    dispatch,
    expect_rejection,
    hx,
)

FLOW = sc.FLOW_ID

OP_ISSUE = "issue-challenge"
OP_OPEN = "open-challenge"
OP_ANSWER = "answer-challenge"
OP_SESSION = "issue-session"
OP_ACCEPT_SESSION = "accept-session"
OP_CHECK_SESSION = "check-session"
OP_ATTEMPTS = "check-attempt-limit"
OP_ISSUE_HYBRID = "issue-challenge-hybrid"
OP_OPEN_HYBRID = "open-challenge-hybrid"

# Steps of the session-challenge chapter where a rejection happens.
STEP_LIMIT = "3"
STEP_CLIENT = "6"
STEP_JUDGE = "8"
STEP_ISSUE_SESSION = "9"
STEP_SESSION = "10"

OTHER_USER = "mallory"
OTHER_CLIENT = "other.example"
RELAY_ORIGIN = "https://relay.example"
"""The origin of a malicious server that relays another server's challenges."""

NOTES: dict[str, Flag] = {
    "Valid": Flag("A well-formed input the flow accepts.",
                  "Accept; recompute every intermediate and output."),
    "Hybrid": Flag("The record has an ML-KEM-768 key: the challenge is sealed with HPKE base "
                   "mode and KEM MLKEM768-X25519 (0x647a) to mlkem768 || x25519 (SC-50).",
                   "Seal and open with the hybrid KEM; a client holding the ML-KEM seed "
                   "accepts that suite only (SC-51)."),
    "Downgrade": Flag("A challenge in the X25519 suite for a client whose record has an "
                      "ML-KEM-768 key, or a hybrid one for a client without.",
                      "Reject (failure class params) before any KEM operation."),
    "WrongKey": Flag("The challenge is opened with an X25519 private key other than the one "
                     "it was sealed to.", "Reject at the AEAD (failure class aead)."),
    "BitFlip": Flag("One bit of enc or of the ciphertext (body or tag) is flipped; the "
                    "base64url stays canonical.",
                    "Reject at the AEAD, or at the point check when the flip makes enc "
                    "non-canonical."),
    "InfoMismatch": Flag("A field the token is bound to (origin, challenge_id, user_id, "
                         "client_id, key_version, expires_at) is changed and the client "
                         "expects the changed value, or the sealed token comes from another "
                         "challenge.",
                         "Reject at the AEAD: the info recomputed from the challenge differs "
                         "from the one the token was sealed under (SC-7)."),
    "ForeignContext": Flag("The challenge is intact but names another user, application or "
                           "key version than the client asked about.",
                           "Reject before any cryptography (failure class binding, SC-5)."),
    "LowOrderPoint": Flag("enc is a point of low order (DH with it gives a predictable "
                          "secret).", "Reject before the DH (failure class point, SC-6)."),
    "NonCanonicalPoint": Flag("enc has its top bit set or u >= 2^255 - 19.",
                              "Reject before the DH (failure class point, SC-6)."),
    "Truncated": Flag("A base64url field decodes to one byte fewer than required.",
                      "Reject (failure class length)."),
    "TrailingBytes": Flag("A base64url field decodes to one byte more than required.",
                          "Reject (failure class length)."),
    "NonCanonicalBase64": Flag("A base64url field is padded, uses the standard alphabet or "
                               "has non-zero unused trailing bits.",
                               "Reject (failure class decode, API-1)."),
    "UnknownMember": Flag("An object carries a member the wire format does not define.",
                          "Reject (failure class decode)."),
    "MissingMember": Flag("A required member is absent.", "Reject (failure class decode)."),
    "BadValue": Flag("A member has the wrong JSON type or a value outside its range.",
                     "Reject (failure class decode)."),
    "WrongSuite": Flag("The challenge names another HPKE KEM, KDF or AEAD.",
                       "Reject before any cryptography (failure class params, SC-5)."),
    "Replay": Flag("An answer to a challenge that already took one (answered or burned) or "
                   "expired.", "Refuse (failure class replay, SC-8); the state is unchanged."),
    "WrongToken": Flag("The answered token differs from the issued one.",
                       "Refuse and burn the challenge (failure class authz, SC-10)."),
    "Expired": Flag("The answer (or the session) is presented at or after expires_at; time "
                    "is the input `now`.", "Refuse (failure class expired)."),
    "MalformedAnswer": Flag("The answer body is not {\"token\": base64url(32 bytes)}.",
                            "Refuse before the state machine runs (failure class decode or "
                            "length); the challenge is unchanged."),
    "Sequence": Flag("Several answers to one challenge, in order; the case's result is that "
                     "of the last one.", "Replay the answers in order through the state "
                     "machine; the intermediates give the state and result after each."),
    "ForeignResource": Flag("A session token is presented for another user's or "
                            "application's resource.", "Refuse (failure class authz, SC-13)."),
    "RelayedChallenge": Flag("A malicious server relays a genuine challenge of another "
                             "server to a client that asked it: the challenge names the "
                             "other server's origin, or the relay rewrote the origin.",
                             "Reject: the origin is not the one the client asked (failure "
                             "class binding, SC-18), or the info does not match (aead)."),
    "BadOrigin": Flag("The origin is not an RFC 6454 ASCII serialization (a path, a "
                      "trailing slash, an uppercase host, the default port, userinfo).",
                      "Reject (failure class decode, SC-18)."),
    "SessionWrite": Flag("A live session token is presented for an operation other than "
                         "reading the owner's record (PUT, DELETE, another flow's).",
                         "Refuse (failure class authz, SC-15)."),
    "StaleSession": Flag("The record the session would read has another key_version than "
                         "the session was won with (rotated or reset since), or is deleted.",
                         "Refuse (failure class binding, SC-16)."),
    "ForeignSession": Flag("The session body names another user, application or key "
                           "version than the challenge the client answered, or another "
                           "scope.", "Reject (failure class binding or decode, SC-19)."),
    "LimitReached": Flag("max_attempts challenges were issued to the user in the last "
                         "challenge_lifetime_seconds.",
                         "Refuse a new challenge (failure class authz, SC-2)."),
}


# --- base cases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    name: str
    origin: str
    user_id: str
    client_id: str
    key_version: int
    now: int
    lifetime: int
    session_lifetime: int
    comment: str


BASES = (
    Base("alice-0", "https://keys.example", "alice", "notes.example", 1, 1_700_000_000, 60,
         900, "a first challenge for alice's notes key, one-minute lifetime"),
    Base("max-fields", "https://" + "k" * 63 + "." + "e" * 63 + "." + "y" * 63 + "."
         + "s" * 49 + ":65535", "Az09._~-" * 8, "5901bd09376fe0e9", 2**32 - 1, 2**40, 300,
         86400, "a 255-character origin, a 64-character user_id, the largest key_version "
         "and challenge lifetime"),
    Base("carol-short", "http://[2001:db8::1]:8080", "carol", "files.example", 7,
         1_700_003_600, 1, 1, "an IPv6 origin on http, the shortest lifetimes the profile "
         "allows"),
)


@dataclass(frozen=True)
class Material:
    """Everything a base case makes, each random byte from Drbg('session-challenge/v1/<name>')."""

    base: Base
    x25519_private: bytes
    x25519_public: bytes
    issued: sc.IssuedChallenge
    session_token: bytes
    session: sc.IssuedSession

    @property
    def wire(self) -> dict[str, Any]:
        return copy.deepcopy(self.issued.wire)

    @property
    def challenge(self) -> sc.ServerChallenge:
        return self.issued.challenge

    @property
    def answered(self) -> sc.ServerChallenge:
        return sc.answer_challenge(self.challenge, self.challenge.token, now=self.base.now
                                   ).challenge

    def drbg(self, purpose: str) -> Drbg:
        return Drbg(f"{FLOW}/v1/{self.base.name}/{purpose}")


@cache
def material(base: Base) -> Material:
    drbg = Drbg(f"{FLOW}/v1/{base.name}")
    private = drbg(32)  # the user's X25519 private key, as keypair publication made it
    public = primitives.x25519_public_key(private)
    issued = sc.issue_challenge(origin=base.origin, user_id=base.user_id,
                                client_id=base.client_id,
                                key_version=base.key_version, recipient_public=public,
                                now=base.now, lifetime=base.lifetime, random=drbg)
    answered = sc.answer_challenge(issued.challenge, issued.challenge.token, now=base.now)
    session = sc.issue_session(answered.challenge, now=base.now, lifetime=base.session_lifetime,
                               random=drbg)
    return Material(base=base, x25519_private=private, x25519_public=public, issued=issued,
                    session_token=session.token, session=session)


def replay_source(chunks: Sequence[bytes]) -> Callable[[int], bytes]:
    """A RandomSource that hands out recorded bytes, in order, and nothing else."""
    pending = list(chunks)

    def source(n: int) -> bytes:
        if not pending or len(pending[0]) != n:
            raise ValueError(f"the case records no {n} random bytes at this point")
        return pending.pop(0)

    return source


# --- plain forms --------------------------------------------------------------------------------

def server_record(challenge: sc.ServerChallenge) -> dict[str, Any]:
    """The server's stored challenge as a case records it."""
    b = challenge.binding
    return {"origin": b.origin, "challenge_id": b.challenge_id, "user_id": b.user_id,
            "client_id": b.client_id,
            "key_version": b.key_version, "issued_at": challenge.issued_at,
            "expires_at": b.expires_at, "token": challenge.token, "state": challenge.state.value}


def parse_server_record(plain: Mapping[str, Any]) -> sc.ServerChallenge:
    binding = sc.Binding(origin=plain["origin"],
                         challenge_id=hx(plain["challenge_id"], "challenge_id"),
                         user_id=plain["user_id"], client_id=plain["client_id"],
                         key_version=plain["key_version"], expires_at=plain["expires_at"])
    return sc.ServerChallenge(binding=binding, token=hx(plain["token"], "token"),
                              issued_at=plain["issued_at"],
                              state=sc.ChallengeState(plain["state"]))


def stored_session(session: sc.Session) -> dict[str, Any]:
    return {"digest": session.digest, "user_id": session.user_id,
            "client_id": session.client_id, "key_version": session.key_version,
            "expires_at": session.expires_at}


def parse_stored_session(plain: Mapping[str, Any]) -> sc.Session:
    return sc.Session(digest=hx(plain["digest"], "digest"), user_id=plain["user_id"],
                      client_id=plain["client_id"], key_version=plain["key_version"],
                      expires_at=plain["expires_at"])


def hpke_sender(sealed: hpke.Sealed | hpke.HybridSealed) -> dict[str, Any]:
    assert isinstance(sealed, hpke.Sealed)  # the X25519 suite
    enc, ks = sealed.encapsulation, sealed.schedule
    return {"ephemeral_private": enc.ephemeral_private, "enc": enc.enc, "dh": enc.dh,
            "kem_context": enc.kem_context, "shared_secret": enc.shared_secret,
            "psk_id_hash": ks.psk_id_hash, "info_hash": ks.info_hash,
            "key_schedule_context": ks.key_schedule_context, "secret": ks.secret,
            "key": ks.key, "base_nonce": ks.base_nonce, "ciphertext": sealed.ciphertext}


def hpke_receiver(opened: hpke.Opened | hpke.HybridOpened) -> dict[str, Any]:
    assert isinstance(opened, hpke.Opened)  # the X25519 suite
    dec, ks = opened.decapsulation, opened.schedule
    return {"dh": dec.dh, "kem_context": dec.kem_context, "shared_secret": dec.shared_secret,
            "key_schedule_context": ks.key_schedule_context, "secret": ks.secret,
            "key": ks.key, "base_nonce": ks.base_nonce}


# --- issue ----------------------------------------------------------------------------------------

def _issue_case(m: Material) -> Case:
    b, issued = m.base, m.issued
    assert isinstance(issued.sealed, hpke.Sealed)
    return Case(
        id=f"sc-v1-{b.name}/issue", comment=f"the server issues {b.comment}",
        flags=("Valid",), requirements=("SC-3", "SC-4"), operation=OP_ISSUE,
        inputs={"origin": b.origin, "user_id": b.user_id, "client_id": b.client_id,
                "key_version": b.key_version, "recipient_public": m.x25519_public,
                "now": b.now,
                "challenge_lifetime": b.lifetime,
                "random": {"challenge_id": issued.challenge.binding.challenge_id,
                           "token": issued.challenge.token,
                           "ikm_e": issued.sealed.encapsulation.ikm_e}},
        intermediates={"info": issued.info, **hpke_sender(issued.sealed)},
        outputs={"challenge": m.wire, "stored": server_record(issued.challenge)})


# --- open -----------------------------------------------------------------------------------------

def _open_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
               requirements: tuple[str, ...], failure: Failure | None, wire: Any, *,
               expect: Mapping[str, Any] | None = None, private: bytes | None = None) -> Case:
    b = m.base
    inputs = {"challenge": wire, "origin": b.origin, "user_id": b.user_id,
              "client_id": b.client_id, "key_version": b.key_version,
              "x25519_private": private if private is not None else m.x25519_private}
    inputs.update(expect or {})
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        opened = sc.open_challenge(wire, origin=inputs["origin"], user_id=inputs["user_id"],
                                   client_id=inputs["client_id"],
                                   key_version=inputs["key_version"],
                                   x25519_private=inputs["x25519_private"])
        intermediates = {"info": opened.info, **hpke_receiver(opened.opened)}
        outputs = {"token": opened.token, "answer": sc.answer_to_wire(opened.token)}
    return Case(id=f"sc-v1-{b.name}/open" + (f"/{slug}" if slug else ""), comment=comment,
                flags=flags, requirements=requirements, operation=OP_OPEN, inputs=inputs,
                intermediates=intermediates, outputs=outputs, failure=failure)


AEAD = Failure("aead", STEP_CLIENT)
POINT = Failure("point", STEP_CLIENT)
LENGTH = Failure("length", STEP_CLIENT)
DECODE = Failure("decode", STEP_CLIENT)
BINDING = Failure("binding", STEP_CLIENT)
PARAMS = Failure("params", STEP_CLIENT)


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _with(wire: dict[str, Any], **members: Any) -> dict[str, Any]:
    out = copy.deepcopy(wire)
    out.update(members)
    return out


def _without(wire: dict[str, Any], member: str) -> dict[str, Any]:
    out = copy.deepcopy(wire)
    del out[member]
    return out


def _other_version(version: int) -> int:
    return version + 1 if version < sc.MAX_KEY_VERSION else version - 1


def _u(value: int) -> bytes:
    return value.to_bytes(32, "little")


def _open_negatives(m: Material) -> list[Case]:
    b, wire, issued = m.base, m.wire, m.issued
    enc, ct = issued.sealed.enc, issued.sealed.ciphertext
    cid = issued.challenge.binding.challenge_id
    cases = [
        _open_case(m, "wrong-key", "opened with another X25519 private key", ("WrongKey",),
                   ("SC-7",), AEAD, wire, private=m.drbg("wrong-key")(32)),
        _open_case(m, "enc-bitflip", "bit 0 of enc's first byte flipped (still canonical)",
                   ("BitFlip",), ("SC-6", "SC-7"), AEAD,
                   _with(wire, enc=b64url_encode(_flip(enc, 0)))),
        _open_case(m, "enc-top-bit", "the top bit of enc set: a non-canonical encoding",
                   ("BitFlip", "NonCanonicalPoint"), ("SC-6",), POINT,
                   _with(wire, enc=b64url_encode(_flip(enc, 31, 7)))),
        _open_case(m, "ciphertext-first-byte", "bit 0 of the ciphertext's first byte flipped",
                   ("BitFlip",), ("SC-7",), AEAD,
                   _with(wire, ciphertext=b64url_encode(_flip(ct, 0)))),
        _open_case(m, "ciphertext-last-token-byte",
                   "bit 7 of the last byte of the encrypted token flipped",
                   ("BitFlip",), ("SC-7",), AEAD,
                   _with(wire, ciphertext=b64url_encode(_flip(ct, sc.TOKEN_LEN - 1, 7)))),
        _open_case(m, "tag-first-byte", "bit 0 of the GCM tag's first byte flipped",
                   ("BitFlip",), ("SC-7",), AEAD,
                   _with(wire, ciphertext=b64url_encode(_flip(ct, sc.TOKEN_LEN)))),
        _open_case(m, "tag-last-byte", "bit 3 of the GCM tag's last byte flipped",
                   ("BitFlip",), ("SC-7",), AEAD,
                   _with(wire, ciphertext=b64url_encode(_flip(ct, len(ct) - 1, 3)))),
        _open_case(m, "info/origin", "origin relabelled and expected by the client",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, origin=RELAY_ORIGIN), expect={"origin": RELAY_ORIGIN}),
        _open_case(m, "relayed", "a genuine challenge of this server relayed by "
                   f"{RELAY_ORIGIN} to a client that asked {RELAY_ORIGIN}",
                   ("RelayedChallenge",), ("SC-18",), BINDING, wire,
                   expect={"origin": RELAY_ORIGIN}),
        _open_case(m, "relayed-relabelled", "the relayed challenge with its origin rewritten "
                   f"to {RELAY_ORIGIN}: the token was sealed under the other origin",
                   ("RelayedChallenge", "InfoMismatch"), ("SC-18", "SC-4", "SC-7"), AEAD,
                   _with(wire, origin=RELAY_ORIGIN), expect={"origin": RELAY_ORIGIN}),
        _open_case(m, "info/user", "user_id relabelled and expected by the client",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, user_id=OTHER_USER), expect={"user_id": OTHER_USER}),
        _open_case(m, "info/client", "client_id relabelled and expected by the client",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, client_id=OTHER_CLIENT), expect={"client_id": OTHER_CLIENT}),
        _open_case(m, "info/key-version", "key_version relabelled and expected by the client",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, key_version=_other_version(b.key_version)),
                   expect={"key_version": _other_version(b.key_version)}),
        _open_case(m, "info/expires-at", "expires_at extended by one second",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, expires_at=wire["expires_at"] + 1)),
        _open_case(m, "info/challenge-id", "another challenge_id (one bit flipped)",
                   ("InfoMismatch",), ("SC-4", "SC-7"), AEAD,
                   _with(wire, challenge_id=b64url_encode(_flip(cid, 0)))),
        _open_case(m, "foreign/user", "a challenge for another user_id than the client asked",
                   ("ForeignContext",), ("SC-5",), BINDING, _with(wire, user_id=OTHER_USER)),
        _open_case(m, "foreign/client", "a challenge for another application",
                   ("ForeignContext",), ("SC-5",), BINDING,
                   _with(wire, client_id=OTHER_CLIENT)),
        _open_case(m, "foreign/key-version", "a challenge for another key version",
                   ("ForeignContext",), ("SC-5",), BINDING,
                   _with(wire, key_version=_other_version(b.key_version))),
    ]
    cases += _spliced(m)
    for u, slug in ((0, "zero"), (1, "one"), (primitives.X25519_P - 1, "p-minus-1"),
                    *((u, f"order-8-{i}") for i, u in enumerate(sorted(
                        primitives.X25519_LOW_ORDER_U - {0, 1, primitives.X25519_P - 1})))):
        cases.append(_open_case(m, f"enc-low-order/{slug}", f"enc is the low-order u = {slug}",
                                ("LowOrderPoint",), ("SC-6",), POINT,
                                _with(wire, enc=b64url_encode(_u(u)))))
    cases.append(_open_case(m, "enc-non-canonical/p-plus-9",
                            "enc is u = p + 9, the non-canonical form of the base point",
                            ("NonCanonicalPoint",), ("SC-6",), POINT,
                            _with(wire, enc=b64url_encode(_u(primitives.X25519_P + 9)))))
    cases += _open_lengths(m) + _open_encodings(m) + _open_structure(m)
    return cases


def _spliced(m: Material) -> list[Case]:
    """The enc and ciphertext of another base case's challenge, pasted into this one."""
    others = [x for x in BASES if x != m.base]
    other = material(others[0])
    if other.x25519_public == m.x25519_public:  # pragma: no cover - distinct keys per base
        raise AssertionError("bases share a key")
    # Re-seal the other challenge's token to THIS user's key under the OTHER info: a token
    # the owner can decrypt only with the other challenge's context.
    resealed = hpke.seal_base(m.x25519_public, other.issued.info, sc.CHALLENGE_AAD,
                              other.challenge.token, ikm_e=m.drbg("spliced")(32))
    wire = _with(m.wire, enc=b64url_encode(resealed.enc),
                 ciphertext=b64url_encode(resealed.ciphertext))
    return [_open_case(m, "spliced", f"a token sealed to this key for challenge "
                       f"sc-v1-{other.base.name} (another user, id and expiry)",
                       ("InfoMismatch",), ("SC-4", "SC-7"), AEAD, wire)]


def _open_lengths(m: Material) -> list[Case]:
    wire, issued = m.wire, m.issued
    fields = {"enc": (issued.sealed.enc, "SC-6"),
              "ciphertext": (issued.sealed.ciphertext, "API-1"),
              "challenge_id": (issued.challenge.binding.challenge_id, "API-1")}
    cases = []
    for name, (raw, rid) in fields.items():
        slug = name.replace("_", "-")
        cases.append(_open_case(m, f"truncated/{slug}", f"{name} one byte short",
                                ("Truncated",), (rid,), LENGTH,
                                _with(wire, **{name: b64url_encode(raw[:-1])})))
        cases.append(_open_case(m, f"trailing/{slug}", f"{name} one byte long",
                                ("TrailingBytes",), (rid,), LENGTH,
                                _with(wire, **{name: b64url_encode(raw + m.drbg(
                                    f"extra-byte/{name}")(1))})))
    return cases


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _non_zero_trailing_bits(text: str) -> str:
    return text[:-1] + _ALPHABET[_ALPHABET.index(text[-1]) | 1]


def _open_encodings(m: Material) -> list[Case]:
    wire = m.wire
    enc_rid = "SC-6"
    return [
        _open_case(m, "base64/enc-padded", "enc with '=' padding", ("NonCanonicalBase64",),
                   (enc_rid,), DECODE, _with(wire, enc=wire["enc"] + "=")),
        _open_case(m, "base64/enc-trailing-bits", "enc's last character has non-zero unused "
                   "bits (a lax decoder yields the same bytes)", ("NonCanonicalBase64",),
                   (enc_rid,), DECODE, _with(wire, enc=_non_zero_trailing_bits(wire["enc"]))),
        _open_case(m, "base64/challenge-id-trailing-bits", "challenge_id's last character has "
                   "non-zero unused bits", ("NonCanonicalBase64",), ("API-1",), DECODE,
                   _with(wire, challenge_id=_non_zero_trailing_bits(wire["challenge_id"]))),
        _open_case(m, "base64/ciphertext-standard-alphabet",
                   "the ciphertext in the standard alphabet ('+', '/')",
                   ("NonCanonicalBase64",), ("API-1",), DECODE,
                   _with(wire, ciphertext=wire["ciphertext"].replace("-", "+").replace("_", "/")
                         if ("-" in wire["ciphertext"] or "_" in wire["ciphertext"])
                         else "+" + wire["ciphertext"][1:])),
    ]


def _open_structure(m: Material) -> list[Case]:
    wire = m.wire
    return [
        _open_case(m, "suite/aead-1", "the suite names AES-128-GCM (aead_id 1)",
                   ("WrongSuite",), ("SC-5",), PARAMS,
                   _with(wire, suite={"kem_id": 32, "kdf_id": 1, "aead_id": 1})),
        _open_case(m, "suite/kem-p256", "the suite names DHKEM(P-256) (kem_id 16)",
                   ("WrongSuite",), ("SC-5",), PARAMS,
                   _with(wire, suite={"kem_id": 16, "kdf_id": 1, "aead_id": 2})),
        _open_case(m, "suite/extra-member", "the suite carries a mode member",
                   ("UnknownMember",), ("API-6",), DECODE,
                   _with(wire, suite={"kem_id": 32, "kdf_id": 1, "aead_id": 2, "mode": 0})),
        _open_case(m, "unknown-member", "the challenge carries an attempts_left member",
                   ("UnknownMember",), ("API-6",), DECODE, _with(wire, attempts_left=1)),
        _open_case(m, "missing/enc", "enc is absent", ("MissingMember",), ("API-6",), DECODE,
                   _without(wire, "enc")),
        _open_case(m, "missing/expires-at", "expires_at is absent", ("MissingMember",),
                   ("API-6",), DECODE, _without(wire, "expires_at")),
        _open_case(m, "bad-value/key-version-string", "key_version is a string",
                   ("BadValue",), ("SC-4",), DECODE,
                   _with(wire, key_version=str(wire["key_version"]))),
        _open_case(m, "bad-value/expires-at-negative", "expires_at is negative",
                   ("BadValue",), ("SC-3",), DECODE, _with(wire, expires_at=-1)),
        _open_case(m, "bad-value/user-id-syntax", "user_id has a character outside the "
                   "identifier syntax", ("BadValue",), ("KD-2",), DECODE,
                   _with(wire, user_id=m.base.user_id[:63] + "/")),
        _open_case(m, "missing/origin", "origin is absent", ("MissingMember",), ("API-6",),
                   DECODE, _without(wire, "origin")),
        *(_open_case(m, f"bad-origin/{slug}", f"the origin {comment}", ("BadOrigin",),
                     ("SC-18",), DECODE, _with(wire, origin=origin))
          for slug, comment, origin in _bad_origins(m.base.origin)),
    ]


def _bad_origins(origin: str) -> list[tuple[str, str, Any]]:
    """Origins that are not RFC 6454 serializations, derived from a valid one."""
    scheme, rest = origin.split("://")
    host = rest.rsplit(":", 1)[0] if rest.count("]:") or (":" in rest and "[" not in rest) \
        else rest
    default = "443" if scheme == "https" else "80"
    return [
        ("trailing-slash", "ends with a slash", origin + "/"),
        ("path", "has a path", origin + "/v1"),
        ("uppercase", "has an uppercase scheme and host", origin.upper()),
        ("default-port", f"names the default port {default}",
         f"{scheme}://{host}:{default}"),
        ("userinfo", "has userinfo", f"{scheme}://user@{host}"),
        ("scheme", "has the scheme wss", f"wss://{host}"),
        ("too-long", "is 256 characters long", f"{scheme}://" + "a" * (253 - len(scheme))),
        ("number", "is a number", 443),
    ]


# --- answer ---------------------------------------------------------------------------------------

def _answer_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
                 requirements: tuple[str, ...], start: sc.ServerChallenge,
                 answers: Sequence[tuple[int, Any]]) -> Case:
    """Run the answers through the spec; the case records the state after each."""
    after: list[dict[str, Any]] = []
    state = start
    last: SpecError | None = None
    for now, body in answers:
        state, last = _judge(state, body, now)
        after.append({"state": state.state.value,
                      "result": "accepted" if last is None else last.failure_class})
    failure = None if last is None else Failure(last.failure_class, STEP_JUDGE)
    outputs = {} if failure else {"stored": server_record(state)}
    return Case(
        id=f"sc-v1-{m.base.name}/answer" + (f"/{slug}" if slug else ""), comment=comment,
        flags=flags, requirements=requirements, operation=OP_ANSWER,
        inputs={"stored": server_record(start),
                "answers": [{"now": now, "body": body} for now, body in answers]},
        intermediates={"after": after}, outputs=outputs, failure=failure)


def _judge(challenge: sc.ServerChallenge, body: Any, now: int
           ) -> tuple[sc.ServerChallenge, SpecError | None]:
    """Step 8 as a server runs it: parse the body (a malformed one changes nothing), then
    one transition of the state machine."""
    try:
        token = sc.parse_answer(body)
    except SpecError as exc:
        return challenge, exc
    result = sc.answer_challenge(challenge, token, now=now)
    return result.challenge, result.error


def _answer_cases(m: Material) -> list[Case]:
    b, ch = m.base, m.challenge
    right = sc.answer_to_wire(ch.token)
    wrong = sc.answer_to_wire(_flip(ch.token, 0))
    other = sc.answer_to_wire(material(next(x for x in BASES if x != b)).challenge.token)
    last_second = ch.binding.expires_at - 1
    return [
        _answer_case(m, "", f"the right token in time: {b.comment}", ("Valid",),
                     ("SC-8", "SC-9", "SC-10"), ch, [(b.now, right)]),
        _answer_case(m, "last-second", "the right token one second before expires_at",
                     ("Valid",), ("SC-9",), ch, [(last_second, right)]),
        _answer_case(m, "replay", "the right token twice: the second is a replay",
                     ("Sequence", "Replay"), ("SC-8", "SC-11"), ch,
                     [(b.now, right), (b.now, right)]),
        _answer_case(m, "wrong-token", "a token with one bit flipped burns the challenge",
                     ("WrongToken",), ("SC-10", "SC-11"), ch, [(b.now, wrong)]),
        _answer_case(m, "wrong-then-right", "a wrong token, then the right one: the challenge "
                     "is burned", ("Sequence", "WrongToken", "Replay"),
                     ("SC-8", "SC-10", "SC-11"), ch, [(b.now, wrong), (b.now, right)]),
        _answer_case(m, "other-challenge-token", "the token of another challenge",
                     ("WrongToken",), ("SC-10", "SC-11"), ch, [(b.now, other)]),
        _answer_case(m, "expired-at-boundary", "the right token exactly at expires_at",
                     ("Expired",), ("SC-9", "SC-11"), ch, [(ch.binding.expires_at, right)]),
        _answer_case(m, "expired-later", "the right token an hour after expires_at",
                     ("Expired",), ("SC-9", "SC-11"), ch,
                     [(ch.binding.expires_at + 3600, right)]),
        _answer_case(m, "expired-then-right-in-time", "an expired answer, then the right "
                     "token with a clock set back: the challenge stays expired",
                     ("Sequence", "Expired", "Replay"), ("SC-8", "SC-9", "SC-11"), ch,
                     [(ch.binding.expires_at, right), (b.now, right)]),
        _answer_case(m, "malformed/truncated", "a 31-byte token: refused, challenge untouched",
                     ("MalformedAnswer", "Truncated"), ("API-1",), ch,
                     [(b.now, sc.answer_to_wire(ch.token[:-1]))]),
        _answer_case(m, "malformed/padded", "a padded token: refused, challenge untouched",
                     ("MalformedAnswer", "NonCanonicalBase64"), ("API-1",), ch,
                     [(b.now, {"token": right["token"] + "="})]),
        _answer_case(m, "malformed/then-right", "an unknown member, then the right token: the "
                     "malformed answer did not end the challenge",
                     ("Sequence", "MalformedAnswer", "UnknownMember"), ("API-6", "SC-8"), ch,
                     [(b.now, dict(right, session=True)), (b.now, right)]),
    ]


# --- sessions -------------------------------------------------------------------------------------

def _session_cases(m: Material) -> list[Case]:
    b, issued = m.base, m.session
    stored = stored_session(issued.session)
    expires = issued.session.expires_at
    issue = Case(
        id=f"sc-v1-{b.name}/session", comment=f"the session issued for {b.name}'s answer",
        flags=("Valid",), requirements=("SC-12",), operation=OP_SESSION,
        inputs={"stored": server_record(m.answered), "now": b.now,
                "session_lifetime": b.session_lifetime,
                "random": {"session_token": issued.token}},
        intermediates={"digest": issued.session.digest},
        outputs={"session": issued.wire, "stored_session": stored})

    def check(slug: str, comment: str, flags: tuple[str, ...], failure: Failure | None,
              user_id: str, client_id: str, now: int,
              operation: sc.Operation = sc.Operation.GET_KEYPAIR,
              live_key_version: int | None = b.key_version,
              requirements: tuple[str, ...] = ("SC-13",)) -> Case:
        return Case(id=f"sc-v1-{b.name}/check-session" + (f"/{slug}" if slug else ""),
                    comment=comment, flags=flags, requirements=requirements,
                    operation=OP_CHECK_SESSION,
                    inputs={"stored_session": stored, "session_token": issued.token,
                            "user_id": user_id, "client_id": client_id,
                            "operation": operation.value,
                            "live_key_version": live_key_version, "now": now},
                    intermediates={"digest": issued.session.digest},
                    outputs={} if failure else {"authorized": True}, failure=failure)

    refused = Failure("authz", STEP_SESSION)
    stale = Failure("binding", STEP_SESSION)
    later = _other_version(b.key_version)
    return [
        issue,
        *_accept_cases(m),
        check("", "the session token reads its own record, in time", ("Valid",), None,
              b.user_id, b.client_id, expires - 1,
              requirements=("SC-13", "SC-15", "SC-16")),
        check("expired", "the session token at its expires_at", ("Expired",),
              Failure("expired", STEP_SESSION), b.user_id, b.client_id, expires),
        check("other-user", "the session token on another user's resource",
              ("ForeignResource",), refused, OTHER_USER, b.client_id, b.now),
        check("other-client", "the session token on the same user's other application",
              ("ForeignResource",), refused, b.user_id, OTHER_CLIENT, b.now),
        *(check(f"write/{op.value}", f"the live session token for {op.value} on its own "
                "record", ("SessionWrite",), refused, b.user_id, b.client_id, b.now,
                operation=op, requirements=("SC-15",))
          for op in (sc.Operation.PUT_KEYPAIR, sc.Operation.DELETE_KEYPAIR,
                     sc.Operation.OTHER)),
        check("rotated", f"the record was replaced by key_version {later} since the "
              "challenge", ("StaleSession",), stale, b.user_id, b.client_id, b.now,
              live_key_version=later, requirements=("SC-16",)),
        check("deleted", "the record was deleted since the challenge", ("StaleSession",),
              stale, b.user_id, b.client_id, b.now, live_key_version=None,
              requirements=("SC-16",)),
    ]


def _accept_cases(m: Material) -> list[Case]:
    """Step 9, client side: the session body against the challenge it answered."""
    b, wire = m.base, m.session.wire

    def case(slug: str, comment: str, flags: tuple[str, ...], body: Any,
             failure: Failure | None, requirements: tuple[str, ...] = ("SC-19",)) -> Case:
        outputs: dict[str, Any] = {}
        if failure is None:
            token, session = sc.parse_session(body)
            outputs = {"session_token": token, "stored_session": stored_session(session)}
        return Case(id=f"sc-v1-{b.name}/accept-session" + (f"/{slug}" if slug else ""),
                    comment=comment, flags=flags, requirements=requirements,
                    operation=OP_ACCEPT_SESSION,
                    inputs={"session": body, "user_id": b.user_id, "client_id": b.client_id,
                            "key_version": b.key_version},
                    outputs=outputs, failure=failure)

    binding = Failure("binding", STEP_ISSUE_SESSION)
    decode = Failure("decode", STEP_ISSUE_SESSION)
    return [
        case("", "the client takes the session of the challenge it answered", ("Valid",),
             wire, None, ("SC-12", "SC-19")),
        case("other-key-version", "a session for another key version", ("ForeignSession",),
             _with(wire, key_version=_other_version(b.key_version)), binding),
        case("other-user", "a session for another user", ("ForeignSession",),
             _with(wire, user_id=OTHER_USER), binding),
        case("other-client", "a session for another application", ("ForeignSession",),
             _with(wire, client_id=OTHER_CLIENT), binding),
        case("scope", "a session with the scope keypair:write", ("ForeignSession",),
             _with(wire, scope="keypair:write"), decode),
        case("missing/key-version", "key_version is absent", ("MissingMember",),
             _without(wire, "key_version"), decode, ("API-6",)),
    ]


# --- attempt limit -------------------------------------------------------------------------------

def _attempt_cases(m: Material, max_attempts: int = 3) -> list[Case]:
    b = m.base
    limits = {"challenge_lifetime_seconds": b.lifetime, "max_attempts": max_attempts,
              "session_lifetime_seconds": b.session_lifetime}
    inside = [b.now - min(i, b.lifetime - 1) for i in range(max_attempts - 1, 0, -1)]
    outside = [b.now - b.lifetime]

    def case(slug: str, comment: str, flags: tuple[str, ...], issued_at: list[int],
             refused: bool) -> Case:
        count = sc.attempts_in_window(issued_at, now=b.now, window=b.lifetime)
        return Case(id=f"sc-v1-{b.name}/attempts/{slug}", comment=comment, flags=flags,
                    requirements=("SC-2",), operation=OP_ATTEMPTS,
                    inputs={"issued_at": issued_at, "now": b.now, "limits": limits},
                    intermediates={"in_window": count},
                    outputs={} if refused else {"allowed": True},
                    failure=Failure("authz", STEP_LIMIT) if refused else None)

    return [
        case("below", f"{max_attempts - 1} challenges in the window and one just outside it",
             ("Valid",), outside + inside, False),
        case("reached", f"{max_attempts} challenges in the window", ("LimitReached",),
             [*inside, b.now], True),
    ]


# --- files ---------------------------------------------------------------------------------------

def _cases() -> list[Case]:
    cases: list[Case] = []
    for base in BASES:
        m = material(base)
        cases.append(_issue_case(m))
        cases.append(_open_case(m, "", f"the owner opens {base.comment}", ("Valid",),
                                ("SC-5", "SC-6", "SC-7"), None, m.wire))
        cases += _answer_cases(m)
        cases += _session_cases(m)
    for base in BASES:
        m = material(base)
        cases += _open_negatives(m)
        cases += _attempt_cases(m)
    return cases + _hybrid_cases()


# --- the hybrid suite (SC-50, SC-51) ----------------------------------------------------------

HYBRID_BASE = Base("dave-pq", "https://keys.example", "dave", "chat.example", 3, 1_700_000_000,
                   60, 900, "a challenge sealed with the hybrid suite to dave's record, which "
                   "has an ML-KEM-768 key")


@dataclass(frozen=True)
class HybridMaterial:
    base: Base
    x25519_private: bytes
    mlkem_seed: bytes
    x25519_public: bytes
    mlkem768: bytes
    issued: sc.IssuedChallenge
    sealed: hpke.HybridSealed

    @property
    def wire(self) -> dict[str, Any]:
        return copy.deepcopy(self.issued.wire)


@cache
def hybrid_material() -> HybridMaterial:
    """Drbg('session-challenge/v1/dave-pq') draws x25519_private (32), the ML-KEM seed (64),
    then challenge_id (16), token (32), ML-KEM's m (32) and the ephemeral X25519 scalar (32)."""
    b = HYBRID_BASE
    drbg = Drbg(f"{FLOW}/v1/{b.name}")
    private, seed = drbg(32), drbg(64)
    public = primitives.x25519_public_key(private)
    mlkem768 = mlkem.public_key_from_seed(seed)
    issued = sc.issue_challenge(origin=b.origin, user_id=b.user_id, client_id=b.client_id,
                                key_version=b.key_version, recipient_public=public,
                                now=b.now, lifetime=b.lifetime, random=drbg,
                                recipient_mlkem768=mlkem768)
    assert isinstance(issued.sealed, hpke.HybridSealed)
    return HybridMaterial(base=b, x25519_private=private, mlkem_seed=seed, x25519_public=public,
                          mlkem768=mlkem768, issued=issued, sealed=issued.sealed)


def hybrid_sender(sealed: hpke.HybridSealed) -> dict[str, Any]:
    enc, ks = sealed.encapsulation, sealed.schedule
    return {"ss_pq": enc.ss_pq, "ct_pq": enc.ct_pq, "ss_t": enc.ss_t, "ct_t": enc.ct_t,
            "enc": enc.enc, "shared_secret": enc.shared_secret,
            "psk_id_hash": ks.psk_id_hash, "info_hash": ks.info_hash,
            "key_schedule_context": ks.key_schedule_context, "secret": ks.secret,
            "key": ks.key, "base_nonce": ks.base_nonce, "ciphertext": sealed.ciphertext}


def hybrid_receiver(opened: hpke.Opened | hpke.HybridOpened) -> dict[str, Any]:
    assert isinstance(opened, hpke.HybridOpened)
    dec, ks = opened.decapsulation, opened.schedule
    return {"ss_pq": dec.ss_pq, "ss_t": dec.ss_t, "shared_secret": dec.shared_secret,
            "key_schedule_context": ks.key_schedule_context, "secret": ks.secret,
            "key": ks.key, "base_nonce": ks.base_nonce}


def _hybrid_issue_case(h: HybridMaterial) -> Case:
    b, enc = h.base, h.sealed.encapsulation
    return Case(
        id=f"sc-v1-{b.name}/issue", comment=f"the server issues {b.comment}",
        flags=("Valid", "Hybrid"), requirements=("SC-3", "SC-4", "SC-50"),
        operation=OP_ISSUE_HYBRID,
        inputs={"origin": b.origin, "user_id": b.user_id, "client_id": b.client_id,
                "key_version": b.key_version, "recipient_public": h.x25519_public,
                "recipient_mlkem768": h.mlkem768, "now": b.now,
                "challenge_lifetime": b.lifetime,
                "random": {"challenge_id": h.issued.challenge.binding.challenge_id,
                           "token": h.issued.challenge.token, "mlkem_m": enc.mlkem_m,
                           "ephemeral_private": enc.ephemeral_private}},
        intermediates={"info": h.issued.info, **hybrid_sender(h.sealed)},
        outputs={"challenge": h.wire, "stored": server_record(h.issued.challenge)})


def _hybrid_open_case(h: HybridMaterial, slug: str, comment: str, flags: tuple[str, ...],
                      requirements: tuple[str, ...], failure: Failure | None,
                      wire: Any) -> Case:
    b = h.base
    inputs = {"challenge": wire, "origin": b.origin, "user_id": b.user_id,
              "client_id": b.client_id, "key_version": b.key_version,
              "x25519_private": h.x25519_private, "mlkem_seed": h.mlkem_seed}
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        opened = sc.open_challenge(wire, origin=b.origin, user_id=b.user_id,
                                   client_id=b.client_id, key_version=b.key_version,
                                   x25519_private=h.x25519_private, mlkem_seed=h.mlkem_seed)
        intermediates = {"info": opened.info, **hybrid_receiver(opened.opened)}
        outputs = {"token": opened.token, "answer": sc.answer_to_wire(opened.token)}
    return Case(id=f"sc-v1-{b.name}/open" + (f"/{slug}" if slug else ""), comment=comment,
                flags=flags, requirements=requirements, operation=OP_OPEN_HYBRID,
                inputs=inputs, intermediates=intermediates, outputs=outputs, failure=failure)


def _hybrid_cases() -> list[Case]:
    h = hybrid_material()
    b, wire = h.base, h.wire
    enc, ct = h.sealed.encapsulation.enc, h.sealed.ciphertext
    # The same binding sealed with the X25519 suite: what a downgrading server sends.
    downgraded = sc.issue_challenge(origin=b.origin, user_id=b.user_id, client_id=b.client_id,
                                    key_version=b.key_version, recipient_public=h.x25519_public,
                                    now=b.now, lifetime=b.lifetime,
                                    random=Drbg(f"{FLOW}/v1/{b.name}/downgraded")).wire
    hybrid_x = ("Hybrid",)
    cases = [
        _hybrid_issue_case(h),
        _hybrid_open_case(h, "", f"the owner opens {b.comment}", ("Valid", *hybrid_x),
                          ("SC-51", "SC-7"), None, wire),
        _hybrid_open_case(h, "downgrade", "the challenge sealed with the X25519 suite to the "
                          "record's X25519 key: a client holding the ML-KEM seed refuses it",
                          ("Downgrade", *hybrid_x), ("SC-51",), PARAMS, downgraded),
        _hybrid_open_case(h, "enc-truncated", "enc one byte short (1119 bytes)",
                          ("Truncated", *hybrid_x), ("SC-51",), LENGTH,
                          _with(wire, enc=b64url_encode(enc[:-1]))),
        _hybrid_open_case(h, "ct-t-low-order", "the X25519 part of enc is u = 0",
                          ("LowOrderPoint", *hybrid_x), ("SC-51", "SC-6"), POINT,
                          _with(wire, enc=b64url_encode(enc[:-32] + bytes(32)))),
        _hybrid_open_case(h, "ct-pq-bitflip", "bit 0 of the ML-KEM ciphertext flipped: ML-KEM "
                          "rejects implicitly, so the AEAD fails", ("BitFlip", *hybrid_x),
                          ("SC-51",), AEAD, _with(wire, enc=b64url_encode(_flip(enc, 0)))),
        _hybrid_open_case(h, "ct-t-bitflip", "bit 0 of the ephemeral X25519 key flipped",
                          ("BitFlip", *hybrid_x), ("SC-51",), AEAD,
                          _with(wire, enc=b64url_encode(_flip(enc, len(enc) - 32)))),
        _hybrid_open_case(h, "ciphertext-bitflip", "bit 0 of the sealed token flipped",
                          ("BitFlip", *hybrid_x), ("SC-51",), AEAD,
                          _with(wire, ciphertext=b64url_encode(_flip(ct, 0)))),
        _hybrid_open_case(h, "info/expires-at", "expires_at extended by one second",
                          ("InfoMismatch", *hybrid_x), ("SC-4", "SC-51"), AEAD,
                          _with(wire, expires_at=wire["expires_at"] + 1)),
    ]
    # A client without an ML-KEM seed refuses the hybrid challenge (SC-5).
    x_only = Case(id=f"sc-v1-{b.name}/open/x25519-client", comment="the hybrid challenge "
                  "given to a client whose record has no ML-KEM key: not its suite",
                  flags=("Downgrade", *hybrid_x), requirements=("SC-5",), operation=OP_OPEN,
                  inputs={"challenge": wire, "origin": b.origin, "user_id": b.user_id,
                          "client_id": b.client_id, "key_version": b.key_version,
                          "x25519_private": h.x25519_private},
                  failure=PARAMS)
    return [*cases, x_only]


def generate() -> list[VectorFile]:
    return [VectorFile(
        schema_name=FLOW, flow=FLOW, profile="v1",
        source_labels=(f"Drbg('{FLOW}/v1/<base case>') draws the user's x25519_private (32), "
                       "then challenge_id (16), token (32), ikmE (32), then session_token "
                       "(32); a mutation needing bytes draws from '<label>/<mutation>' "
                       "(wrong-key, spliced, extra-byte/<member>); the hybrid base dave-pq "
                       "draws x25519_private (32), the ML-KEM seed (64), challenge_id (16), "
                       "token (32), ML-KEM's m (32), the ephemeral X25519 scalar (32), and "
                       "its downgraded challenge comes from '<label>/downgraded'"),
        notes=NOTES, cases=_cases())]


# --- verification: the consumer side --------------------------------------------------------------

def _verify_issue(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    rnd = inputs["random"]
    issued = sc.issue_challenge(
        origin=inputs["origin"], user_id=inputs["user_id"], client_id=inputs["client_id"],
        key_version=inputs["key_version"],
        recipient_public=hx(inputs["recipient_public"], "recipient_public"), now=inputs["now"],
        lifetime=inputs["challenge_lifetime"],
        random=replay_source([hx(rnd["challenge_id"], "challenge_id"), hx(rnd["token"], "token"),
                              hx(rnd["ikm_e"], "ikm_e")]))
    return compare(case, intermediates={"info": issued.info, **hpke_sender(issued.sealed)},
                   outputs={"challenge": issued.wire, "stored": server_record(issued.challenge)})


def _verify_open(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def open_it() -> sc.OpenedChallenge:
        return sc.open_challenge(inputs["challenge"], origin=inputs["origin"],
                                 user_id=inputs["user_id"],
                                 client_id=inputs["client_id"],
                                 key_version=inputs["key_version"],
                                 x25519_private=hx(inputs["x25519_private"], "x25519_private"))

    if case["result"] == "invalid":
        return expect_rejection(case, open_it)
    opened = open_it()
    return compare(case, intermediates={"info": opened.info, **hpke_receiver(opened.opened)},
                   outputs={"token": opened.token, "answer": sc.answer_to_wire(opened.token)})


def _verify_answer(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    state = parse_server_record(inputs["stored"])
    after: list[dict[str, Any]] = []
    last: SpecError | None = None
    for event in inputs["answers"]:
        state, last = _judge(state, event["body"], event["now"])
        after.append({"state": state.state.value,
                      "result": "accepted" if last is None else last.failure_class})
    outcome = compare(case, intermediates={"after": after})
    if not outcome.agreed:
        return outcome
    if case["result"] == "invalid":
        final = last

        def replay() -> None:
            if final is not None:
                raise final

        return expect_rejection(case, replay)
    if last is not None:
        return Outcome(False, f"the last answer was refused ({last}), the case expects "
                              "acceptance")
    return compare(case, outputs={"stored": server_record(state)})


def _verify_session(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    issued = sc.issue_session(parse_server_record(inputs["stored"]), now=inputs["now"],
                              lifetime=inputs["session_lifetime"],
                              random=replay_source([hx(inputs["random"]["session_token"],
                                                       "session_token")]))
    outcome = compare(case, intermediates={"digest": issued.session.digest},
                      outputs={"session": issued.wire,
                               "stored_session": stored_session(issued.session)})
    if outcome.agreed and sc.parse_session(issued.wire) != (issued.token, issued.session):
        return Outcome(False, "parse_session does not give back the issued session")
    return outcome


def _verify_accept_session(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def accept() -> tuple[bytes, sc.Session]:
        token, session = sc.parse_session(inputs["session"])
        sc.check_session_answer(session, user_id=inputs["user_id"],
                                client_id=inputs["client_id"],
                                key_version=inputs["key_version"])
        return token, session

    if case["result"] == "invalid":
        return expect_rejection(case, accept)
    token, session = accept()
    return compare(case, outputs={"session_token": token,
                                  "stored_session": stored_session(session)})


def _verify_check_session(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    stored = inputs["stored_session"]
    token = hx(inputs["session_token"], "session_token")
    digest = sc.session_token_digest(token)
    outcome = compare(case, intermediates={"digest": digest})
    if not outcome.agreed:
        return outcome
    if digest != hx(stored["digest"], "digest"):
        return Outcome(False, "the session token does not match the stored digest")
    session = parse_stored_session(stored)

    def check() -> None:
        sc.check_session(session, user_id=inputs["user_id"], client_id=inputs["client_id"],
                         operation=sc.Operation(inputs["operation"]), now=inputs["now"])
        sc.check_session_key_version(session, inputs["live_key_version"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    check()
    return compare(case, outputs={"authorized": True})


def _verify_attempts(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    limits = sc.parse_limits(inputs["limits"])
    count = sc.attempts_in_window(inputs["issued_at"], now=inputs["now"],
                                  window=limits.challenge_lifetime)
    outcome = compare(case, intermediates={"in_window": count})
    if not outcome.agreed:
        return outcome

    def check() -> None:
        sc.check_attempt_limit(inputs["issued_at"], now=inputs["now"], limits=limits)

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    check()
    return compare(case, outputs={"allowed": True})


def _verify_issue_hybrid(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    rnd = inputs["random"]
    issued = sc.issue_challenge(
        origin=inputs["origin"], user_id=inputs["user_id"], client_id=inputs["client_id"],
        key_version=inputs["key_version"],
        recipient_public=hx(inputs["recipient_public"], "recipient_public"), now=inputs["now"],
        lifetime=inputs["challenge_lifetime"],
        recipient_mlkem768=hx(inputs["recipient_mlkem768"], "recipient_mlkem768"),
        random=replay_source([hx(rnd[k], k) for k in ("challenge_id", "token", "mlkem_m",
                                                      "ephemeral_private")]))
    assert isinstance(issued.sealed, hpke.HybridSealed)
    return compare(case, intermediates={"info": issued.info, **hybrid_sender(issued.sealed)},
                   outputs={"challenge": issued.wire, "stored": server_record(issued.challenge)})


def _verify_open_hybrid(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def open_it() -> sc.OpenedChallenge:
        return sc.open_challenge(inputs["challenge"], origin=inputs["origin"],
                                 user_id=inputs["user_id"], client_id=inputs["client_id"],
                                 key_version=inputs["key_version"],
                                 x25519_private=hx(inputs["x25519_private"], "x25519_private"),
                                 mlkem_seed=hx(inputs["mlkem_seed"], "mlkem_seed"))

    if case["result"] == "invalid":
        return expect_rejection(case, open_it)
    opened = open_it()
    return compare(case, intermediates={"info": opened.info, **hybrid_receiver(opened.opened)},
                   outputs={"token": opened.token, "answer": sc.answer_to_wire(opened.token)})


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_ISSUE_HYBRID): _verify_issue_hybrid,
    ("v1", OP_OPEN_HYBRID): _verify_open_hybrid,
    ("v1", OP_ISSUE): _verify_issue,
    ("v1", OP_OPEN): _verify_open,
    ("v1", OP_ANSWER): _verify_answer,
    ("v1", OP_SESSION): _verify_session,
    ("v1", OP_ACCEPT_SESSION): _verify_accept_session,
    ("v1", OP_CHECK_SESSION): _verify_check_session,
    ("v1", OP_ATTEMPTS): _verify_attempts,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)

