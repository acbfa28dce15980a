"""Vectors of the key-derivation flow: profile v1 and the fxakeys compatibility profile.

Profile v1: the application key kBr (KD-3) and the password key (KD-4..KD-6), every
intermediate recorded (HKDF info, PRK, the Argon2id output). Negatives derive from each
positive: kB one byte short or long, identifiers outside the syntax, salts of the wrong
length, Argon2id costs out of range, an empty password.

Profile fxakeys: the original kBr = HKDF-SHA256(kB, salt = "0" * len(kB), info = client_id)
(KD-8), hex-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from keyflows.spec import key_derivation as kd
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
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

FLOW = "key-derivation"

OP_APPLICATION_KEY = "application-key"
OP_PASSWORD_KEY = "password-key"
OP_FXAKEYS_APPLICATION_KEY = "fxakeys-application-key"

# --- Argon2id, computed once per (password, salt, params) per process ----------------------


@lru_cache(maxsize=64)
def _stretch_cached(password: str, salt: bytes, t: int, m: int, p: int) -> bytes:
    return kd.stretch_password(password, salt, kd.Argon2Params(t=t, m=m, p=p))


def stretch(password: str, salt: bytes, params: kd.Argon2Params) -> bytes:
    """Step 3 of the spec (Argon2id), memoised: generation and verification of every
    vector file together stay within a handful of Argon2id runs."""
    return _stretch_cached(password, salt, params.t, params.m, params.p)


def argon2id_runs() -> int:
    """How many distinct Argon2id computations this process has made."""
    return _stretch_cached.cache_info().misses


# --- glossary -----------------------------------------------------------------------------

NOTES_V1: dict[str, Flag] = {
    "ApplicationKey": Flag(
        "Derivation of kBr, the per-application key, from kB and client_id (KD-3).",
        "A valid case: recompute info, PRK and kBr from the inputs and compare."),
    "PasswordKey": Flag(
        "Derivation of the password key: Argon2id, then HKDF bound to user and application "
        "(KD-4..KD-6).",
        "A valid case: recompute the Argon2id output, info, PRK and the password key."),
    "BadLength": Flag(
        "kB or the salt is one byte short or one byte long.",
        "Reject before deriving anything (failure class length)."),
    "BadIdentifier": Flag(
        "user_id or client_id does not match ^[A-Za-z0-9._~-]{1,64}$ (empty, too long, a "
        "forbidden character, a trailing newline, non-ASCII).",
        "Reject before deriving anything (failure class decode)."),
    "ParamsOutOfRange": Flag(
        "Argon2id costs outside 2 <= t <= 16, 1 <= p <= 16, max(19456, 8p) <= m <= 4194304.",
        "Reject before running Argon2id (failure class params), so a hostile record cannot "
        "make the consumer burn memory or time."),
    "EmptyPassword": Flag(
        "The password is the empty string.",
        "Reject (failure class params): an empty password protects nothing."),
    "NonAscii": Flag(
        "A value contains non-ASCII characters.",
        "Passwords are encoded as UTF-8 (valid); identifiers are ASCII only (invalid)."),
    "BelowFloor": Flag(
        "Argon2id costs below the one floor of producers and consumers (t < 2 or "
        "m < 19456 KiB), which the profile once accepted from others.",
        "Reject before running Argon2id (failure class params, KD-5)."),
    "Normalised": Flag(
        "The password is not in its PRECIS OpaqueString form (a non-ASCII space, a "
        "decomposed letter).",
        "Enforce the profile first: the intermediate `normalized` is what Argon2id takes "
        "(KD-9)."),
    "DisallowedPassword": Flag(
        "The password holds a code point the OpaqueString profile disallows (a control, "
        "an ignorable code point).",
        "Reject before running Argon2id (failure class params, KD-9)."),
}

NOTES_FXAKEYS: dict[str, Flag] = {
    "Compat": Flag(
        "The fxakeys original formula, byte-exact: HKDF-SHA256(kB, salt = ASCII '0' * len(kB), "
        "info = client_id, L = 32), hex-encoded (KD-8).",
        "A valid case: an implementation of the fxakeys profile produces exactly kbr."),
    "SharedKb": Flag(
        "Uses the same kB as another case with a different client_id.",
        "kbr must differ from that case's: client_id is the only domain separation."),
    "UnusualKbLength": Flag(
        "kB is not 32 bytes; the original salt is as long as kB.",
        "Valid: the salt length follows kB."),
    "EmptyKb": Flag(
        "kB is empty.",
        "Reject (failure class length): the fxakeys profile needs a non-empty kB."),
}


# --- v1: application key --------------------------------------------------------------------

@dataclass(frozen=True)
class AppBase:
    name: str
    client_id: str
    comment: str


APP_BASES = (
    AppBase("app-key-0", "5901bd09376fe0e9",
            "kBr for a hex-style OAuth client_id, as Firefox Accounts issues them"),
    AppBase("app-key-1", "notes.example", "kBr for a dotted client_id"),
    AppBase("app-key-2", "Az09._~-" * 8,
            "kBr for a client_id of the maximum length (64) using every allowed symbol"),
)

BAD_IDENTIFIERS: tuple[tuple[str, str, str], ...] = (
    ("empty", "", "is empty"),
    ("too-long", "a" * 65, "is 65 characters long, one more than allowed"),
    ("space", "notes example", "contains a space"),
    ("slash", "notes/example", "contains a slash, which would also split a URL path"),
    ("at-sign", "alice@example.com", "is an e-mail address ('@' is not allowed)"),
    ("non-ascii", "n\u00f6tes", "contains a non-ASCII letter"),
    ("trailing-newline", "notes\n", "ends with a newline (a regex anchored with $ accepts it)"),
)


def _app_key_material(base: AppBase) -> bytes:
    return Drbg(f"{FLOW}/v1/{base.name}")(kd.KB_LEN)


def _app_key_case(base: AppBase) -> Case:
    kb = _app_key_material(base)
    return Case(
        id=f"kd-v1-{base.name}",
        comment=base.comment,
        flags=("ApplicationKey",),
        requirements=("KD-1", "KD-2", "KD-3", "KD-7"),
        operation=OP_APPLICATION_KEY,
        inputs={"kb": kb, "client_id": base.client_id},
        intermediates={"info": kd.application_key_info(base.client_id),
                       "prk": primitives.hkdf_extract(b"", kb)},
        outputs={"kbr": kd.application_key(kb, base.client_id)},
    )


def _app_key_negatives(base: AppBase) -> list[Case]:
    kb = _app_key_material(base)
    extra = Drbg(f"{FLOW}/v1/{base.name}/extra-byte")(1)
    prefix = f"kd-v1-{base.name}"
    cases = [
        Case(f"{prefix}/kb-truncated", "kB one byte short (31 bytes)", ("BadLength",),
             ("KD-1",), OP_APPLICATION_KEY, {"kb": kb[:-1], "client_id": base.client_id},
             failure=Failure("length", "1")),
        Case(f"{prefix}/kb-extended", "kB one byte long (33 bytes)", ("BadLength",),
             ("KD-1",), OP_APPLICATION_KEY, {"kb": kb + extra, "client_id": base.client_id},
             failure=Failure("length", "1")),
    ]
    for slug, bad, what in BAD_IDENTIFIERS:
        flags = ("BadIdentifier", "NonAscii") if slug == "non-ascii" else ("BadIdentifier",)
        cases.append(Case(f"{prefix}/client-id-{slug}", f"client_id {what}", flags,
                          ("KD-2",), OP_APPLICATION_KEY, {"kb": kb, "client_id": bad},
                          failure=Failure("decode", "1")))
    return cases


# --- v1: password key -----------------------------------------------------------------------

@dataclass(frozen=True)
class PasswordBase:
    name: str
    password: str
    user_id: str
    client_id: str
    comment: str


PASSWORD_BASES = (
    PasswordBase("password-0", "correct horse battery staple", "alice", "notes.example",
                 "password key at the producer minimum cost (t=2, m=19456 KiB, p=1)"),
    PasswordBase("password-1", "p\u00e4ssw\u00f6rd \u2713 \U0001f511", "bob_42",
                 "5901bd09376fe0e9",
                 "a non-ASCII password: Argon2id takes its UTF-8 encoding (NFC as given)"),
    PasswordBase("password-2", "Correct\u2003Horse\u00a0Caf\u0065\u0301", "carol",
                 "notes.example",
                 "an em space, a no-break space and a decomposed e-acute: OpaqueString maps "
                 "the spaces to U+0020 and composes the letter (NFC) before Argon2id"),
)

PARAMS_OUT_OF_RANGE: tuple[tuple[str, kd.Argon2Params, str], ...] = (
    ("t-zero", kd.Argon2Params(t=0, m=19456, p=1), "t = 0"),
    ("t-too-large", kd.Argon2Params(t=17, m=19456, p=1), "t = 17, above the cap of 16"),
    ("p-zero", kd.Argon2Params(t=2, m=19456, p=0), "p = 0"),
    ("p-too-large", kd.Argon2Params(t=2, m=19456, p=17), "p = 17, above the cap of 16"),
    ("m-below-8p", kd.Argon2Params(t=2, m=15, p=2), "m = 15 KiB with p = 2 (needs m >= 16)"),
    ("m-too-large", kd.Argon2Params(t=2, m=4194305, p=1), "m = 4194305 KiB, above 4 GiB"),
    ("t-one", kd.Argon2Params(t=1, m=19456, p=1), "t = 1, below the floor of 2"),
    ("m-below-floor", kd.Argon2Params(t=2, m=19455, p=1),
     "m = 19455 KiB, one below the floor of 19456"),
    ("m-8-kib", kd.Argon2Params(t=2, m=8, p=1),
     "m = 8 KiB, the old consumer minimum, about 2400 times below the floor"),
)
BELOW_FLOOR = ("t-one", "m-below-floor", "m-8-kib")

DISALLOWED_PASSWORDS: tuple[tuple[str, str, str], ...] = (
    ("control", "correct horse\u0007", "ends with U+0007 BELL, a control"),
    ("ignorable", "correct\u00adhorse", "holds U+00AD SOFT HYPHEN, a default-ignorable "
     "code point"),
)


def _password_material(base: PasswordBase) -> bytes:
    return Drbg(f"{FLOW}/v1/{base.name}")(kd.SALT_LEN)


def _password_inputs(password: str, salt: bytes, params: kd.Argon2Params, user_id: str,
                     client_id: str) -> dict[str, Any]:
    return {"password": password, "salt": salt, "t": params.t, "m": params.m, "p": params.p,
            "user_id": user_id, "client_id": client_id}


def _password_flags(password: str) -> tuple[str, ...]:
    flags = ["PasswordKey"]
    if not password.isascii():
        flags.append("NonAscii")
    if kd.normalize_password(password) != password.encode("utf-8"):
        flags.append("Normalised")
    return tuple(flags)


def _password_key_case(base: PasswordBase) -> Case:
    salt = _password_material(base)
    params = kd.PRODUCER_MINIMUM
    stretched = stretch(base.password, salt, params)
    return Case(
        id=f"kd-v1-{base.name}",
        comment=base.comment,
        flags=_password_flags(base.password),
        requirements=("KD-2", "KD-4", "KD-5", "KD-6", "KD-7", "KD-9"),
        operation=OP_PASSWORD_KEY,
        inputs=_password_inputs(base.password, salt, params, base.user_id, base.client_id),
        intermediates={"normalized": kd.normalize_password(base.password),
                       "stretched": stretched,
                       "info": kd.password_key_info(base.user_id, base.client_id),
                       "prk": primitives.hkdf_extract(b"", stretched)},
        outputs={"pwk": kd.password_key_from_stretched(stretched, base.user_id,
                                                        base.client_id)},
    )


def _password_negatives(base: PasswordBase) -> list[Case]:
    salt = _password_material(base)
    extra = Drbg(f"{FLOW}/v1/{base.name}/extra-byte")(1)
    params = kd.PRODUCER_MINIMUM
    prefix = f"kd-v1-{base.name}"

    def case(slug: str, comment: str, flags: tuple[str, ...], requirement: str,
             failure: Failure, *, password: str = base.password, salt_: bytes = salt,
             params_: kd.Argon2Params = params, user_id: str = base.user_id,
             client_id: str = base.client_id) -> Case:
        return Case(f"{prefix}/{slug}", comment, flags, (requirement,), OP_PASSWORD_KEY,
                    _password_inputs(password, salt_, params_, user_id, client_id),
                    failure=failure)

    cases = [
        case("salt-truncated", "salt one byte short (15 bytes)", ("BadLength",), "KD-4",
             Failure("length", "3"), salt_=salt[:-1]),
        case("salt-extended", "salt one byte long (17 bytes)", ("BadLength",), "KD-4",
             Failure("length", "3"), salt_=salt + extra),
        case("password-empty", "the password is empty", ("EmptyPassword",), "KD-6",
             Failure("params", "3"), password=""),
    ]
    for slug, bad_params, what in PARAMS_OUT_OF_RANGE:
        flags = ("ParamsOutOfRange", "BelowFloor") if slug in BELOW_FLOOR else \
            ("ParamsOutOfRange",)
        cases.append(case(f"params-{slug}", f"Argon2id {what}", flags, "KD-5",
                          Failure("params", "3"), params_=bad_params))
    for slug, password, what in DISALLOWED_PASSWORDS:
        cases.append(case(f"password-{slug}", f"the password {what}",
                          ("DisallowedPassword",), "KD-9", Failure("params", "3"),
                          password=password))
    bad_identifiers = {slug: (bad, what) for slug, bad, what in BAD_IDENTIFIERS}
    for slug in ("empty", "at-sign", "trailing-newline"):
        bad, what = bad_identifiers[slug]
        cases.append(case(f"user-id-{slug}", f"user_id {what}", ("BadIdentifier",), "KD-2",
                          Failure("decode", "1"), user_id=bad))
    bad, what = bad_identifiers["slash"]
    cases.append(case("client-id-slash", f"client_id {what}", ("BadIdentifier",), "KD-2",
                      Failure("decode", "1"), client_id=bad))
    return cases


# --- fxakeys --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FxaBase:
    name: str
    kb_label: str  # the Drbg label kB is drawn from (shared to show domain separation)
    kb_len: int
    client_id: str
    flags: tuple[str, ...]
    comment: str


FXA_BASES = (
    FxaBase("kbr-0", "kbr-0", 32, "5901bd09376fe0e9", ("Compat",),
            "a 32-byte kB and a hex-style client_id, as Firefox Accounts issues them"),
    FxaBase("kbr-1", "kbr-0", 32, "a2270f727f45f648", ("Compat", "SharedKb"),
            "the kB of kbr-0 with another client_id: a different kBr"),
    FxaBase("kbr-2", "kbr-2", 32, "keyflows-demo", ("Compat",),
            "a 32-byte kB and a readable client_id"),
    FxaBase("kbr-3", "kbr-3", 64, "5901bd09376fe0e9", ("Compat", "UnusualKbLength"),
            "a 64-byte kB: the salt is 64 ASCII '0' characters"),
    FxaBase("kbr-4", "kbr-4", 16, "1", ("Compat", "UnusualKbLength"),
            "a 16-byte kB and a one-character client_id"),
)


def _fxa_kb(base: FxaBase) -> bytes:
    return Drbg(f"{FLOW}/fxakeys/{base.kb_label}")(base.kb_len)


def _fxa_case(base: FxaBase) -> Case:
    kb = _fxa_kb(base)
    salt = kd.fxakeys_salt(kb)
    return Case(
        id=f"kd-fxakeys-{base.name}",
        comment=base.comment,
        flags=base.flags,
        requirements=("KD-8",),
        operation=OP_FXAKEYS_APPLICATION_KEY,
        inputs={"kb": kb, "client_id": base.client_id},
        intermediates={"salt": salt, "info": base.client_id.encode("utf-8"),
                       "prk": primitives.hkdf_extract(salt, kb)},
        outputs={"kbr": kd.fxakeys_application_key_hex(kb, base.client_id)},
    )


def _fxa_negatives() -> list[Case]:
    return [Case("kd-fxakeys-kbr-0/kb-empty", "kB is empty", ("EmptyKb",), ("KD-8",),
                 OP_FXAKEYS_APPLICATION_KEY, {"kb": b"", "client_id": "5901bd09376fe0e9"},
                 failure=Failure("length", "compat"))]


# --- files ----------------------------------------------------------------------------------

def generate() -> list[VectorFile]:
    v1_cases: list[Case] = []
    for app in APP_BASES:
        v1_cases.append(_app_key_case(app))
    for pw in PASSWORD_BASES:
        v1_cases.append(_password_key_case(pw))
    for app in APP_BASES:
        v1_cases.extend(_app_key_negatives(app))
    for pw in PASSWORD_BASES:
        v1_cases.extend(_password_negatives(pw))
    fxa_cases = [_fxa_case(base) for base in FXA_BASES] + _fxa_negatives()
    return [
        VectorFile(schema_name=FLOW, flow=FLOW, profile="v1",
                   source_labels=(f"Drbg('{FLOW}/v1/<case>') draws kB (32 bytes) or the salt "
                                  "(16 bytes); a one-byte extension draws from "
                                  "'<label>/extra-byte'"),
                   notes=NOTES_V1, cases=v1_cases),
        VectorFile(schema_name=f"{FLOW}.fxakeys", flow=FLOW, profile="fxakeys",
                   source_labels=(f"Drbg('{FLOW}/fxakeys/<case>') draws kB; cases flagged "
                                  "SharedKb reuse the label of the case they share kB with"),
                   notes=NOTES_FXAKEYS, cases=fxa_cases),
    ]


# --- verification: the consumer side ---------------------------------------------------------

def _verify_application_key(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    kb, client_id = hx(inputs["kb"], "kb"), inputs["client_id"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kd.application_key(kb, client_id))
    return compare(case,
                   intermediates={"info": kd.application_key_info(client_id),
                                  "prk": primitives.hkdf_extract(b"", kb)},
                   outputs={"kbr": kd.application_key(kb, client_id)})


def _verify_password_key(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    password, salt = inputs["password"], hx(inputs["salt"], "salt")
    params = kd.Argon2Params(t=inputs["t"], m=inputs["m"], p=inputs["p"])
    user_id, client_id = inputs["user_id"], inputs["client_id"]
    if case["result"] == "invalid":
        # The whole consumer entry point: it must refuse before running Argon2id.
        return expect_rejection(
            case, lambda: kd.password_key(password, salt, params, user_id, client_id))
    info = kd.password_key_info(user_id, client_id)
    stretched = stretch(password, salt, params)
    return compare(case,
                   intermediates={"normalized": kd.normalize_password(password),
                                  "stretched": stretched, "info": info,
                                  "prk": primitives.hkdf_extract(b"", stretched)},
                   outputs={"pwk": kd.password_key_from_stretched(stretched, user_id,
                                                                  client_id)})


def _verify_fxakeys_application_key(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    kb, client_id = hx(inputs["kb"], "kb"), inputs["client_id"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kd.fxakeys_application_key_hex(kb, client_id))
    salt = kd.fxakeys_salt(kb)
    return compare(case,
                   intermediates={"salt": salt, "info": client_id.encode("utf-8"),
                                  "prk": primitives.hkdf_extract(salt, kb)},
                   outputs={"kbr": kd.fxakeys_application_key_hex(kb, client_id)})


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_APPLICATION_KEY): _verify_application_key,
    ("v1", OP_PASSWORD_KEY): _verify_password_key,
    ("fxakeys", OP_FXAKEYS_APPLICATION_KEY): _verify_fxakeys_application_key,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
