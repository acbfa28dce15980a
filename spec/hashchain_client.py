"""Flow hashchain, steps 8-9: a client that follows the log and checks identity history.

A follower keeps, between syncs, the checkpoint it verified last and the compact range
of the tree at that size (at most 63 hashes): memory that does not grow with the log.
On each new checkpoint it checks the log's signature and its witness policy, refuses a
rollback, checks a consistency proof from its trusted checkpoint, then hashes the new
entries into its compact range and accepts the checkpoint only if they give its root
(HC-9, HC-11, HC-12, HC-41). Two signed checkpoints that cannot both be true become a
fork proof that anyone can verify (HC-10).

An identity's UID is accepted only if the identity's history in the log is valid:
exactly one creation, then updates each naming and authorised by the UID it replaces
(HC-13, HC-48). This is what stops a key server from "re-creating" an identity with
keys it holds; an owner also checks that every entry of its identity is one it made
(HC-49). Sans-I/O: the caller fetches checkpoints, proofs, entries and sealed UIDs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import wire
from keyflows.spec.encoding import b64url_decode_exact, b64url_encode
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    ForkError,
    HistoryError,
    LinkError,
    ParamsError,
    ProofError,
    ReplayError,
)

# --- step 8: fork proofs (HC-10) ------------------------------------------------------------------


@dataclass(frozen=True)
class ForkProof:
    """Two checkpoints signed by the log, the smaller (or equal) size first, and the
    second tree's root at the first's size with a consistency proof that binds it to the
    second root. The proof shows a fork when that root is not the first checkpoint's."""

    first: bytes
    second: bytes
    old_root: bytes
    proof: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"checkpoints": [self.first.decode("utf-8"), self.second.decode("utf-8")],
                "old_root": b64url_encode(self.old_root),
                "proof": [b64url_encode(h) for h in self.proof]}


def parse_fork_proof(obj: object) -> ForkProof:
    m = wire.members(obj, ("checkpoints", "old_root", "proof"), "fork_proof")
    notes, proof = m["checkpoints"], m["proof"]
    if (not isinstance(notes, list) or len(notes) != 2
            or not all(isinstance(x, str) for x in notes)):
        raise DecodeError("fork_proof.checkpoints must be two notes", requirement="HC-10")
    if not isinstance(proof, list) or len(proof) > merkle.MAX_PROOF_LEN:
        raise DecodeError("fork_proof.proof must be a list of hashes", requirement="HC-10")
    return ForkProof(first=notes[0].encode("utf-8"), second=notes[1].encode("utf-8"),
                     old_root=b64url_decode_exact(wire.string(m, "old_root", "fork_proof"),
                                                  32, field="old_root", requirement="API-1"),
                     proof=tuple(b64url_decode_exact(h if isinstance(h, str) else "", 32,
                                                     field="proof", requirement="API-1")
                                 for h in proof))


@dataclass(frozen=True)
class ForkEvidence:
    """What a verified fork proof establishes: the size where the two trees differ and
    the two roots the log signed (or committed to) there."""

    origin: str
    size: int
    roots: tuple[bytes, bytes]


def verify_fork_proof(proof: ForkProof, *, origin: str,
                      log_keys: Sequence[note.Verifier]) -> ForkEvidence:
    """HC-10, in order: both checkpoints verify under the log's keys for this origin
    (signature, binding); the first is not larger (params); the consistency proof binds
    old_root to the second root (proof); old_root differs from the first root, else the
    checkpoints are consistent and nothing is proven (class link)."""
    a = note.verify_checkpoint(proof.first, origin=origin, log_keys=log_keys).checkpoint
    b = note.verify_checkpoint(proof.second, origin=origin, log_keys=log_keys).checkpoint
    if a.size > b.size:
        raise ParamsError("the first checkpoint of a fork proof is the smaller",
                          requirement="HC-10")
    if a.size == b.size:
        if proof.proof or proof.old_root != b.root_hash:
            raise ProofError("for equal sizes the proof is empty and old_root the second root",
                             requirement="HC-10")
    else:
        merkle.verify_consistency(size1=a.size, size2=b.size, root1=proof.old_root,
                                  root2=b.root_hash, proof=proof.proof)
    if proof.old_root == a.root_hash:
        raise LinkError("the two checkpoints are consistent: no fork", requirement="HC-10")
    return ForkEvidence(origin=origin, size=a.size, roots=(a.root_hash, proof.old_root))


class ForkDetected(ForkError):
    """The log signed two views that cannot both be true; `proof` shows it to anyone."""

    def __init__(self, message: str, *, proof: ForkProof) -> None:
        super().__init__(message, requirement="HC-10")
        self.proof = proof


# --- step 8: following the log -------------------------------------------------------------------

@dataclass(frozen=True)
class FollowerState:
    """What a client keeps between syncs (HC-12): the checkpoint it verified last, the
    compact range of the tree at that size, and the log keys it trusts."""

    checkpoint: bytes
    size: int
    root: bytes
    compact: tuple[bytes, ...]
    log_keys: tuple[bytes, ...]


