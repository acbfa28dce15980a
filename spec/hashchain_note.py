"""Flow hashchain, step 5: checkpoints as C2SP signed notes, and witness cosignatures.

A checkpoint (c2sp.org/tlog-checkpoint) is the text

    <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n

signed as a note (c2sp.org/signed-note): the text, an empty line, then one line per
signature, "\u2014 <key name> <base64(key ID (4) || signature)>\\n". The log signs with
Ed25519 (signature type 0x01, key name = origin); a witness adds a timestamped Ed25519
cosignature (c2sp.org/tlog-cosignature, type 0x04) over "cosignature/v1\\ntime <t>\\n"
followed by the checkpoint text. Verifiers ignore signatures from keys they do not know
(HC-38), refuse a note in which a known key's signature fails, and require a quorum of
the witnesses they trust (HC-41). Sans-I/O: bytes in, records out; "now" is a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keyflows.spec import primitives
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    ParamsError,
    SignatureError,
    WitnessError,
)

EM_DASH = "\u2014"
SIG_ED25519 = 0x01
SIG_COSIGNATURE = 0x04
KEY_ID_LEN = 4
TIMESTAMP_LEN = 8
COSIGNATURE_HEADER = "cosignature/v1"
#: A note is at most this many bytes and signatures; signed-note asks for at least 16.
MAX_NOTE_LEN = 64 * 1024
MAX_SIGNATURES = 100
MAX_TIMESTAMP = 2**63 - 1
MAX_SIZE = 2**63 - 1
#: A cosignature may be dated this far in the future (clock skew between parties).
MAX_CLOCK_SKEW = 300

_KEY_NAME = re.compile(r"\A[^\s+]+\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


# --- base64 as the C2SP formats write it: standard alphabet, padded, canonical ------------

def b64std_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str, *, what: str, requirement: str) -> bytes:
    """Strict standard base64: padded, no whitespace, unused bits zero (one text per value)."""
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise DecodeError(f"{what} is not standard base64", requirement=requirement) from exc
    if b64std_encode(data) != text:
        raise DecodeError(f"{what} is not canonical standard base64", requirement=requirement)
    return data


def parse_decimal(text: str, *, what: str, requirement: str, maximum: int = MAX_SIZE) -> int:
    """A C2SP decimal: ASCII digits, no leading zero (except 0 itself), at most 2^63 - 1."""
    if not _DECIMAL.match(text) or int(text) > maximum:
        raise DecodeError(f"{what} is not a decimal without leading zeros in 0..2^63-1",
                          requirement=requirement)
    return int(text)


# --- keys ---------------------------------------------------------------------------------

def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note: SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type])
                          + public_key).digest()[:KEY_ID_LEN]


def check_key_name(name: str, *, requirement: str = "HC-38") -> str:
    if not isinstance(name, str) or not _KEY_NAME.match(name) or _CONTROL.search(name):
        raise DecodeError("a key name must be non-empty, without spaces or '+'",
                          requirement=requirement)
    return name


@dataclass(frozen=True)
class Verifier:
    """A key a verifier trusts: name, signature type (0x01 log, 0x04 witness), public key."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    @property
    def vkey(self) -> str:
        """signed-note verifier key: <name>+<hex key ID>+<base64(type || public key)>."""
        return (f"{self.name}+{self.key_id.hex()}+"
                f"{b64std_encode(bytes([self.sig_type]) + self.public_key)}")


def log_verifier(name: str, public_key: bytes) -> Verifier:
    check_key_name(name)
    primitives.check_ed25519_public_key(public_key, requirement="HC-38")
    return Verifier(name=name, sig_type=SIG_ED25519, public_key=public_key)


def witness_verifier(name: str, public_key: bytes) -> Verifier:
    check_key_name(name, requirement="HC-39")
    primitives.check_ed25519_public_key(public_key, requirement="HC-39")
    return Verifier(name=name, sig_type=SIG_COSIGNATURE, public_key=public_key)


