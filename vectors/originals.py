"""What the original systems did with the inputs of the compatibility profiles.

A compatibility profile reproduces an original's bytes exactly, but its consumer side is
stricter in places. For every case of a compat file, a model of the original's consumer
(written from its public source, cited below) says whether the original accepts the
input or where it rejects it. `annotate` then marks each negative case:

- StricterThanOriginal: the original's same operation accepts the input; the comment
  says what the original does with it (and where, if anywhere, it fails later);
- OriginalRejectsElsewhere: the original rejects it too, at another step (failure
  class); the comment names that step.

A model must accept every valid case (where it computes an output, the same output), so
a profile cannot drift from the original unnoticed. Every header lists the original's
system, revision, sources and the operations no file of the profile covers. A compat
operation with negative cases and no model stops generation: say what the original did.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyflows.vectors.framework import Case, Flag, VectorFile

STRICTER = "StricterThanOriginal"
ELSEWHERE = "OriginalRejectsElsewhere"

FLAGS = {
    STRICTER: Flag(
        "The original accepted this input; this profile rejects it. The comment says what "
        "the original did with it (and where, if anywhere, it failed later).",
        "Reject it. A port of the original accepts it: this case is where such a port "
        "departs from the profile, by design."),
    ELSEWHERE: Flag(
        "The original rejected this input too, but at another step; the comment names it.",
        "Reject it. A port that keeps the original's order of checks reports the other "
        "failure class: the outcome agrees, the step does not."),
}


class OriginalsError(ValueError):
    """A compat file the models of the originals cannot account for."""


@dataclass(frozen=True)
class Verdict:
    """What the original's consumer does with a case's inputs."""

    accepts: bool
    failure_class: str  # where it rejects, in the profile's failure classes; "" if it accepts
    behaviour: str  # one clause, what the original does
    outputs: Mapping[str, str] | None = None  # what it computes, when the model computes it


def accepts(behaviour: str, outputs: Mapping[str, str] | None = None) -> Verdict:
    return Verdict(True, "", behaviour, outputs)


def rejects(failure_class: str, behaviour: str) -> Verdict:
    return Verdict(False, failure_class, behaviour)


Model = Callable[[Mapping[str, Any]], Verdict]


@dataclass(frozen=True)
class Operation:
    """An operation of the original and the vector operations that cover it."""

    name: str
    covered_by: tuple[str, ...] = ()
    why_not: str = ""


@dataclass(frozen=True)
class Original:
    system: str
    revision: str
    sources: str
    operations: tuple[Operation, ...]
    models: Mapping[str, Model]

    def header(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "revision": self.revision,
            "sources": self.sources,
            "not_covered": [{"operation": op.name, "why": op.why_not}
                            for op in self.operations if not op.covered_by],
        }


# --- Go's encoding/base64, as the Mute and trustbloc originals call it ------------------------

_STD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def go_base64_decode(text: str, alphabet: frozenset[int]) -> bytes:
    """Go's (padded, non-strict) Encoding.DecodeString: CR and LF are skipped anywhere,
    padding is required, unused trailing bits are ignored. ValueError otherwise."""
    data = text.replace("\r", "").replace("\n", "").encode("utf-8")
    body = data.rstrip(b"=")
    if any(byte not in alphabet for byte in body) or len(data) % 4 or len(data) - len(body) > 2:
        raise ValueError("illegal base64 data")
    std = body.translate(bytes.maketrans(b"-_", b"+/")) if alphabet is _URL else body
    try:
        return base64.b64decode(std + b"=" * (len(data) - len(body)), validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


# --- fxakeys: tarekziade/fxakeys, fxakeys/crypto.py and fxakeys/client/keys.py -----------------

def _fxakeys_kbr(inputs: Mapping[str, Any]) -> Verdict:
    """crypto.get_kBr: HKDF-SHA256(kB, salt = "0" * len(kB), info = client_id), hex.
    Nothing checks kB: an empty kB gives an empty salt and a key all the same."""
    kb = bytes.fromhex(inputs["kb"])
    kbr = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"0" * len(kb),
               info=str(inputs["client_id"]).encode()).derive(kb)
    if not kb:
        return accepts(f"get_kBr derives kBr {kbr.hex()} from the empty kB (salt empty too)",
                       {"kbr": kbr.hex()})
    return accepts("get_kBr derives kBr", {"kbr": kbr.hex()})


def _fxakeys_seal(inputs: Mapping[str, Any]) -> Verdict:
    """crypto.encrypt_data(hex(private key), kBr): hex(nonce || SecretBox(...))."""
    box = nacl.secret.SecretBox(binascii.unhexlify(inputs["kbr"]))
    plaintext = binascii.hexlify(bytes.fromhex(inputs["x25519_private"]))
    sealed = box.encrypt(plaintext, bytes.fromhex(inputs["nonce"]))
    return accepts("encrypt_data seals the hex text of the key",
                   {"enc_priv_key": binascii.hexlify(bytes(sealed)).decode()})


def _fxakeys_open(inputs: Mapping[str, Any]) -> Verdict:
    """client.keys.AppUser.get_key -> crypto.decrypt_data(encPrivKey, kBr): unhexlify,
    SecretBox.decrypt, and the plaintext kept as the private key without a check; it is
    decoded (binascii.unhexlify) only when the key is first used (public_encrypt)."""
    text = str(inputs["enc_priv_key"])
    try:
        data = binascii.unhexlify(text)
    except (binascii.Error, ValueError) as exc:
        return rejects("decode", f"binascii.unhexlify refuses it ({exc})")
    try:
        plaintext = nacl.secret.SecretBox(binascii.unhexlify(inputs["kbr"])).decrypt(data)
    except nacl.exceptions.CryptoError:
        return rejects("aead", "SecretBox.decrypt refuses it (the MAC does not verify)")
    upper = "upper-case hex; binascii.unhexlify reads upper case" if text != text.lower() \
        else ""
    try:
        key = binascii.unhexlify(plaintext)
    except (binascii.Error, ValueError):
        return accepts("decrypt_data returns the plaintext unchecked as the private key; it "
                       "fails only later, when the first public_encrypt unhexlifies it")
    if len(key) != 32:
        return accepts(f"decrypt_data returns a {len(key)}-byte key unchecked; NaCl refuses "
                       "it only when it is first used")
    if plaintext != plaintext.lower():
        return accepts("decrypt_data returns the upper-case hex text, and unhexlify reads it "
                       "as the same key: the original works with it",
                       {"x25519_private": key.hex()})
    return accepts(f"decrypt_data opens it{' (' + upper + ')' if upper else ''}",
                   {"x25519_private": key.hex()})


FXAKEYS = Original(
    system="tarekziade/fxakeys",
    revision="facad48d518d4818b1069960640682608da5a201",
    sources="fxakeys/crypto.py, fxakeys/client/keys.py, API.rst",
    operations=(
        Operation("crypto.get_kBr", ("fxakeys-application-key",)),
        Operation("crypto.generate_keypair with crypto.encrypt_data (encPrivKey)",
                  ("fxakeys-enc-priv-key",)),
        Operation("crypto.decrypt_data (the owner opens encPrivKey)",
                  ("fxakeys-open-enc-priv-key",)),
        Operation("crypto.SymmetricBox",
                  why_not="a wrapper of encrypt_data/decrypt_data refusing a secret that is "
                          "not 64 hex characters; no flow uses it"),
        Operation("crypto.public_encrypt, crypto.public_decrypt",
                  why_not="NaCl Box between two users' keys: the envelope flow replaces it "
                          "(per-device HPKE Auth mode); a vector would test NaCl, not keyflows"),
        Operation("crypto.stream_encrypt, crypto.stream_decrypt, crypto.sym_stream_encrypt, "
                  "crypto.sym_stream_decrypt",
                  why_not="file sharing as a Box (or SecretBox) per 256 KiB chunk with a "
                          "decimal chunk index appended: truncation goes unnoticed; the "
                          "envelope flow's chunked payloads replace it"),
        Operation("HTTP GET/POST/DELETE /<email>/apps/<appid>/key, GET /<email>/apps",
                  why_not="the profiles are vector-only; the keypair-publication chapter's "
                          "HTTP operations replace these routes (the original served "
                          "encPrivKey to anyone)"),
    ),
    models={"fxakeys-application-key": _fxakeys_kbr, "fxakeys-enc-priv-key": _fxakeys_seal,
            "fxakeys-open-enc-priv-key": _fxakeys_open},
)


# --- mute: mutecomm/mute, keyserver/hashchain/hashchain.go and cryptengine/hashchain.go -------

_MUTE_ENTRY = 153


def _mute_split(text: str) -> tuple[bytes, str, str]:
    """keyserver/hashchain.SplitEntry: base64.StdEncoding (via encode/base64), 153 bytes,
    TYPE 0x01. Returns (entry, failure class, behaviour); the class is "" when it splits."""
    try:
        entry = go_base64_decode(text, _STD)
    except ValueError:
        return b"", "decode", "SplitEntry: base64.StdEncoding.DecodeString refuses it"
    if len(entry) != _MUTE_ENTRY:
        return b"", "length", f"SplitEntry refuses {len(entry)} bytes (not 153)"
    if entry[32:33] != b"\x01":
        return b"", "decode", f"SplitEntry refuses TYPE 0x{entry[32]:02x}"
    skipped = " (Go's decoder skips the line break)" if "\n" in text or "\r" in text else ""
    return entry, "", f"SplitEntry splits it{skipped}"


def _mute_parse(inputs: Mapping[str, Any]) -> Verdict:
    _entry, failure, behaviour = _mute_split(str(inputs["text"]))
    return rejects(failure, behaviour) if failure else accepts(behaviour)


def _mute_verify(inputs: Mapping[str, Any]) -> Verdict:
    """cryptengine.validateHashChain: positions 0..max; HASH(entry n) = SHA-256(TYPE |
    NONCE | HashID | CrUID | UIDIndex | HASH(entry n-1)), 32 zero bytes before entry 0."""
    previous = bytes(32)
    for position, text in enumerate(inputs["texts"]):
        entry, failure, behaviour = _mute_split(str(text))
        if failure:
            return rejects(failure, f"validateHashChain at entry {position}: {behaviour}")
        if entry[:32] != hashlib.sha256(entry[32:] + previous).digest():
            return rejects("link", f"validateHashChain: hash chain entry {position} invalid")
        previous = entry[:32]
    return accepts("validateHashChain accepts the chain")


def _same_as_spec(reference: str) -> Model:
    """The profile's consumer is a port of the original's, held to its published tests:
    the original rejects where the profile does."""

    def model(inputs: Mapping[str, Any]) -> Verdict:
        return Verdict(True, "=", reference)

    return model


MUTE = Original(
    system="mutecomm/mute",
    revision="8121965e6779441e0d83339ef41182d792f4d967",
    sources="cipher/ckdf.go, keyserver/hashchain/hashchain.go, cryptengine/hashchain.go, "
            "uid/identity/identity.go, doc/ciphers.md",
    operations=(
        Operation("cipher.CKDF", ("ckdf",)),
        Operation("the entry: HashID, CrUID, UIDIndex and HASH(entry n)", ("build-entry",)),
        Operation("keyserver/hashchain.SplitEntry", ("parse-entry",)),
        Operation("cryptengine.validateHashChain", ("verify-chain", "accumulated-chain")),
        Operation("cryptengine.searchHashChain, cryptengine.lookupHashChain", ("lookup",)),
        Operation("uid/identity.Map", ("map-identity",)),
        Operation("UIDMessage signatures (SELFSIGNATURE, USERSIGNATURE, ESCROWSIGNATURE) and "
                  "the server's SERVERSIGNATURE on replies",
                  why_not="Ed25519 over the original's canonical JSON; the hashchain flow "
                          "defines its own UID records (a known bug compared a server "
                          "signature with itself)"),
        Operation("KeyInit messages (KeyInitRepository.AddKeyInit, FetchKeyInit, "
                  "FlushKeyInit)",
                  why_not="the hashchain flow's one-time KeyInits have their own format"),
        Operation("JSON-RPC methods (KeyRepository.*, KeyHashchain.*, KeyInitRepository.*) "
                  "and payment tokens",
                  why_not="the profiles are vector-only; the hashchain chapter's HTTP "
                          "operations replace the transport"),
    ),
    models={"parse-entry": _mute_parse, "verify-chain": _mute_verify,
            "map-identity": _same_as_spec(
                "identity.Map, which keyflows.spec.hashchain_mute ports and checks against "
                "the original's published tests")},
)


# --- trustbloc: trustbloc/kms with hyperledger/aries-framework-go's secret locks --------------

_GCM_NONCE = 12


def _trustbloc_open(inputs: Mapping[str, Any]) -> Verdict:
    """aries-framework-go masterlock/hkdf masterLockHKDF.Decrypt (layer lock) and
    secretlock/local Lock.Decrypt (layer primary): base64.URLEncoding, more than the
    nonce, AES-256-GCM Open; the plaintext is returned whatever its length."""
    text = str(inputs["text"])
    try:
        sealed = go_base64_decode(text, _URL)
    except ValueError:
        return rejects("decode", "Decrypt: base64.URLEncoding.DecodeString refuses it")
    if len(sealed) <= _GCM_NONCE:
        return rejects("length", "Decrypt refuses it (\"invalid request\": not more than "
                                 "the nonce)")
    try:
        plaintext = AESGCM(bytes.fromhex(inputs["key"])).decrypt(
            sealed[:_GCM_NONCE], sealed[_GCM_NONCE:], b"")
    except InvalidTag:
        return rejects("aead", "Decrypt: the AES-GCM Open fails (message authentication "
                               "failed)")
    if inputs.get("layer") == "lock" and len(plaintext) != 32:
        return accepts(f"Decrypt returns the {len(plaintext)} bytes as the primary key; it "
                       "fails only later, when AES-GCM is keyed with it (invalid key size)")
    skipped = " (Go's decoder skips the line break)" if "\n" in text or "\r" in text else ""
    return accepts(f"Decrypt opens it{skipped}", {"plaintext": plaintext.hex()})


TRUSTBLOC = Original(
    system="trustbloc/kms with hyperledger/aries-framework-go "
           "v0.1.7-0.20210526123422-eec182deab9a (its pinned secret locks)",
    revision="cb168140ce91b931b97b848b0cfaa476a4f2e669",
    sources="pkg/secretlock/secretsplitlock/secret_split_lock.go; aries-framework-go "
            "pkg/secretlock/local/masterlock/hkdf/hkdf.go and pkg/secretlock/local/lock.go; "
            "hashicorp/vault shamir",
    operations=(
        Operation("shamir.Split (Vault layout)", ("trustbloc-split",)),
        Operation("shamir.Combine, then hkdf.NewMasterLock (HKDF-SHA256, no salt or info)",
                  ("trustbloc-lock-key",)),
        Operation("masterLockHKDF.Encrypt, masterLockHKDF.Decrypt (the lock seals the "
                  "primary key)", ("trustbloc-seal", "trustbloc-open")),
        Operation("secretlock/local Lock.Encrypt, Lock.Decrypt (the primary key seals key "
                  "material)", ("trustbloc-seal", "trustbloc-open")),
        Operation("the auth server's share: GET {authURL}/secret?sub= -> {\"secret\": "
                  "standard base64}",
                  why_not="an HTTP exchange, not bytes to reproduce; the runner's account "
                          "server plays that part in v1"),
        Operation("key operations over Tink keysets: create, sign, verify, encrypt, decrypt, "
                  "computemac, verifymac, wrap (ECDH-ES, ECDH-1PU), unwrap, rotate, export",
                  why_not="the lock-layering flow defines its own key operations; Tink's "
                          "keyset serialisation and JWE wrapping are not reproduced"),
        Operation("ZCAP-LD capabilities invoked with HTTP signatures",
                  why_not="v1 uses its own attenuable capability tokens and RFC 9421 "
                          "signatures"),
        Operation("REST: /v1/keystores, /v1/keystores/{id}/keys and per-key operations",
                  why_not="the profiles are vector-only; the lock-layering chapter's HTTP "
                          "operations replace them"),
    ),
    models={"trustbloc-open": _trustbloc_open},
)

ORIGINALS: dict[str, Original] = {"fxakeys": FXAKEYS, "mute": MUTE, "trustbloc": TRUSTBLOC}


# --- annotating a compat file ------------------------------------------------------------------

def annotate(vector_file: VectorFile) -> VectorFile:
    """The file with every negative case marked against the original and its header
    naming the original; files of profile v1 come back unchanged."""
    original = ORIGINALS.get(vector_file.profile)
    if original is None:
        return vector_file
    cases = [_annotate_case(vector_file, original, case) for case in vector_file.cases]
    used = {flag for case in cases for flag in case.flags}
    notes = dict(vector_file.notes)
    notes.update({flag: FLAGS[flag] for flag in (STRICTER, ELSEWHERE) if flag in used})
    return replace(vector_file, cases=cases, notes=notes, original=original.header())


def check_coverage(files: Sequence[VectorFile]) -> None:
    """Every vector operation an original's table names exists in a file of the profile,
    so a renamed or dropped operation cannot leave the header's list stale."""
    for profile, original in ORIGINALS.items():
        present = {case.operation for f in files if f.profile == profile for case in f.cases}
        if not present:
            continue
        for op in original.operations:
            missing = [name for name in op.covered_by if name not in present]
            if missing:
                raise OriginalsError(
                    f"profile {profile}: {op.name} is said to be covered by "
                    f"{', '.join(missing)}, which no file of the profile has; update "
                    "keyflows.vectors.originals")


