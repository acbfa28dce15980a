"""Encrypted data vaults (DIF Confidential Storage) as keyflows speaks them, sans-I/O.

An encrypted data vault (EDV) stores *encrypted documents* for a controller and the
storage agents it authorizes; it never sees a document's content. keyflows' key server
is such an agent: in a keystore bound to a vault it keeps every working-key version as
one document there (lock-layering step 12).

  EncryptedDocument = {"id": "z" || base58btc(16 random bytes),
                       "sequence": n (0 on creation, +1 per update),
                       "indexed": [{"hmac": {"id": <MAC key id>, "type": "Sha256HmacKey2019"},
                                    "sequence": n,
                                    "attributes": [{"name", "value", "unique"?}, ...]}],
                       "jwe": JWE of the StructuredDocument {"id", "content"}}

  JWE (keyflows.spec.jose): general JSON serialization, one recipient,
      protected = base64url('{"enc":"A256GCM"}'),
      header = {"alg": "ECDH-ES+A256KW", "kid": <recipient key id>,
                "epk": {"kty": "OKP", "crv": "X25519", "x": base64url(epk)},
                "apu": base64url(epk), "apv": base64url(kid)}

  Blinded attribute (the vault can match it, not read it):
      name  = base64url(HMAC-SHA256(MAC key, name))
      value = base64url(HMAC-SHA256(MAC key, JCS({name: value})))

The vault's own rules (LOCK-34) -- vaults, documents, sequences, unique attributes,
queries -- are here too, so the reference vault (`keyflows edv`) and the conformance
runner's vault are thin shells over the same functions.

Steps (lock-layering chapter, "Encrypted data vault"): V1 identifiers, V2 blinding,
V3 document encryption, V4 document checks, V5 vault operations, V6 queries, V7 the key
server's working-key documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import jose, primitives
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
    ParamsError,
    ReplayError,
    SpecError,
)

HMAC_TYPE = "Sha256HmacKey2019"
ID_BYTES = 16
#: "z" and the base58btc of 16 bytes, which is at most 22 characters (58**22 > 2**128, and
#: each leading zero byte is one "1"): the bound a string meets before it is decoded.
ID_MAX_CHARS = 23
MAX_SEQUENCE = 2**53 - 1  # an unsigned integer every JSON reader holds exactly
MAX_ATTRIBUTES = 16
MAX_ID_LEN = 256
PROTECTED_HEADER = b'{"enc":"A256GCM"}'
PROTECTED = b64url_encode(PROTECTED_HEADER)
BLIND_LEN = 32

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_KID = re.compile(r"\A[\x21-\x7e]{1,256}\Z")


# --- V1: identifiers --------------------------------------------------------------------------

def base58_encode(data: bytes) -> str:
    """Bitcoin base58 (the multibase "z" alphabet); leading zero bytes become "1"."""
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise DecodeError("not base58btc", requirement="LOCK-30")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def new_id(random: RandomSource) -> str:
    """V1 (LOCK-30): a vault or document id, "z" || base58btc of 16 random bytes."""
    return "z" + base58_encode(random(ID_BYTES))


def check_id(value: object, what: str = "id") -> str:
    """V1 (LOCK-30): exactly the canonical form of 16 bytes (class decode otherwise)."""
    if not isinstance(value, str) or not value.startswith("z") or len(value) > ID_MAX_CHARS:
        raise DecodeError(f"{what} is not z || base58btc", requirement="LOCK-30")
    # base58btc is a bijection between strings of its alphabet and byte strings (leading
    # "1"s are the leading zero bytes), so the decoded length is all that is left to check.
    if len(base58_decode(value[1:])) != ID_BYTES:
        raise DecodeError(f"{what} is not the base58btc of 16 bytes", requirement="LOCK-30")
    return value


# --- V2: blinded index attributes -----------------------------------------------------------

def jcs_string(text: str) -> str:
    """RFC 8785 string serialization: \\" \\\\ and \\b \\f \\n \\r \\t escaped, other
    controls as \\u00xx (lowercase), everything else as it is."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def jcs_member(name: str, value: str) -> bytes:
    """V2: JCS({name: value}) for a string value, as UTF-8."""
    return ("{" + jcs_string(name) + ":" + jcs_string(value) + "}").encode("utf-8")


