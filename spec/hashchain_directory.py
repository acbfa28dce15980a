"""Flow hashchain, the key directory: lookups answered with proofs (HC-80 .. HC-99).

The directory maps three kinds of identity to their current value:

    keypair   (user_id, client_id)  the keypair record's public view
    devices   (user_id, client_id)  the signed device list
    uid       (identity)            the hashchain UID

Every identity has one secret-keyed position in a Merkle map (an ECVRF output: without the
directory's VRF key nobody can tell which identities exist, nor enumerate them); its leaf
hash-chains every version the identity ever had. At every epoch the directory commits to
its VRF key and map root in one hash, which the transparency log records as a type 0x04
entry. A lookup answer carries the VRF proof, the map proof and the log's inclusion proof
of that entry under a signed (and cosigned) checkpoint: it is all a client verifies.

Steps (the hashchain chapter's section "Key directory" continues the flow's steps 1-13),
and where they live:
 14. Labels and positions: an identity's VRF input and position (HC-80, HC-81).  here
 15. Values: what a leaf commits to, per kind (HC-82).                          here
 16. Versioned leaves: each version chains the one before it (HC-83).           here
 17. The map: a compressed sparse Merkle tree (HC-84, HC-85).  hashchain_directory_map
 18. Epochs: the commitment and its log entry (HC-86, HC-87).                   here
 19. Lookup answers on the wire (HC-88).                                        here
 20. The client's verification of a lookup (HC-89 .. HC-91).
 21. Owners monitor their identities epoch by epoch (HC-92 .. HC-94).
 22. History through the directory (HC-95, HC-96).   (20-22: hashchain_directory_client)
 23. Server rules: the VRF key, epoch cadence, no enumeration (HC-97 .. HC-99).

Pure: the VRF secret key, nonces and "now" are parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from keyflows.spec import ecvrf, wire
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import keypair_publication as kp
from keyflows.spec.encoding import (
    b64url_decode,
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u64be,
)
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
    LinkError,
    ParamsError,
)
from keyflows.spec.key_derivation import check_identifier

KIND_KEYPAIR = "keypair"
KIND_DEVICES = "devices"
KIND_UID = "uid"
KINDS = (KIND_KEYPAIR, KIND_DEVICES, KIND_UID)
#: Epochs, versions and times are unsigned 64-bit values kept below 2^63 (JSON-safe).
MAX_U63 = 2**63 - 1
HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)
#: The value bytes of a version that removes the identity's value (a deleted keypair).
TOMBSTONE = b""
#: The label of the signed device list's canonical bytes (envelope flow).
DEVICE_LIST_LABEL = "envelope-device-list"


# --- step 14: labels and positions ------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    """An identity of the directory: a kind and its names (user_id and client_id for
    keypair and devices, the identity for uid). A label is checked when it is made
    (HC-80), so whoever holds one holds checked names: `fields` are their bytes."""

    kind: str
    names: tuple[str, ...]
    fields: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", label_fields(self.kind, self.names))

    def to_wire(self) -> dict[str, Any]:
        if self.kind == KIND_UID:
            return {"kind": self.kind, "identity": self.names[0]}
        return {"kind": self.kind, "user_id": self.names[0], "client_id": self.names[1]}

    def describe(self) -> str:
        return f"{self.kind} {'/'.join(self.names)}"


def label_fields(kind: str, names: tuple[str, ...]) -> tuple[bytes, ...]:
    """HC-80: the checked bytes of a label's names (identifier syntax, mapped identities)."""
    if kind in (KIND_KEYPAIR, KIND_DEVICES):
        if len(names) != 2:
            raise ParamsError(f"a {kind} label names a user and an application",
                              requirement="HC-80")
        return (check_identifier(names[0], "user_id", requirement="HC-80"),
                check_identifier(names[1], "client_id", requirement="HC-80"))
    if kind == KIND_UID:
        if len(names) != 1:
            raise ParamsError("a uid label names one identity", requirement="HC-80")
        return (hu.check_identity(names[0]),)
    raise DecodeError(f"unknown directory kind {kind!r}", requirement="HC-80")


def keypair_label(user_id: str, client_id: str) -> Label:
    return Label(KIND_KEYPAIR, (user_id, client_id))


def devices_label(user_id: str, client_id: str) -> Label:
    return Label(KIND_DEVICES, (user_id, client_id))


def uid_label(identity: str) -> Label:
    return Label(KIND_UID, (identity,))


def label_members(kind: object) -> tuple[str, ...]:
    if kind == KIND_UID:
        return ("identity",)
    if kind in (KIND_KEYPAIR, KIND_DEVICES):
        return ("user_id", "client_id")
    raise DecodeError(f"unknown directory kind {kind!r}", requirement="HC-88")