def parse_vkey(text: str) -> Verifier:
    """Read a verifier key; its key ID must be the one its name and key give (HC-38)."""
    # The name holds no '+', the key ID is hex, the base64 key material may hold '+'.
    parts = text.split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise DecodeError("a vkey is <name>+<8 hex digits>+<base64>", requirement="HC-38")
    name = check_key_name(parts[0])
    material = b64std_decode(parts[2], what="vkey key material", requirement="HC-38")
    if len(material) != 33 or material[0] not in (SIG_ED25519, SIG_COSIGNATURE):
        raise DecodeError("a vkey holds an Ed25519 key of type 0x01 or 0x04",
                          requirement="HC-38")
    verifier = (log_verifier if material[0] == SIG_ED25519 else witness_verifier)(
        name, material[1:])
    if verifier.key_id.hex() != parts[1]:
        raise BindingError("the vkey's key ID is not that of its name and key",
                           requirement="HC-38")
    return verifier


# --- notes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # after the key ID: 64 bytes (0x01) or 8 + 64 bytes (0x04)

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {b64std_encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def parse_note(data: bytes) -> Note:
    """signed-note: UTF-8 without control characters but newline; the text ends with a
    newline; the last empty line separates it from one or more signature lines (HC-38)."""
    if len(data) > MAX_NOTE_LEN:
        raise LengthError(f"a note is at most {MAX_NOTE_LEN} bytes", requirement="HC-38")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("a note is not UTF-8", requirement="HC-38") from exc
    if _CONTROL.search(text):
        raise DecodeError("a note contains a control character", requirement="HC-38")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise DecodeError("a note has no empty line before its signatures",
                          requirement="HC-38")
    body, block = text[:split + 1], text[split + 2:]
    lines = block[:-1].split("\n") if block else []
    if not lines:
        raise DecodeError("a note has no signature line", requirement="HC-38")
    if len(lines) > MAX_SIGNATURES:
        raise LengthError(f"a note carries at most {MAX_SIGNATURES} signatures",
                          requirement="HC-38")
    return Note(text=body, signatures=tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != EM_DASH:
        raise DecodeError("a signature line is '\u2014 <name> <base64>'", requirement="HC-38")
    name = check_key_name(parts[1])
    raw = b64std_decode(parts[2], what="a note signature", requirement="HC-38")
    if len(raw) <= KEY_ID_LEN:
        raise LengthError("a note signature is a key ID and a signature",
                          requirement="HC-38")
    return NoteSignature(name=name, key_id=raw[:KEY_ID_LEN], signature=raw[KEY_ID_LEN:])


def signature_lines(data: bytes) -> tuple[NoteSignature, ...]:
    """Signature lines alone (a witness's add-checkpoint answer), parsed as in a note:
    UTF-8, at most MAX_NOTE_LEN bytes, each line ending with a newline. A control
    character can only sit in a line's dash, name or base64 field, and each refuses it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("signature lines are not UTF-8", requirement="HC-40") from exc
    if not text.endswith("\n") or len(data) > MAX_NOTE_LEN:
        raise DecodeError("signature lines end with a newline, at most "
                          f"{MAX_NOTE_LEN} bytes in all", requirement="HC-40")
    return tuple(_parse_signature_line(line) for line in text[:-1].split("\n"))


def sign_note_text(text: str, *, name: str, seed: bytes) -> NoteSignature:
    """An Ed25519 note signature (type 0x01) over the text, newline included."""
    public = primitives.ed25519_public_key(seed)
    return NoteSignature(name=name, key_id=key_id(name, SIG_ED25519, public),
                         signature=primitives.ed25519_sign(seed, text.encode("utf-8")))


def _matches(sig: NoteSignature, verifier: Verifier) -> bool:
    return sig.name == verifier.name and sig.key_id == verifier.key_id


def _verify_one(text: str, sig: NoteSignature, verifier: Verifier) -> int | None:
    """Verify one known signature; returns the cosignature's timestamp (None for 0x01)."""
    if verifier.sig_type == SIG_ED25519:
        primitives.ed25519_verify(verifier.public_key, text.encode("utf-8"), sig.signature,
                                  requirement="HC-38")
        return None
    # A cosignature is u64be(timestamp) || a 64-byte signature: ed25519_verify refuses
    # any other length of what follows the 8 timestamp bytes (LengthError).
    timestamp = int.from_bytes(sig.signature[:TIMESTAMP_LEN], "big")
    if timestamp > MAX_TIMESTAMP:
        raise DecodeError("a cosignature timestamp is above 2^63 - 1", requirement="HC-39")
    primitives.ed25519_verify(verifier.public_key, cosignature_message(timestamp, text),
                              sig.signature[TIMESTAMP_LEN:], requirement="HC-39")
    return timestamp


@dataclass(frozen=True)
class Verified:
    """A signature by a known key that verified (timestamp: cosignatures only)."""

    verifier: Verifier
    timestamp: int | None
    signature: NoteSignature


def verify_note(note: Note, verifiers: Iterable[Verifier]) -> list[Verified]:
    """HC-38: check every signature of a known key (name and key ID both match), ignore
    the others; refuse the note if a known signature fails or none is known."""
    known = list(verifiers)
    out: list[Verified] = []
    for sig in note.signatures:
        for verifier in known:
            if _matches(sig, verifier):
                out.append(Verified(verifier, _verify_one(note.text, sig, verifier), sig))
    if not out:
        raise SignatureError("no signature of the note is by a known key",
                             requirement="HC-38")
    return out


# --- checkpoints ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """tlog-checkpoint: origin, size, base64 root hash, extension lines; each ends \\n."""
        lines = [self.origin, str(self.size), b64std_encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """tlog-checkpoint (HC-38): at least three non-empty lines; decimal size; 32-byte root."""
    if not text.endswith("\n"):
        raise DecodeError("a checkpoint ends with a newline", requirement="HC-38")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise DecodeError("a checkpoint is origin, size and root hash, non-empty lines",
                          requirement="HC-38")
    size = parse_decimal(lines[1], what="the checkpoint size", requirement="HC-38")
    root = b64std_decode(lines[2], what="the checkpoint root hash", requirement="HC-38")
    if len(root) != 32:
        raise LengthError("the checkpoint root hash is not 32 bytes", requirement="HC-38")
    return Checkpoint(origin=lines[0], size=size, root_hash=root, extensions=tuple(lines[3:]))


def sign_checkpoint(checkpoint: Checkpoint, *, seeds: Sequence[bytes]) -> Note:
    """The log signs a checkpoint with each key in force (key name = origin, HC-38)."""
    text = checkpoint.text()
    return Note(text=text, signatures=tuple(sign_note_text(text, name=checkpoint.origin,
                                                           seed=seed) for seed in seeds))


def cosignature_message(timestamp: int, checkpoint_text: str) -> bytes:
    """tlog-cosignature: "cosignature/v1\\ntime <t>\\n" || checkpoint text (HC-39)."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_text: str, *, name: str, seed: bytes, timestamp: int) -> NoteSignature:
    """A witness's timestamped cosignature (type 0x04, HC-39)."""
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise ParamsError("a cosignature timestamp is in 1..2^63-1", requirement="HC-39")
    public = primitives.ed25519_public_key(seed)
    signature = primitives.ed25519_sign(seed, cosignature_message(timestamp, checkpoint_text))
    return NoteSignature(name=name, key_id=key_id(name, SIG_COSIGNATURE, public),
                         signature=timestamp.to_bytes(TIMESTAMP_LEN, "big") + signature)


def add_signatures(note: Note, extra: Iterable[NoteSignature]) -> Note:
    """The note with more signature lines, each (name, key ID) at most once."""
    seen = {(s.name, s.key_id) for s in note.signatures}
    merged = list(note.signatures)
    for sig in extra:
        if (sig.name, sig.key_id) not in seen:
            seen.add((sig.name, sig.key_id))
            merged.append(sig)
    return Note(text=note.text, signatures=tuple(merged))


@dataclass(frozen=True)
class WitnessPolicy:
    """The client's witness policy (HC-41): `quorum` of `witnesses`, each cosignature no
    older than `max_age` seconds at `now` (None: no age limit)."""

    witnesses: tuple[Verifier, ...] = ()
    quorum: int = 0
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise ParamsError("the quorum is at most the number of witnesses",
                              requirement="HC-41")
        if any(w.sig_type != SIG_COSIGNATURE for w in self.witnesses):
            raise ParamsError("witness keys are cosignature keys (type 0x04)",
                              requirement="HC-41")


#: A policy that asks for no cosignature (a client without witnesses, or tests).
NO_WITNESSES = WitnessPolicy()


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    note: Note
    cosigned_by: tuple[str, ...]  # names of the policy's witnesses whose cosignature counted


def verify_checkpoint(data: bytes, *, origin: str, log_keys: Sequence[Verifier],
                      policy: WitnessPolicy | None = None, now: int | None = None
                      ) -> VerifiedCheckpoint:
    """Step 5 (HC-38, HC-41), in order: the note parses; the text is a checkpoint of this
    origin; a log key signed it; every known cosignature verifies; at least `quorum`
    distinct witnesses of the policy cosigned it, within the age limit."""
    note = parse_note(data)
    checkpoint = parse_checkpoint_text(note.text)
    if checkpoint.origin != origin:
        raise BindingError(f"the checkpoint is for origin {checkpoint.origin!r}, not "
                           f"{origin!r}", requirement="HC-38")
    if any(k.sig_type != SIG_ED25519 for k in log_keys):
        raise ParamsError("log keys are Ed25519 note keys (type 0x01)", requirement="HC-38")
    verify_note(note, log_keys)
    policy = NO_WITNESSES if policy is None else policy
    cosigned = _cosigned(note, policy, now)
    if len(cosigned) < policy.quorum:
        raise WitnessError(f"{len(cosigned)} of the {policy.quorum} required witness "
                           "cosignatures", requirement="HC-41")
    return VerifiedCheckpoint(checkpoint=checkpoint, note=note, cosigned_by=tuple(cosigned))


def _cosigned(note: Note, policy: WitnessPolicy, now: int | None) -> list[str]:
    names: list[str] = []
    stale = False
    for sig in note.signatures:
        for witness in policy.witnesses:
            if not _matches(sig, witness):
                continue
            timestamp = _verify_one(note.text, sig, witness)
            assert timestamp is not None
            if now is not None and timestamp > now + MAX_CLOCK_SKEW:
                raise ExpiredError("a cosignature is dated in the future", requirement="HC-41")
            if now is not None and policy.max_age is not None and now - timestamp > \
                    policy.max_age:
                stale = True
                continue
            if witness.name not in names:
                names.append(witness.name)
    if stale and len(names) < policy.quorum:
        raise ExpiredError("too few witness cosignatures are recent enough",
                           requirement="HC-41")
    return names


# --- tlog-proof: an offline-verifiable inclusion proof (c2sp.org/tlog-proof) -----------------

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class TlogProof:
    """The index of an entry, its inclusion proof and the checkpoint (a note) it proves
    inclusion in; `extra` is opaque and unauthenticated (HC-21)."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64std_encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64std_encode(h) for h in self.proof)
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint


def parse_tlog_proof(data: bytes) -> TlogProof:
    """tlog-proof: header, optional extra line, index line, proof lines, an empty line,
    then the checkpoint note verbatim (HC-21)."""
    split = data.find(b"\n\n")
    if split < 0:
        raise DecodeError("a tlog-proof has no empty line before its checkpoint",
                          requirement="HC-21")
    try:
        head = data[:split].decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise DecodeError("a tlog-proof header is not ASCII", requirement="HC-21") from exc
    if head[0] != TLOG_PROOF_HEADER:
        raise DecodeError(f"a tlog-proof starts with {TLOG_PROOF_HEADER}", requirement="HC-21")
    rest = head[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = b64std_decode(rest.pop(0)[6:], what="the tlog-proof extra data",
                              requirement="HC-21")
    if not rest or not rest[0].startswith("index "):
        raise DecodeError("a tlog-proof has an index line", requirement="HC-21")
    index = parse_decimal(rest[0][6:], what="the tlog-proof index", requirement="HC-21")
    if len(rest) - 1 > 64:
        raise LengthError("a tlog-proof has at most 64 proof lines", requirement="HC-21")
    proof = tuple(b64std_decode(line, what="a tlog-proof hash", requirement="HC-21")
                  for line in rest[1:])
    if any(len(h) != 32 for h in proof):
        raise LengthError("tlog-proof hashes are 32 bytes", requirement="HC-21")
    return TlogProof(index=index, proof=proof, checkpoint=data[split + 2:], extra=extra)