def blind_name(mac_key: bytes, name: str) -> str:
    """V2 (LOCK-31): base64url(HMAC-SHA256(MAC key, name))."""
    return b64url_encode(primitives.hmac_sha256(mac_key, name.encode("utf-8")))


def blind_value(mac_key: bytes, name: str, value: str) -> str:
    """V2 (LOCK-31): base64url(HMAC-SHA256(MAC key, JCS({name: value}))): a value is
    blinded together with its name, so equal values of two names look unrelated."""
    return b64url_encode(primitives.hmac_sha256(mac_key, jcs_member(name, value)))


@dataclass(frozen=True)
class Attribute:
    name: str
    value: str
    unique: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value}
        if self.unique:
            out["unique"] = True
        return out


def blind_attribute(mac_key: bytes, name: str, value: str, unique: bool = False) -> Attribute:
    return Attribute(blind_name(mac_key, name), blind_value(mac_key, name, value), unique)


@dataclass(frozen=True)
class IndexEntry:
    hmac_id: str
    sequence: int
    attributes: tuple[Attribute, ...]

    def to_json(self) -> dict[str, Any]:
        return {"hmac": {"id": self.hmac_id, "type": HMAC_TYPE}, "sequence": self.sequence,
                "attributes": [a.to_json() for a in self.attributes]}


# --- V3: document encryption ----------------------------------------------------------------

@dataclass(frozen=True)
class Jwe:
    kid: str
    epk: bytes
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes

    def to_json(self) -> dict[str, Any]:
        x = b64url_encode(self.epk)
        return {"protected": PROTECTED,
                "recipients": [{"header": {"alg": jose.ALG, "kid": self.kid,
                                           "epk": {"kty": "OKP", "crv": "X25519", "x": x},
                                           "apu": x, "apv": b64url_encode(
                                               self.kid.encode("ascii"))},
                                "encrypted_key": b64url_encode(self.encrypted_key)}],
                "iv": b64url_encode(self.iv), "ciphertext": b64url_encode(self.ciphertext),
                "tag": b64url_encode(self.tag)}


@dataclass(frozen=True)
class EncryptedDocument:
    id: str
    sequence: int
    indexed: tuple[IndexEntry, ...]
    jwe: Jwe

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sequence": self.sequence,
                "indexed": [e.to_json() for e in self.indexed], "jwe": self.jwe.to_json()}