def parse_label(obj: dict[str, Any], where: str) -> Label:
    """The label members (kind and names) of an answer, already shape-checked."""
    kind = wire.string(obj, "kind", where)
    names = tuple(wire.string(obj, m, where) for m in label_members(kind))
    return Label(kind, names)


def vrf_input(label: Label) -> bytes:
    """Step 14 (HC-80): alpha = ctx("directory-label", kind, names...)."""
    return labelled_context("directory-label", label.kind.encode("ascii"), *label.fields)


def position_of(beta: bytes) -> bytes:
    """Step 14 (HC-80): a position is the first 32 bytes of the VRF output."""
    return beta[:dmap.POSITION_LEN]


@dataclass(frozen=True)
class Positioned:
    """The directory's VRF evaluation for one label: its position and proof."""

    label: Label
    alpha: bytes
    proof: bytes
    beta: bytes

    @property
    def position(self) -> bytes:
        return position_of(self.beta)


def prove_position(vrf_key: ecvrf.SecretKey, label: Label) -> Positioned:
    """Step 14 (HC-80), directory side (the VRF secret key expanded once: ecvrf.expand)."""
    alpha = vrf_input(label)
    proved = ecvrf.prove_with(vrf_key, alpha)
    return Positioned(label=label, alpha=alpha, proof=proved.pi, beta=proved.beta)


def verify_position(vrf_public_key: bytes, label: Label, proof: bytes) -> bytes:
    """Step 14 (HC-81), client side: the VRF proof verifies under the directory's pinned
    key for exactly this label; returns the position (proof, point or length otherwise)."""
    beta = ecvrf.verify(vrf_public_key, proof, vrf_input(label))
    return position_of(beta)


# --- step 15: values --------------------------------------------------------------------------

def value_hash(kind: str, value: bytes) -> bytes:
    """Step 15 (HC-82): SHA-256(ctx("directory-value", kind, value bytes))."""
    return hashlib.sha256(labelled_context("directory-value", kind.encode("ascii"),
                                           value)).digest()


def keypair_value_bytes(record: kp.Record) -> bytes:
    """Step 15 (HC-82): a public view's value bytes: its binding message (which names
    user, application, version, public keys and change type), the binding signature, the
    X25519 possession signature and, for a rotation, the rotation signature."""
    message = kp.binding_message(record.user_id, record.client_id, record.key_version,
                                 record.public_keys, record.change.type)
    return (message + record.binding_signature + record.x25519_signature
            + record.change.signature)