@dataclass(frozen=True)
class EntrySeen:
    """An entry the follower verified (its index and bytes), for identity watchers."""

    index: int
    entry: bytes


class LogFollower:
    """A sans-I/O client of one log (step 8).

    First use: `trust_first_entry(entry 0)` (or pass `log_keys` from configuration).
    Each sync: `check_checkpoint(note)`; if it holds a trusted checkpoint,
    `check_consistency(proof from the log)`; then `feed(entries)` from its size to the
    new checkpoint's and `finish()`, which accepts the checkpoint only if the entries
    hash to its root. Anything refused leaves the trusted state as it was.
    """

    def __init__(self, *, origin: str, log_keys: Sequence[bytes] = (),
                 policy: note.WitnessPolicy | None = None,
                 state: FollowerState | None = None) -> None:
        hc.check_origin(origin)
        self.origin = origin
        self.policy = note.NO_WITNESSES if policy is None else policy
        self.state = state
        self.keys: list[bytes] = list(state.log_keys if state else log_keys)
        self._pending: note.VerifiedCheckpoint | None = None
        self._consistent = state is None
        self._compact = merkle.CompactRange(state.size, state.compact) if state else None

    # -- trust on first use ----------------------------------------------------------------
    def trust_first_entry(self, entry0: bytes) -> bytes:
        """HC-50: on first use, trust the key entry 0 introduces (or check it is the
        pinned one), after checking that it signs itself."""
        key = hc.verify_log_key_entry(hc.decode_entry(entry0), origin=self.origin, index=0,
                                      key_in_force=None,
                                      pinned_key=self.keys[0] if self.keys else None)
        if not self.keys:
            self.keys = [key]
        return key

    def verifiers(self) -> list[note.Verifier]:
        return [note.log_verifier(self.origin, k) for k in self.keys]

    # -- a new checkpoint -------------------------------------------------------------------
    def check_checkpoint(self, data: bytes, *, now: int | None = None) -> note.Checkpoint:
        """HC-9, HC-11, HC-41: signed by a trusted log key, cosigned as the policy asks,
        not behind the trusted checkpoint; at the same size, the same root (else a fork)."""
        if not self.keys:
            raise LinkError("no log key is trusted yet", requirement="HC-50")
        verified = note.verify_checkpoint(data, origin=self.origin, log_keys=self.verifiers(),
                                          policy=self.policy, now=now)
        cp, trusted = verified.checkpoint, self.state
        if trusted is not None:
            if cp.size < trusted.size:
                raise ReplayError(f"the checkpoint's size {cp.size} is below the trusted "
                                  f"{trusted.size}", requirement="HC-11")
            if cp.size == trusted.size and cp.root_hash != trusted.root:
                raise ForkDetected("two checkpoints of one size with different roots",
                                   proof=ForkProof(trusted.checkpoint, data, cp.root_hash, ()))
        self._pending = verified
        self._consistent = trusted is None or cp.size == trusted.size
        return cp

    def consistency_needed(self) -> tuple[int, int] | None:
        """The sizes a consistency proof must cover, or None if none is needed."""
        if self._pending is None or self.state is None or self._consistent:
            return None
        return self.state.size, self._pending.checkpoint.size

    def check_consistency(self, *, size1: int, size2: int, root1: bytes,
                          proof: Sequence[bytes]) -> None:
        """HC-9, HC-10: the proof from the trusted size leads to the new root; if it does
        from another root at the trusted size, the log forked: raise with the proof."""
        pending, trusted = self._pending, self.state
        if pending is None or trusted is None:
            raise ParamsError("no checkpoint is waiting for a consistency proof",
                              requirement="HC-9")
        if (size1, size2) != (trusted.size, pending.checkpoint.size):
            raise BindingError("the consistency proof is for other sizes", requirement="HC-9")
        merkle.verify_consistency(size1=size1, size2=size2, root1=root1,
                                  root2=pending.checkpoint.root_hash, proof=proof)
        if root1 != trusted.root:
            raise ForkDetected("the log's tree at the trusted size has another root",
                               proof=ForkProof(trusted.checkpoint, pending.note.to_bytes(),
                                               root1, tuple(proof)))
        self._consistent = True

    # -- entries ---------------------------------------------------------------------------
    def next_index(self) -> int:
        return 0 if self._compact is None else self._compact.size

    def feed(self, entries: Iterable[bytes]) -> list[EntrySeen]:
        """HC-1, HC-6, HC-12: decode each entry, track log keys, hash it into the range."""
        pending = self._pending
        if pending is None:
            raise ParamsError("no checkpoint to verify entries against", requirement="HC-12")
        if self._compact is None:
            self._compact = merkle.CompactRange()
        seen: list[EntrySeen] = []
        for data in entries:
            index = self._compact.size
            if index >= pending.checkpoint.size:
                raise LinkError("more entries than the checkpoint holds", requirement="HC-12")
            entry = hc.decode_entry(data)
            if index == 0 and entry.type != hc.TYPE_LOG_KEY:
                raise DecodeError("entry 0 must be a log-key entry", requirement="HC-6")
            if entry.type == hc.TYPE_LOG_KEY:
                self._track_key(entry, index)
            self._compact.append(merkle.leaf_hash(data))
            seen.append(EntrySeen(index, data))
        return seen

    def _track_key(self, entry: hc.Entry, index: int) -> None:
        key = hc.verify_log_key_entry(entry, origin=self.origin, index=index,
                                      key_in_force=self.keys[-1] if self.keys else None,
                                      pinned_key=self.keys[0] if index == 0 and self.keys
                                      else None)
        if key not in self.keys:
            self.keys.append(key)

    def finish(self) -> FollowerState:
        """HC-9, HC-12: the entries reach the checkpoint's size and hash to its root."""
        pending, compact = self._pending, self._compact
        if pending is None or compact is None:
            raise ParamsError("no checkpoint to finish", requirement="HC-12")
        if not self._consistent:
            raise ProofError("no consistency proof from the trusted checkpoint was checked",
                             requirement="HC-9")
        cp = pending.checkpoint
        if compact.size != cp.size:
            raise LinkError(f"entries end at {compact.size}, the checkpoint is at {cp.size}",
                            requirement="HC-12")
        if compact.root() != cp.root_hash:
            raise ProofError("the entries do not hash to the checkpoint's root",
                             requirement="HC-12")
        self._retire_keys(pending)
        self.state = FollowerState(checkpoint=pending.note.to_bytes(), size=cp.size,
                                   root=cp.root_hash, compact=tuple(compact.nodes),
                                   log_keys=tuple(self.keys))
        self._pending = None
        return self.state

    def _retire_keys(self, verified: note.VerifiedCheckpoint) -> None:
        """HC-50: once the newest key has signed a verified checkpoint, older keys go."""
        newest = note.log_verifier(self.origin, self.keys[-1])
        if any(s.name == newest.name and s.key_id == newest.key_id
               for s in verified.note.signatures):
            self.keys = [self.keys[-1]]