def canonical(obj: Any) -> bytes:
    """The bytes of a structured document: sorted members, no whitespace, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii")


def structured_document(doc_id: str, content: Mapping[str, Any]) -> bytes:
    """V3: the plaintext, {"id", "content"} in canonical JSON."""
    return canonical({"id": doc_id, "content": dict(content)})


def encrypt_document(*, doc_id: str, sequence: int, content: Mapping[str, Any],
                     recipient_kid: str, recipient_public: bytes, ephemeral_private: bytes,
                     cek: bytes, iv: bytes, indexed: Sequence[IndexEntry]
                     ) -> tuple[EncryptedDocument, jose.Sealed]:
    """V3 (LOCK-30): the encrypted document and every intermediate of its JWE."""
    check_id(doc_id)
    check_kid(recipient_kid)
    epk = primitives.x25519_public_key(ephemeral_private)
    sealed = jose.seal(recipient_public, ephemeral_private, cek, iv, epk,
                       recipient_kid.encode("ascii"), structured_document(doc_id, content),
                       PROTECTED.encode("ascii"), requirement="LOCK-30")
    jwe = Jwe(recipient_kid, sealed.epk, sealed.encrypted_key, iv, sealed.ciphertext,
              sealed.tag)
    return EncryptedDocument(doc_id, sequence, tuple(indexed), jwe), sealed


def decrypt_document(doc: EncryptedDocument, recipient_private: bytes,
                     recipient_kid: str) -> dict[str, Any]:
    """V3 (LOCK-33): the structured document's content. A document to another recipient
    key, or whose plaintext names another id, is a binding failure; one that does not
    open, an aead failure; an epk of low order, a point failure."""
    if doc.jwe.kid != recipient_kid:
        raise BindingError("the document is encrypted to another key", requirement="LOCK-33")
    plaintext = jose.open_sealed(recipient_private, doc.jwe.epk, doc.jwe.epk,
                                 recipient_kid.encode("ascii"), doc.jwe.encrypted_key,
                                 doc.jwe.iv, doc.jwe.ciphertext, doc.jwe.tag,
                                 PROTECTED.encode("ascii"), requirement="LOCK-33")
    try:
        structured = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("the document's plaintext is not JSON", requirement="LOCK-33") from exc
    if not isinstance(structured, dict) or set(structured) != {"id", "content"} \
            or not isinstance(structured["content"], dict):
        raise DecodeError("the plaintext is not {id, content}", requirement="LOCK-33")
    if structured["id"] != doc.id:
        raise BindingError("the plaintext names another document", requirement="LOCK-33")
    return structured["content"]


# --- V4: document checks (what a vault accepts, what a reader parses) ------------------------

def check_kid(value: object) -> str:
    if not isinstance(value, str) or not _KID.match(value):
        raise DecodeError("a key id is 1..256 printable ASCII characters", requirement="LOCK-30")
    return value


def _exact(obj: object, names: Sequence[str], where: str, optional: Sequence[str] = ()
           ) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError(f"{where} is not an object", requirement="LOCK-30")
    missing = [n for n in names if n not in obj]
    unknown = sorted(set(obj) - set(names) - set(optional))
    if missing or unknown:
        raise DecodeError(f"{where} has members {sorted(obj)}, not {list(names)}",
                          requirement="LOCK-30")
    return obj


def _sequence(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQUENCE:
        raise DecodeError("a sequence is an integer 0..2^53-1", requirement="LOCK-30")
    return value


def _b64(value: object, what: str, length: int | None = None) -> bytes:
    data = b64url_decode(value, requirement="LOCK-30")  # type: ignore[arg-type]
    if length is not None and len(data) != length:
        raise LengthError(f"{what} must be {length} bytes", requirement="LOCK-30")
    return data


def parse_attribute(obj: object) -> Attribute:
    fields = _exact(obj, ("name", "value"), "attribute", ("unique",))
    unique = fields.get("unique", False)
    if unique is not True and unique is not False:
        raise DecodeError("unique is true or false", requirement="LOCK-30")
    _b64(fields["name"], "a blinded name", BLIND_LEN)
    _b64(fields["value"], "a blinded value", BLIND_LEN)
    return Attribute(fields["name"], fields["value"], unique)


def parse_index_entry(obj: object) -> IndexEntry:
    fields = _exact(obj, ("hmac", "sequence", "attributes"), "index entry")
    hmac = _exact(fields["hmac"], ("id", "type"), "hmac")
    if hmac["type"] != HMAC_TYPE:
        raise DecodeError(f"hmac.type is {HMAC_TYPE}", requirement="LOCK-30")
    attributes = fields["attributes"]
    if not isinstance(attributes, list) or not 1 <= len(attributes) <= MAX_ATTRIBUTES:
        raise DecodeError(f"attributes is a list of 1..{MAX_ATTRIBUTES}", requirement="LOCK-30")
    parsed = tuple(parse_attribute(a) for a in attributes)
    if len({a.name for a in parsed}) != len(parsed):
        raise DecodeError("an attribute name appears twice", requirement="LOCK-30")
    return IndexEntry(check_kid(hmac["id"]), _sequence(fields["sequence"]), parsed)


def parse_jwe(obj: object) -> Jwe:
    fields = _exact(obj, ("protected", "recipients", "iv", "ciphertext", "tag"), "jwe")
    if fields["protected"] != PROTECTED:
        raise DecodeError('the protected header is {"enc":"A256GCM"}', requirement="LOCK-30")
    recipients = fields["recipients"]
    if not isinstance(recipients, list) or len(recipients) != 1:
        raise DecodeError("one recipient", requirement="LOCK-30")
    recipient = _exact(recipients[0], ("header", "encrypted_key"), "recipient")
    header = _exact(recipient["header"], ("alg", "kid", "epk", "apu", "apv"), "header")
    if header["alg"] != jose.ALG:
        raise DecodeError(f"alg is {jose.ALG}", requirement="LOCK-30")
    kid = check_kid(header["kid"])
    epk_jwk = _exact(header["epk"], ("kty", "crv", "x"), "epk")
    if epk_jwk["kty"] != "OKP" or epk_jwk["crv"] != "X25519":
        raise DecodeError("epk is an OKP X25519 key", requirement="LOCK-30")
    epk = _b64(epk_jwk["x"], "epk", 32)
    if header["apu"] != epk_jwk["x"] or header["apv"] != b64url_encode(kid.encode("ascii")):
        raise BindingError("apu is the epk and apv the kid", requirement="LOCK-30")
    return Jwe(kid, epk, _b64(recipient["encrypted_key"], "encrypted_key",
                              jose.WRAPPED_KEY_LEN),
               _b64(fields["iv"], "iv", jose.IV_LEN), _b64(fields["ciphertext"], "ciphertext"),
               _b64(fields["tag"], "tag", jose.TAG_LEN))


def parse_document(obj: object) -> EncryptedDocument:
    """V4 (LOCK-30): an encrypted document, strictly: exactly its members, one index entry
    whose sequence is the document's, blinded attributes of 32 bytes, the JWE layout
    above. Nothing in it may be readable by the vault."""
    fields = _exact(obj, ("id", "sequence", "indexed", "jwe"), "document")
    sequence = _sequence(fields["sequence"])
    indexed = fields["indexed"]
    if not isinstance(indexed, list) or len(indexed) != 1:
        raise DecodeError("indexed is a list of one entry", requirement="LOCK-30")
    entry = parse_index_entry(indexed[0])
    if entry.sequence != sequence:
        raise DecodeError("the index entry's sequence is the document's", requirement="LOCK-30")
    return EncryptedDocument(check_id(fields["id"]), sequence, (entry,), parse_jwe(fields["jwe"]))


# --- V5: the vault's operations --------------------------------------------------------------

@dataclass(frozen=True)
class VaultConfig:
    controller: str
    reference_id: str | None = None
    sequence: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sequence": self.sequence, "controller": self.controller}
        if self.reference_id is not None:
            out["referenceId"] = self.reference_id
        return out


def parse_vault_config(obj: object) -> VaultConfig:
    """V5 (LOCK-34): {"sequence": 0, "controller", "referenceId"?}."""
    fields = _exact(obj, ("sequence", "controller"), "vault configuration", ("referenceId",))
    if _sequence(fields["sequence"]) != 0:
        raise ParamsError("a new vault's sequence is 0", requirement="LOCK-34")
    controller = check_kid(fields["controller"])
    reference = fields.get("referenceId")
    if reference is not None:
        check_kid(reference)
    return VaultConfig(controller, reference)


def token_id(token: str) -> bytes:
    """V5 (LOCK-34): what a vault stores of a vault's bearer token: its SHA-256."""
    return primitives.sha256(token.encode("utf-8"))


