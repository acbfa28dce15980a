"""Flow: hashchain, compatibility profile `mute` (byte-exact with mutecomm/mute).

The original Mute keyserver (2015) published a linear hash chain of 153-byte entries.
Everything here reproduces its bytes exactly, flaws included; profile v1
(keyflows.spec.hashchain) fixes them. Sources, all in the mutecomm/mute repository:
`cipher/ckdf.go` (CKDF), `doc/keyserver.md` ("Key HashChain operation", "Storing
UIDMessages"), `keyserver/hashchain/hashchain.go` (SplitEntry, TYPE 0x01, 153 bytes,
204 base64 characters), `cryptengine/hashchain.go` (validateHashChain: hash order and
the zero hash of entry 0; searchHashChain: the lookup), `cipher/aes256/aes256.go`
(CBC with the IV in front, no padding), `uid/identity/identity.go` (identity mapping).

Steps of the profile:
  M1. k1, k2 = CKDF(NONCE) (HC-30).
  M2. HashID = SHA-256(k1 | identity), IDKEY = SHA-256(k2 | identity),
      CrUID = IV | AES-256-CBC(IDKEY, IV, UIDHash), UIDHash = SHA-256(UIDMessage),
      UIDIndex = SHA-256(UIDHash) (HC-31).
  M3. Entry: HASH(n) | TYPE | NONCE | HashID | CrUID | UIDIndex, 153 bytes, with
      HASH(n) = SHA-256(TYPE | NONCE | HashID | CrUID | UIDIndex | HASH(n-1)) and 32 zero
      bytes as HASH(-1) (HC-32).
  M4. Wire form: padded standard base64, exactly 204 characters (HC-33).
  M5. Identity mapping (HC-34).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from keyflows.spec import primitives
from keyflows.spec.errors import AeadError, DecodeError, LengthError, LinkError

TYPE = 0x01
NONCE_LEN = 8
HASH_LEN = 32
CRUID_LEN = 48
ENTRY_LEN = 153
ENTRY_B64_LEN = 204
ZERO_HASH = bytes(HASH_LEN)
MAX_IDENTITY_LEN = 254
MIN_LOCALPART_LEN = 3
MAX_LOCALPART_LEN = 64

# Offsets of SplitEntry (keyserver/hashchain/hashchain.go).
_HASH = slice(0, 32)
_TYPE = 32
_NONCE = slice(33, 41)
_HASH_ID = slice(41, 73)
_CRUID = slice(73, 121)
_UID_INDEX = slice(121, 153)


# --- M1: CKDF ---------------------------------------------------------------------------

def ckdf(nonce: bytes) -> tuple[bytes, bytes]:
    """Step M1 (HC-30): the original's "cheap key derivation function", two 64-byte keys.

    a = SHA-512(nonce); a1 = a[:32]||a[:32]; a2 = a[32:]||a[32:];
    k1 = SHA-512((a1 ^ 0x5c..) || SHA-512(a2 ^ 0x36..));
    k2 = SHA-512((a2 ^ 0x5c..) || SHA-512(a1 ^ 0x36..)).
    """
    a = primitives.sha512(nonce)
    a1 = a[:32] * 2
    a2 = a[32:] * 2
    k1 = primitives.sha512(_xor_byte(a1, 0x5C) + primitives.sha512(_xor_byte(a2, 0x36)))
    k2 = primitives.sha512(_xor_byte(a2, 0x5C) + primitives.sha512(_xor_byte(a1, 0x36)))
    return k1, k2


def _xor_byte(data: bytes, pad: int) -> bytes:
    return bytes(b ^ pad for b in data)


# --- M2: the fields of an entry ------------------------------------------------------------

def hash_id(k1: bytes, mapped_identity: str) -> bytes:
    """Step M2 (HC-31): HashID = SHA-256(k1 | identity) over the mapped identity."""
    return primitives.sha256(k1 + mapped_identity.encode("utf-8"))


def id_key(k2: bytes, mapped_identity: str) -> bytes:
    """Step M2 (HC-31): IDKEY = SHA-256(k2 | identity)."""
    return primitives.sha256(k2 + mapped_identity.encode("utf-8"))


def uid_hash(uid_message_json: bytes) -> bytes:
    """Step M2 (HC-31): UIDHash = SHA-256(UIDMessage JSON as sent)."""
    return primitives.sha256(uid_message_json)


def uid_index(uid_hash_value: bytes) -> bytes:
    """Step M2 (HC-31): UIDIndex = SHA-256(UIDHash)."""
    return primitives.sha256(uid_hash_value)


def cr_uid(idkey: bytes, iv: bytes, uid_hash_value: bytes) -> bytes:
    """Step M2 (HC-31): CrUID = IV | AES-256-CBC(IDKEY, IV, UIDHash), no padding, 48 bytes."""
    if len(uid_hash_value) != HASH_LEN:
        raise LengthError("UIDHash must be 32 bytes", requirement="HC-31")
    return iv + primitives.aes256cbc_encrypt_nopad(idkey, iv, uid_hash_value)


def open_cr_uid(idkey: bytes, cruid: bytes) -> bytes:
    """Step M2, client side: UIDHash = AES-256-CBC-Decrypt(IDKEY, CrUID). Unauthenticated:
    a wrong key yields garbage, which only the later UIDIndex comparison can catch."""
    if len(cruid) != CRUID_LEN:
        raise LengthError("CrUID must be 48 bytes", requirement="HC-31")
    return primitives.aes256cbc_decrypt_nopad(idkey, cruid[:16], cruid[16:])


# --- M3: entries and the chain ---------------------------------------------------------------

@dataclass(frozen=True)
class MuteEntry:
    """The five published fields and the published hash of one entry."""

    hash: bytes
    type: int
    nonce: bytes
    hash_id: bytes
    cr_uid: bytes
    uid_index: bytes

    def body(self) -> bytes:
        """TYPE | NONCE | HashID | CrUID | UIDIndex (121 bytes)."""
        return bytes([self.type]) + self.nonce + self.hash_id + self.cr_uid + self.uid_index

    def to_bytes(self) -> bytes:
        return self.hash + self.body()


def chain_hash(body: bytes, previous_hash: bytes) -> bytes:
    """Step M3 (HC-32): HASH(n) = SHA-256(TYPE | NONCE | HashID | CrUID | UIDIndex | HASH(n-1))."""
    return primitives.sha256(body + previous_hash)


@dataclass(frozen=True)
class BuiltMuteEntry:
    """An entry with every intermediate value (for vectors)."""

    k1: bytes
    k2: bytes
    hash_id: bytes
    id_key: bytes
    uid_hash: bytes
    uid_index: bytes
    cr_uid: bytes
    previous_hash: bytes
    entry: MuteEntry
    text: str


def build_entry(*, mapped_identity: str, uid_message_json: bytes, nonce: bytes, iv: bytes,
                previous_hash: bytes) -> BuiltMuteEntry:
    """Steps M1-M4 as the original keyserver ran them (hashchain_append in doc/keyserver.md)."""
    if len(nonce) != NONCE_LEN:
        raise LengthError("NONCE must be 8 bytes", requirement="HC-32")
    if len(previous_hash) != HASH_LEN:
        raise LengthError("previous hash must be 32 bytes", requirement="HC-32")
    k1, k2 = ckdf(nonce)
    hid = hash_id(k1, mapped_identity)
    key = id_key(k2, mapped_identity)
    uhash = uid_hash(uid_message_json)
    uindex = uid_index(uhash)
    crypted = cr_uid(key, iv, uhash)
    body = bytes([TYPE]) + nonce + hid + crypted + uindex
    entry = MuteEntry(hash=chain_hash(body, previous_hash), type=TYPE, nonce=nonce,
                      hash_id=hid, cr_uid=crypted, uid_index=uindex)
    return BuiltMuteEntry(k1=k1, k2=k2, hash_id=hid, id_key=key, uid_hash=uhash,
                          uid_index=uindex, cr_uid=crypted, previous_hash=previous_hash,
                          entry=entry, text=encode_entry(entry))


def split_entry(raw: bytes) -> MuteEntry:
    """Step M3 (HC-32): SplitEntry over the 153 decoded bytes; TYPE must be 0x01."""
    if len(raw) != ENTRY_LEN:
        raise LengthError(f"entry must be {ENTRY_LEN} bytes, got {len(raw)}", requirement="HC-32")
    if raw[_TYPE] != TYPE:
        raise DecodeError(f"entry type 0x{raw[_TYPE]:02x} is not 0x01", requirement="HC-32")
    return MuteEntry(hash=raw[_HASH], type=raw[_TYPE], nonce=raw[_NONCE], hash_id=raw[_HASH_ID],
                     cr_uid=raw[_CRUID], uid_index=raw[_UID_INDEX])


# --- M4: wire form -------------------------------------------------------------------------------

def encode_entry(entry: MuteEntry) -> str:
    """Step M4 (HC-33): padded standard base64 (Go's base64.StdEncoding), 204 characters."""
    return base64.b64encode(entry.to_bytes()).decode("ascii")


def decode_entry(text: str) -> MuteEntry:
    """Step M4 (HC-33) then M3: standard base64 of exactly 204 characters.

    153 is a multiple of 3, so the padded standard form has no '=' and every entry has
    exactly one text form. Go's DecodeString also skips '\\r' and '\\n'; the profile accepts
    only the form the original produced (no line breaks, no whitespace).
    """
    if not isinstance(text, str):
        raise DecodeError("entry is not a string", requirement="HC-33")
    if len(text) != ENTRY_B64_LEN:
        # A wrong-length text can still be valid base64 of a wrong-length entry: tell which.
        raw = _b64_std_decode(text)
        raise LengthError(f"entry must be {ENTRY_LEN} bytes, got {len(raw)}", requirement="HC-33")
    raw = _b64_std_decode(text)
    if base64.b64encode(raw).decode("ascii") != text:
        raise DecodeError("entry is not in canonical base64", requirement="HC-33")
    return split_entry(raw)


def _b64_std_decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise DecodeError("entry is not padded standard base64", requirement="HC-33") from exc


class MuteChainVerifier:
    """validateHashChain as a streaming state machine: feed entries from position 0 on.

    Keeps only the previous hash and the next position, whatever the chain length.
    """

    def __init__(self) -> None:
        self.next_position = 0
        self.last_hash = ZERO_HASH

    def feed(self, entry: MuteEntry) -> None:
        """Step M3 (HC-32): recompute HASH(n) over the body and HASH(n-1)."""
        if entry.type != TYPE:
            raise DecodeError("entry type is not 0x01", requirement="HC-32")
        expected = chain_hash(entry.body(), self.last_hash)
        if expected != entry.hash:
            raise LinkError(f"entry {self.next_position} does not hash to its published HASH",
                            requirement="HC-32")
        self.last_hash = entry.hash
        self.next_position += 1

    def feed_text(self, text: str) -> None:
        self.feed(decode_entry(text))


def verify_chain(texts: Iterable[str]) -> bytes:
    """Verify a whole chain from entry 0; return the hash of its last entry."""
    verifier = MuteChainVerifier()
    for text in texts:
        verifier.feed_text(text)
    return verifier.last_hash


@dataclass(frozen=True)
class MuteMatch:
    position: int
    uid_index: bytes
    uid_hash: bytes


def lookup(mapped_identity: str, texts: Iterable[str]) -> list[MuteMatch]:
    """searchHashChain: test HashID of every entry; on a match decrypt UIDHash with IDKEY.

    The caller then fetches the UIDMessageReply by UIDIndex and must check that
    SHA-256(UIDHash) equals UIDIndex: CBC has no integrity, so that is the only check.
    """
    matches: list[MuteMatch] = []
    for position, text in enumerate(texts):
        entry = decode_entry(text)
        k1, k2 = ckdf(entry.nonce)
        if hash_id(k1, mapped_identity) != entry.hash_id:
            continue
        uhash = open_cr_uid(id_key(k2, mapped_identity), entry.cr_uid)
        if uid_index(uhash) != entry.uid_index:
            raise AeadError(f"entry {position}: decrypted UIDHash does not match UIDIndex",
                            requirement="HC-31")
        matches.append(MuteMatch(position=position, uid_index=entry.uid_index, uid_hash=uhash))
    return matches


# --- M5: identity mapping (uid/identity/identity.go) ------------------------------------------

# Go's unicode.IsSpace, which strings.TrimSpace uses: not the same set as Python's str.isspace
# (that one adds U+001C..U+001F), so it is spelled out.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                      "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_LOCALPART_MAP = {"0": "o", "1": "l", "j": "i"}
_LOCALPART_KEEP = frozenset("abcdefghiklmnopqrstuvwxyz23456789-.")


def _go_trim_space(text: str) -> str:
    start, end = 0, len(text)
    while start < end and text[start] in _GO_SPACE:
        start += 1
    while end > start and text[end - 1] in _GO_SPACE:
        end -= 1
    return text[start:end]


def _go_lower_rune(char: str) -> str:
    """unicode.ToLower: the simple (one-to-one) case mapping, never context-dependent."""
    lowered = char.lower()
    if len(lowered) == 1:
        return lowered
    # U+0130 is the only character whose full lowercase mapping has two characters; its
    # simple mapping (the one Go applies) is U+0069.
    return lowered[0]


def _go_to_lower(text: str) -> str:
    return "".join(_go_lower_rune(c) for c in text)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def map_localpart(localpart: str) -> str:
    """Step M5 (HC-34): MapLocalpart, checks in the original's order."""
    lp = _go_to_lower(_go_trim_space(localpart))
    if _utf8_len(lp) < MIN_LOCALPART_LEN:
        raise DecodeError("identity: minimum length is 3", requirement="HC-34")
    if lp[0] in "-.":
        raise DecodeError(f"identity: starting with '{lp[0]}' not allowed", requirement="HC-34")
    if lp[-1] in "-.":
        raise DecodeError(f"identity: ending with '{lp[-1]}' not allowed", requirement="HC-34")
    for sequence in ("--", "-.", ".-", ".."):
        if sequence in lp:
            raise DecodeError(f"identity: sequence '{sequence}' not allowed", requirement="HC-34")
    out = []
    for char in lp:
        mapped = _LOCALPART_MAP.get(char, char)
        if mapped not in _LOCALPART_KEEP:
            raise DecodeError(f"identity: character {char!r} not allowed", requirement="HC-34")
        out.append(mapped)
    result = "".join(out)
    if len(result) > MAX_LOCALPART_LEN:
        raise DecodeError("identity: maximum length of localpart is 64", requirement="HC-34")
    return result


def map_domain(domain: str) -> str:
    """Step M5 (HC-34): MapDomain only lowercases; the original validates nothing else."""
    return _go_to_lower(domain)


def map_identity(identity: str) -> str:
    """Step M5 (HC-34): Map: total length <= 254 bytes, exactly one '@', map both parts."""
    if _utf8_len(identity) > MAX_IDENTITY_LEN:
        raise DecodeError("identity: maximum total length is 254", requirement="HC-34")
    parts = identity.split("@")
    if len(parts) != 2:
        raise DecodeError("identity: does not contain exactly one '@'", requirement="HC-34")
    return map_localpart(parts[0]) + "@" + map_domain(parts[1])


def is_mapped(identity: str) -> bool:
    """IsMapped: the identity is well-formed and already in mapped form."""
    try:
        return map_identity(identity) == identity
    except DecodeError:
        return False


def entry_hash_digest(texts: Iterable[str]) -> bytes:
    """Accumulated-vector helper: SHA-256 over the concatenated 153-byte entries."""
    acc = hashlib.sha256()
    for text in texts:
        acc.update(decode_entry(text).to_bytes())
    return acc.digest()