def _annotate_case(vector_file: VectorFile, original: Original, case: Case) -> Case:
    model = original.models.get(case.operation)
    where = f"{vector_file.file_name}: case {case.id}"
    if model is None:
        if case.failure is not None:
            raise OriginalsError(
                f"{where}: no model of what {original.system} does for operation "
                f"{case.operation!r}; add one to keyflows.vectors.originals")
        return case
    verdict = model({k: _plain(v) for k, v in case.inputs.items()})
    if verdict.failure_class == "=":  # a port held to the original's own tests
        return case
    if case.failure is None:
        if not verdict.accepts:
            raise OriginalsError(f"{where}: the original rejects this valid case "
                                 f"({verdict.behaviour})")
        for name, value in (verdict.outputs or {}).items():
            expected = _plain(case.outputs.get(name))
            if expected != value:
                raise OriginalsError(f"{where}: the original computes {name} {value}, the "
                                     f"case has {expected}")
        return case
    if verdict.accepts:
        return _marked(case, STRICTER, f"the original accepts it: {verdict.behaviour}")
    if verdict.failure_class != case.failure.failure_class:
        return _marked(case, ELSEWHERE, f"the original rejects it as "
                                        f"{verdict.failure_class} instead: {verdict.behaviour}")
    return case


def _marked(case: Case, flag: str, note: str) -> Case:
    flags = case.flags if flag in case.flags else (*case.flags, flag)
    return replace(case, flags=flags, comment=f"{case.comment}; {note}")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