def new_token(random: RandomSource) -> str:
    return b64url_encode(random(32))


def check_new_document(doc: EncryptedDocument) -> None:
    """V5 (LOCK-34): a document is created with sequence 0."""
    if doc.sequence != 0:
        raise ParamsError("a new document's sequence is 0", requirement="LOCK-34")


def check_update(stored: EncryptedDocument, new: EncryptedDocument, path_id: str) -> None:
    """V5 (LOCK-34): an update names its own id and the next sequence; a stale sequence is
    refused (class replay: two writers raced)."""
    if new.id != path_id:
        raise BindingError("the document names another id", requirement="LOCK-34")
    if new.sequence != stored.sequence + 1:
        raise ReplayError("the sequence is not the stored one + 1", requirement="LOCK-34")


def unique_keys(doc: EncryptedDocument) -> list[tuple[str, str, str]]:
    """V5 (LOCK-34): the (index, name, value) triples no other document of the vault may
    also carry as unique."""
    return [(e.hmac_id, a.name, a.value) for e in doc.indexed for a in e.attributes if a.unique]


# --- V6: queries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    index: str
    equals: tuple[tuple[tuple[str, str], ...], ...] = ()
    has: tuple[str, ...] = ()
    return_full_documents: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index}
        if self.equals:
            out["equals"] = [dict(group) for group in self.equals]
        if self.has:
            out["has"] = list(self.has)
        if self.return_full_documents:
            out["returnFullDocuments"] = True
        return out