# --- step 9: identity history -------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryItem:
    index: int
    record_hash: bytes
    uid: hu.Uid


@dataclass
class IdentityHistory:
    """The UID entries of one identity, in log order, each with its opened UID (HC-13).

    `match` says whether an entry is the identity's and, if so, which record the client
    must fetch (by record index) and open (with the record hash); `add` checks the UID
    against the history so far. The history is valid when it starts with exactly one
    creation and every later UID is an update of the one before it (HC-48).
    """

    identity: str
    items: list[HistoryItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subject = hu.check_identity(self.identity)

    def match(self, data: bytes) -> tuple[bytes, bytes] | None:
        """(record_index, record_hash) of a UID entry of this identity, else None."""
        entry = hc.decode_entry(data)
        if entry.type != hc.TYPE_UID or not hc.names_subject(entry, self.subject):
            return None
        record_hash = hc.open_record_hash(hc.id_key_of(self.subject, entry.nonce, entry.type),
                                          entry.sealed_hash, entry.record_index, entry.type)
        return entry.record_index, record_hash

    def add(self, index: int, record_hash: bytes, uid: hu.Uid) -> None:
        """HC-13, HC-48: the UID recorded at `index` continues the history validly."""
        if self.items and index <= self.items[-1].index:
            raise ParamsError("history entries are added in log order", requirement="HC-13")
        if hu.uid_record_hash(uid) != record_hash:
            raise BindingError("the UID does not hash to the entry's record hash",
                               requirement="HC-24")
        if uid.content.identity != self.identity:
            raise BindingError("the UID is for another identity", requirement="HC-13")
        creation = uid.content.previous is None and uid.content.msg_count == 0
        if not self.items:
            if not creation:
                raise HistoryError("the identity's first UID is not a creation",
                                   requirement="HC-48")
            hu.verify_uid_create(uid, now=None)
        elif creation:
            raise HistoryError(f"a second creation of {self.identity} at index {index} (the "
                               f"first is at {self.items[0].index})", requirement="HC-48")
        else:
            hu.verify_uid_update(uid, self.items[-1].uid, now=None)
        self.items.append(HistoryItem(index, record_hash, uid))

    def current(self, *, now: int | None = None) -> hu.Uid:
        """HC-13: the last UID of a valid history (and, given `now`, valid now)."""
        if not self.items:
            raise BindingError(f"{self.identity} has no UID in the log", requirement="HC-13")
        uid = self.items[-1].uid
        if now is not None:
            hu.check_uid_validity(uid.content, now=now)
        return uid

    def check_own(self, made: Iterable[bytes]) -> None:
        """HC-49: the owner's check that every entry of its identity is one it made."""
        mine = set(made)
        for item in self.items:
            if item.record_hash not in mine:
                raise HistoryError(f"an entry at index {item.index} of {self.identity} was not "
                                   "made by its owner", requirement="HC-49")