def device_list_prefix(user_id: str, client_id: str) -> bytes:
    """The first bytes of any signed device list of (user_id, client_id)."""
    return labelled_context(DEVICE_LIST_LABEL, check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"))


def value_bytes(label: Label, value: object) -> bytes:
    """Step 15 (HC-82): the value bytes of a value as an answer carries it, checked for
    the label: a keypair public view (verified as keypair-publication step 8 does), a
    UID, or base64url of a signed device list's bytes; null for a removed value."""
    if value is None:
        return TOMBSTONE
    user = label.names[0]
    if label.kind == KIND_KEYPAIR:
        record = kp.validate_public_view(value, user_id=user, client_id=label.names[1])
        return keypair_value_bytes(record)
    if label.kind == KIND_UID:
        uid = hu.parse_uid(value)
        if uid.content.identity != user:
            raise BindingError("the UID is for another identity", requirement="HC-82")
        return hu.uid_record_hash(uid)
    if label.kind == KIND_DEVICES:
        if not isinstance(value, str):
            raise DecodeError("a device list value is a base64url string", requirement="HC-82")
        data = b64url_decode(value, requirement="HC-82")
        if not data.startswith(device_list_prefix(user, label.names[1])):
            raise BindingError("the device list is for another user or application",
                               requirement="HC-82")
        return data
    raise DecodeError(f"unknown directory kind {label.kind!r}", requirement="HC-82")


def value_hash_of(label: Label, value: object) -> bytes:
    return value_hash(label.kind, value_bytes(label, value))


# --- step 16: versioned leaves ----------------------------------------------------------------

@dataclass(frozen=True)
class LeafVersion:
    """Version `version` of an identity, added at `epoch`, chaining `previous` (the leaf
    value of the version before it, zero for version 1)."""

    version: int
    epoch: int
    value_hash: bytes
    previous: bytes

    @property
    def leaf_value(self) -> bytes:
        return leaf_value(self.version, self.epoch, self.value_hash, self.previous)


def leaf_value(version: int, epoch: int, value_hash_: bytes, previous: bytes) -> bytes:
    """Step 16 (HC-83): SHA-256(ctx("directory-leaf", u64be(version), u64be(epoch),
    value hash, previous leaf value))."""
    if not 1 <= version <= MAX_U63 or not 1 <= epoch <= MAX_U63:
        raise ParamsError("versions and epochs are in 1..2^63-1", requirement="HC-83")
    hc.require_len(value_hash_, HASH_LEN, "value hash", "HC-83")
    hc.require_len(previous, HASH_LEN, "previous leaf value", "HC-83")
    if version == 1 and previous != ZERO_HASH:
        raise LinkError("version 1 chains to no previous leaf", requirement="HC-83")
    return hashlib.sha256(labelled_context("directory-leaf", u64be(version), u64be(epoch),
                                           value_hash_, previous)).digest()


def next_version(current: LeafVersion | None, value_hash_: bytes, epoch: int) -> LeafVersion:
    """Step 16 (HC-83), directory side: a change appends the next version, chained to
    the current one, at the epoch that publishes it."""
    if current is None:
        return LeafVersion(1, epoch, value_hash_, ZERO_HASH)
    if epoch < current.epoch:
        raise LinkError("a version cannot be older than the one it follows",
                        requirement="HC-83")
    return LeafVersion(current.version + 1, epoch, value_hash_, current.leaf_value)


def chain(versions: list[tuple[int, bytes]]) -> list[LeafVersion]:
    """Step 16 (HC-83): the leaf versions of (epoch, value hash) pairs, oldest first."""
    out: list[LeafVersion] = []
    for epoch, digest in versions:
        out.append(next_version(out[-1] if out else None, digest, epoch))
    return out


# --- step 18: epochs --------------------------------------------------------------------------

@dataclass(frozen=True)
class Epoch:
    """What one epoch commits: its number, publication time, VRF key and map root."""

    epoch: int
    published_at: int
    vrf_public_key: bytes
    map_root: bytes

    @property
    def commitment(self) -> bytes:
        return commitment(self.epoch, self.published_at, self.vrf_public_key, self.map_root)


def commitment(epoch: int, published_at: int, vrf_public_key: bytes, map_root: bytes) -> bytes:
    """Step 18 (HC-86): C = SHA-256(ctx("directory-commitment", u64be(epoch),
    u64be(published_at), VRF public key, map root)), the root of the epoch's log entry."""
    if not 1 <= epoch <= MAX_U63 or not 0 <= published_at <= MAX_U63:
        raise ParamsError("an epoch is in 1..2^63-1, its time in 0..2^63-1",
                          requirement="HC-86")
    hc.require_len(vrf_public_key, ecvrf.PUBLIC_KEY_LEN, "VRF public key", "HC-86")
    hc.require_len(map_root, HASH_LEN, "map root", "HC-86")
    return hashlib.sha256(labelled_context("directory-commitment", u64be(epoch),
                                           u64be(published_at), vrf_public_key,
                                           map_root)).digest()


def epoch_entry(epoch: Epoch, nonce: bytes) -> bytes:
    """Step 18 (HC-86, HC-47): the log entry of an epoch (type 0x04, root = C)."""
    return hc.build_directory_entry(epoch=epoch.epoch, root=epoch.commitment, nonce=nonce)


def next_epoch(previous: Epoch | None, now: int) -> tuple[int, int]:
    """Step 18 (HC-87), directory side: the number and publication time of the epoch
    after `previous` (None: the first), published at `now` by the directory's clock but
    never before the epoch it follows. check_next_epoch accepts what this returns."""
    if previous is None:
        return 1, now
    return previous.epoch + 1, max(now, previous.published_at)


def check_next_epoch(previous: Epoch | None, epoch: int, published_at: int) -> None:
    """Step 18 (HC-87): epochs start at 1 and grow by one per log entry; an epoch is
    never published before the one it follows."""
    expected = 1 if previous is None else previous.epoch + 1
    if epoch != expected:
        raise LinkError(f"epoch {epoch} does not follow {expected - 1}", requirement="HC-87")
    if previous is not None and published_at < previous.published_at:
        raise LinkError("an epoch is published before the one it follows",
                        requirement="HC-87")


def epoch_due(last: Epoch | None, *, pending: bool, now: int, interval: int,
              heartbeat: int) -> bool:
    """HC-98, directory side: publish a new epoch when changes are pending and the last
    epoch is at least `interval` seconds old (0: at once), and at least every `heartbeat`
    seconds even without changes, so answers stay fresh (HC-91)."""
    if last is None:
        return True
    age = now - last.published_at
    return (pending and age >= interval) or age >= heartbeat


# --- step 19: lookup answers ------------------------------------------------------------------

@dataclass(frozen=True)
class FoundLeaf:
    """The identity's leaf in an answer: its latest version, the epoch that added it, the
    leaf value it chains and the value itself (JSON; None for a removed value)."""

    version: int
    epoch: int
    previous: bytes
    value: object


@dataclass(frozen=True)
class Answer:
    label: Label
    epoch: int
    published_at: int
    vrf_proof: bytes
    leaf: FoundLeaf | None
    map_proof: dmap.MapProof
    log_entry: bytes
    log_proof: bytes  # a C2SP tlog-proof: index, inclusion proof, checkpoint


ANSWER_MEMBERS = ("kind", "epoch", "published_at", "vrf_proof", "leaf", "map_proof", "log")
LEAF_MEMBERS = ("version", "epoch", "previous", "value")
MAP_PROOF_MEMBERS = ("siblings",)
OTHER_MEMBERS = ("position", "leaf_value")
LOG_MEMBERS = ("entry", "proof")


def answer_to_wire(answer: Answer) -> dict[str, Any]:
    """Step 19 (HC-88): a lookup answer as JSON."""
    proof: dict[str, Any] = {"siblings": [b64url_encode(s) for s in answer.map_proof.siblings]}
    terminal = answer.map_proof.terminal
    if terminal is not None and answer.leaf is None:
        proof["other"] = {"position": b64url_encode(terminal.position),
                          "leaf_value": b64url_encode(terminal.value)}
    leaf = None if answer.leaf is None else {
        "version": answer.leaf.version, "epoch": answer.leaf.epoch,
        "previous": b64url_encode(answer.leaf.previous), "value": answer.leaf.value}
    return {**answer.label.to_wire(), "epoch": answer.epoch,
            "published_at": answer.published_at,
            "vrf_proof": b64url_encode(answer.vrf_proof), "leaf": leaf, "map_proof": proof,
            "log": {"entry": b64url_encode(answer.log_entry),
                    "proof": answer.log_proof.decode("utf-8")}}


def _u63(obj: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = wire.integer(obj, key, where)
    if not minimum <= value <= MAX_U63:
        raise DecodeError(f"{where}.{key} is outside {minimum}..2^63-1", requirement="HC-88")
    return value


def _hash(obj: dict[str, Any], key: str, where: str) -> bytes:
    return b64url_decode_exact(wire.string(obj, key, where), HASH_LEN, field=f"{where}.{key}",
                               requirement="HC-88")


def parse_answer(obj: object) -> Answer:
    """Step 19 (HC-88): decode a lookup answer; every member present, typed and sized."""
    if not isinstance(obj, dict):
        raise DecodeError("a lookup answer must be a JSON object", requirement="HC-88")
    where = "answer"
    members = wire.members(obj, (*ANSWER_MEMBERS, *label_members(obj.get("kind"))), where)
    label = parse_label(members, where)
    vrf_proof = b64url_decode_exact(wire.string(members, "vrf_proof", where), ecvrf.PROOF_LEN,
                                    field="answer.vrf_proof", requirement="HC-88")
    leaf = None
    if members["leaf"] is not None:
        raw = wire.members(members["leaf"], LEAF_MEMBERS, "answer.leaf")
        leaf = FoundLeaf(version=_u63(raw, "version", "answer.leaf", 1),
                         epoch=_u63(raw, "epoch", "answer.leaf", 1),
                         previous=_hash(raw, "previous", "answer.leaf"), value=raw["value"])
    raw_proof = wire.members(members["map_proof"], MAP_PROOF_MEMBERS, "answer.map_proof",
                             optional=("other",))
    siblings = raw_proof["siblings"]
    if not isinstance(siblings, list):
        raise DecodeError("answer.map_proof.siblings must be a list", requirement="HC-88")
    if len(siblings) > dmap.DEPTH:
        raise LengthError(f"a map proof has at most {dmap.DEPTH} siblings",
                          requirement="HC-85")
    hashes = tuple(b64url_decode_exact(s, HASH_LEN, field="answer.map_proof.siblings",
                                       requirement="HC-88") if isinstance(s, str) else
                   _not_a_string("answer.map_proof.siblings") for s in siblings)
    terminal = None
    if "other" in raw_proof:
        if leaf is not None:
            raise DecodeError("a membership answer names no other leaf", requirement="HC-88")
        other = wire.members(raw_proof["other"], OTHER_MEMBERS, "answer.map_proof.other")
        terminal = dmap.Leaf(_hash(other, "position", "answer.map_proof.other"),
                             _hash(other, "leaf_value", "answer.map_proof.other"))
    log = wire.members(members["log"], LOG_MEMBERS, "answer.log")
    entry = hc.decode_entry_b64(wire.string(log, "entry", "answer.log"), requirement="HC-88")
    return Answer(label=label, epoch=_u63(members, "epoch", where, 1),
                  published_at=_u63(members, "published_at", where, 0), vrf_proof=vrf_proof,
                  leaf=leaf, map_proof=dmap.MapProof(hashes, terminal), log_entry=entry,
                  log_proof=wire.string(log, "proof", "answer.log").encode("utf-8"))


def _not_a_string(where: str) -> bytes:
    raise DecodeError(f"{where} holds base64url strings", requirement="HC-88")


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace: how vectors and the server write a value they hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")