def parse_query(obj: object) -> Query:
    """V6 (LOCK-34): {"index", "equals": [{name: value, ...}, ...]} or {"index", "has":
    [name, ...]}, optionally "returnFullDocuments": true; names and values blinded."""
    fields = _exact(obj, ("index",), "query", ("equals", "has", "returnFullDocuments"))
    if ("equals" in fields) == ("has" in fields):
        raise DecodeError("a query has equals or has", requirement="LOCK-34")
    full = fields.get("returnFullDocuments", False)
    if full is not True and full is not False:
        raise DecodeError("returnFullDocuments is true or false", requirement="LOCK-34")
    if "equals" in fields:
        groups = fields["equals"]
        if not isinstance(groups, list) or not groups or not all(
                isinstance(g, dict) and g and all(isinstance(v, str) for v in g.values())
                for g in groups):
            raise DecodeError("equals is a list of name -> value objects", requirement="LOCK-34")
        return Query(check_kid(fields["index"]),
                     equals=tuple(tuple(sorted(g.items())) for g in groups),
                     return_full_documents=full)
    has = fields["has"]
    if not isinstance(has, list) or not has or not all(isinstance(n, str) for n in has):
        raise DecodeError("has is a list of names", requirement="LOCK-34")
    return Query(check_kid(fields["index"]), has=tuple(has), return_full_documents=full)


def matches(doc: EncryptedDocument, query: Query) -> bool:
    """V6 (LOCK-34): a document matches when its entry of the queried index has every
    name -> value pair of one `equals` group, or every name of `has`."""
    for entry in doc.indexed:
        if entry.hmac_id != query.index:
            continue
        pairs = {(a.name, a.value) for a in entry.attributes}
        names = {a.name for a in entry.attributes}
        if query.equals:
            return any(all(pair in pairs for pair in group) for group in query.equals)
        return all(name in names for name in query.has)
    return False


# --- V7: the key server's working-key documents ---------------------------------------------

KEY_ATTRIBUTE = "content.key"  # "<key_id>/<version>", unique
KEY_ID_ATTRIBUTE = "content.key_id"  # "<key_id>"
CONTENT_MEMBERS = ("keystore_id", "key_id", "key_type", "version", "public_key", "sealed")


def recipient_kid(keystore_id: str) -> str:
    """V7 (LOCK-32): the id of a keystore's EDV recipient key."""
    return f"urn:keyflows:keystore:{keystore_id}:edv-recipient"


def hmac_kid(keystore_id: str) -> str:
    """V7 (LOCK-32): the id of a keystore's EDV MAC key (the index it writes)."""
    return f"urn:keyflows:keystore:{keystore_id}:edv-mac"


def key_index(mac_key: bytes, keystore_id: str, key_id: str, version: int) -> IndexEntry:
    """V7 (LOCK-32): content.key (unique) and content.key_id, blinded."""
    return IndexEntry(hmac_kid(keystore_id), 0, (
        blind_attribute(mac_key, KEY_ATTRIBUTE, f"{key_id}/{version}", unique=True),
        blind_attribute(mac_key, KEY_ID_ATTRIBUTE, key_id)))


def key_content(keystore_id: str, key_id: str, key_type: str, version: int,
                public_key: bytes, sealed: bytes) -> dict[str, Any]:
    """V7 (LOCK-32): what a working-key document holds: its identity and the version's
    material sealed under the user lock (LOCK-7) -- never the material itself."""
    return {"keystore_id": keystore_id, "key_id": key_id, "key_type": key_type,
            "version": version, "public_key": b64url_encode(public_key),
            "sealed": b64url_encode(sealed)}


def key_query(mac_key: bytes, keystore_id: str, key_id: str, version: int | None = None
              ) -> Query:
    """V7 (LOCK-33): the query for one version's document (or, without a version, every
    document of the key), returning full documents."""
    name, value = ((KEY_ATTRIBUTE, f"{key_id}/{version}") if version is not None
                   else (KEY_ID_ATTRIBUTE, key_id))
    return Query(hmac_kid(keystore_id),
                 equals=((( blind_name(mac_key, name), blind_value(mac_key, name, value)),),),
                 return_full_documents=True)


def open_key_document(doc: EncryptedDocument, recipient_private: bytes, keystore_id: str,
                      key_id: str, version: int, key_type: str, public_key: bytes) -> bytes:
    """V7 (LOCK-33): the sealed material of the version a key server asked for. A document
    of another keystore, key, version or type, or with another public key, is refused
    (binding): a vault cannot substitute one key's document for another's."""
    content = decrypt_document(doc, recipient_private, recipient_kid(keystore_id))
    if sorted(content) != sorted(CONTENT_MEMBERS):
        raise DecodeError("a working-key document has exactly its members", requirement="LOCK-33")
    expected = key_content(keystore_id, key_id, key_type, version, public_key, b"")
    for name in ("keystore_id", "key_id", "key_type", "version", "public_key"):
        if content[name] != expected[name]:
            raise BindingError(f"the document is for another {name}", requirement="LOCK-33")
    # b64url_decode refuses a sealed member that is not a string (decode, LOCK-33)
    return b64url_decode(content["sealed"], requirement="LOCK-33")


def select_one(docs: Sequence[object]) -> EncryptedDocument:
    """V7 (LOCK-33): a version has exactly one document; none or several is the vault's
    fault (binding), as is a document that does not parse."""
    if len(docs) != 1:
        raise BindingError(f"the vault answered {len(docs)} documents for one version",
                           requirement="LOCK-33")
    try:
        return parse_document(docs[0])
    except SpecError as exc:
        raise BindingError(f"the vault answered a malformed document: {exc}",
                           requirement="LOCK-33") from exc


# --- the keystore's vault binding (LOCK-35) -------------------------------------------------

_VAULT_PATH = re.compile(rf"\A/edvs/(z[1-9A-HJ-NP-Za-km-z]{{1,{ID_MAX_CHARS - 1}}})\Z")


def check_vault_url(url: object, trusted: Sequence[str]) -> tuple[str, str]:
    """LOCK-35: a vault URL is "<a vault server the key server trusts>/edvs/<vault id>";
    returns (server base URL, vault id). Anything else is refused (class params): a key
    server writes only to vaults its operator allowed."""
    if not isinstance(url, str):
        raise ParamsError("vault is a URL", requirement="LOCK-35")
    for base in trusted:
        if url.startswith(base.rstrip("/") + "/edvs/"):
            match = _VAULT_PATH.match(url[len(base.rstrip("/")):])
            if match:
                return base.rstrip("/"), check_id(match.group(1), "vault id")
    raise ParamsError("the vault is not on a vault server this key server trusts",
                      requirement="LOCK-35")
