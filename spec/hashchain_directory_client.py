"""Flow hashchain, key directory steps 20 .. 22: what a client verifies (HC-89 .. HC-96).

20. A lookup answer, in this order: the label is the one asked for; the VRF proof gives
    the position; the leaf (or its absence) and the map proof give the map root; the
    commitment of the epoch is the root of the log entry, which is included in a
    checkpoint signed by the log (and cosigned as the client's policy requires); the epoch
    is not older than one the client saw, nor older than its maximum age (HC-89 .. HC-91).
21. An owner checks each of its identities at every epoch: its leaf is exactly what it
    made, or the next change it made; anything else is an attack (failure class monitor)
    (HC-92 .. HC-94).
22. An identity's history: the versions whose chain ends at the verified leaf, checked in
    O(versions) hashes plus one lookup, and passing through any leaf the client pinned
    earlier (HC-95, HC-96).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import wire
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    ExpiredError,
    ForkError,
    HistoryError,
    MonitorError,
    ParamsError,
    ProofError,
    ReplayError,
)

#: A client's default maximum age of an epoch it accepts as current (HC-91).
DEFAULT_MAX_EPOCH_AGE = 86400


@dataclass(frozen=True)
class Trust:
    """What a client pins: the directory's VRF key, the log (origin, keys) and its witness
    policy, and how old an epoch it accepts as current."""

    vrf_public_key: bytes
    origin: str
    log_keys: tuple[note.Verifier, ...]
    policy: note.WitnessPolicy = note.NO_WITNESSES
    max_epoch_age: int = DEFAULT_MAX_EPOCH_AGE


@dataclass(frozen=True)
class Lookup:
    """A verified lookup: the identity's latest version at `epoch` (None when absent)."""

    label: hd.Label
    epoch: int
    published_at: int
    position: bytes
    map_root: bytes
    commitment: bytes
    leaf: hd.LeafVersion | None
    value: object
    log_index: int
    checkpoint: note.Checkpoint

    @property
    def found(self) -> bool:
        return self.leaf is not None

    @property
    def removed(self) -> bool:
        return self.leaf is not None and self.value is None


# --- step 20: a lookup ------------------------------------------------------------------------

def verify_lookup(obj: object, *, label: hd.Label, trust: Trust, now: int,
                  last_epoch: int = 0, at_epoch: int | None = None) -> Lookup:
    """Step 20 (HC-89): verify a lookup answer for `label`, in the order of HC-89.
    `last_epoch` is the highest epoch the client accepted before; `at_epoch` asks for
    one past epoch (monitoring, step 21) instead of the current one."""
    answer = hd.parse_answer(obj)
    # 2. the label asked for
    if answer.label != label:
        raise BindingError(f"the answer is for {answer.label.describe()}, not "
                           f"{label.describe()}", requirement="HC-89")
    if at_epoch is not None and answer.epoch != at_epoch:
        raise BindingError(f"the answer is for epoch {answer.epoch}, not {at_epoch}",
                           requirement="HC-89")
    # 3. the position
    position = hd.verify_position(trust.vrf_public_key, label, answer.vrf_proof)
    # 4. the leaf and the map root
    leaf, map_root = _leaf_and_root(answer, position)
    # 5. the commitment and the log entry
    epoch = hd.Epoch(answer.epoch, answer.published_at, trust.vrf_public_key, map_root)
    index, checkpoint = verify_epoch_in_log(answer.log_entry, answer.log_proof, epoch=epoch,
                                            trust=trust, now=now)
    # 6. freshness
    if at_epoch is None:
        check_fresh(epoch, last_epoch=last_epoch, now=now, max_age=trust.max_epoch_age)
    return Lookup(label=label, epoch=answer.epoch, published_at=answer.published_at,
                  position=position, map_root=map_root, commitment=epoch.commitment,
                  leaf=leaf,
                  value=None if answer.leaf is None else answer.leaf.value, log_index=index,
                  checkpoint=checkpoint)


def _leaf_and_root(answer: hd.Answer, position: bytes) -> tuple[hd.LeafVersion | None, bytes]:
    """HC-82, HC-83, HC-85: the leaf the answer claims and the root its map proof gives."""
    found = answer.leaf
    if found is None:
        root = dmap.root_from_proof(position, answer.map_proof)
        if answer.map_proof.terminal is not None and \
                answer.map_proof.terminal.position == position:
            raise ProofError("an absence proof that ends at the identity's own leaf",
                             requirement="HC-85")
        return None, root
    if found.epoch > answer.epoch:
        raise BindingError("the leaf was added after the epoch that holds it",
                           requirement="HC-83")
    leaf = hd.LeafVersion(found.version, found.epoch,
                          hd.value_hash_of(answer.label, found.value), found.previous)
    proof = dmap.MapProof(answer.map_proof.siblings, dmap.Leaf(position, leaf.leaf_value))
    return leaf, dmap.root_from_proof(position, proof)


def verify_epoch_in_log(entry_bytes: bytes, proof_text: bytes, *, epoch: hd.Epoch,
                        trust: Trust, now: int) -> tuple[int, note.Checkpoint]:
    """Step 20 (HC-90): the entry is the epoch's directory entry and the log includes it
    in a checkpoint the client's log keys signed and its witness policy accepts."""
    entry = hc.decode_entry(entry_bytes)
    if entry.type != hc.TYPE_DIRECTORY:
        raise BindingError("the log entry is not a key-directory entry", requirement="HC-90")
    if entry.directory_epoch != epoch.epoch:
        raise BindingError(f"the log entry is for epoch {entry.directory_epoch}, not "
                           f"{epoch.epoch}", requirement="HC-90")
    if entry.directory_root != epoch.commitment:
        raise ProofError("the log entry does not commit to this VRF key, map root and "
                         "epoch", requirement="HC-86")
    tlog = note.parse_tlog_proof(proof_text)
    verified = note.verify_checkpoint(tlog.checkpoint, origin=trust.origin,
                                      log_keys=trust.log_keys, policy=trust.policy, now=now)
    checkpoint = verified.checkpoint
    merkle.verify_inclusion(index=tlog.index, size=checkpoint.size,
                            leaf=merkle.leaf_hash(entry_bytes), proof=tlog.proof,
                            root=checkpoint.root_hash)
    return tlog.index, checkpoint


def check_fresh(epoch: hd.Epoch, *, last_epoch: int, now: int, max_age: int | None) -> None:
    """Step 20 (HC-91), for a current lookup: never an epoch older than one accepted
    before (replay); at most `max_age` seconds old and not from the future (expired)."""
    if epoch.epoch < last_epoch:
        raise ReplayError(f"epoch {epoch.epoch} is older than epoch {last_epoch} seen before",
                          requirement="HC-91")
    if epoch.published_at > now + note.MAX_CLOCK_SKEW:
        raise ExpiredError("the epoch is published in the future", requirement="HC-91")
    if max_age is not None and now - epoch.published_at > max_age:
        raise ExpiredError(f"the epoch is {now - epoch.published_at} s old, more than "
                           f"{max_age} s", requirement="HC-91")


# --- step 21: owners monitor their identities -------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """A change the owner made and the directory has not shown yet: the value hash it
    must hold, and when the server accepted it."""

    value_hash: bytes
    accepted_at: int


@dataclass
class OwnerMonitor:
    """The owner's state for one of its identities (HC-92 .. HC-94).

    `made` records each change the owner makes (in order), `check` takes the verified
    lookup of every epoch in turn, from the first epoch after `checked_epoch`. The leaf
    must be the one the owner expects, or the next pending changes chained onto it, all
    added at that epoch; a change still missing from an epoch published more than
    `max_delay` seconds after the server accepted it is an attack too.
    """

    label: hd.Label
    max_delay: int
    checked_epoch: int = 0
    leaf: hd.LeafVersion | None = None
    pending: list[Pending] = field(default_factory=list)

    def made(self, value_hash: bytes, *, accepted_at: int) -> None:
        self.pending.append(Pending(value_hash, accepted_at))

    def check(self, lookup: Lookup) -> None:
        """Step 21: one epoch's verified lookup of the owner's identity."""
        if lookup.label != self.label:
            raise ParamsError("a lookup of another identity", requirement="HC-92")
        if lookup.epoch != self.checked_epoch + 1 and self.checked_epoch:
            raise ParamsError(f"epoch {lookup.epoch} skips epoch {self.checked_epoch + 1}: "
                              "an owner checks every epoch", requirement="HC-92")
        self.leaf, self.pending = expected_leaf(self.leaf, self.pending, lookup,
                                                max_delay=self.max_delay)
        self.checked_epoch = lookup.epoch


def expected_leaf(known: hd.LeafVersion | None, pending: Sequence[Pending], lookup: Lookup, *,
                  max_delay: int) -> tuple[hd.LeafVersion | None, list[Pending]]:
    """Step 21 (HC-93, HC-94): the owner's decision for one epoch. Returns the new known
    leaf and what is still pending; raises MonitorError on anything the owner did not
    make."""
    seen = lookup.leaf
    known_version = 0 if known is None else known.version
    if seen is None:
        if known is not None:
            raise MonitorError(f"{lookup.label.describe()} is absent at epoch {lookup.epoch}",
                               requirement="HC-93")
        _check_delay(pending, lookup, max_delay)
        return None, list(pending)
    if seen.version < known_version:
        raise MonitorError(f"version {seen.version} at epoch {lookup.epoch} is older than "
                           f"version {known_version}", requirement="HC-93")
    added = seen.version - known_version
    if added > len(pending):
        raise MonitorError(f"{lookup.label.describe()} holds version {seen.version} at epoch "
                           f"{lookup.epoch}; its owner made {known_version + len(pending)}",
                           requirement="HC-93")
    expected = known
    for change in pending[:added]:
        expected = hd.next_version(expected, change.value_hash, lookup.epoch)
    if expected is None or expected.leaf_value != seen.leaf_value:
        raise MonitorError(f"{lookup.label.describe()} holds a leaf its owner did not make at "
                           f"epoch {lookup.epoch}", requirement="HC-93")
    rest = list(pending[added:])
    _check_delay(rest, lookup, max_delay)
    return expected, rest


def _check_delay(pending: Sequence[Pending], lookup: Lookup, max_delay: int) -> None:
    if pending and lookup.published_at - pending[0].accepted_at > max_delay:
        raise MonitorError(f"a change accepted at {pending[0].accepted_at} is missing from "
                           f"epoch {lookup.epoch}", requirement="HC-94")


# --- step 22: history -------------------------------------------------------------------------

HISTORY_MEMBERS = ("versions",)
VERSION_MEMBERS = ("version", "epoch", "value")


@dataclass(frozen=True)
class HistoryVersion:
    leaf: hd.LeafVersion
    value: object


@dataclass(frozen=True)
class History:
    lookup: Lookup
    versions: tuple[HistoryVersion, ...]


def verify_history(obj: object, *, label: hd.Label, trust: Trust, now: int,
                   last_epoch: int = 0,
                   pinned: hd.LeafVersion | None = None) -> History:
    """Step 22 (HC-95, HC-96): a history answer is a lookup answer with a member
    `versions` listing every version 1..n, oldest first; their chain must end at the
    verified leaf, and pass through the leaf the client pinned, if any (fork)."""
    if not isinstance(obj, dict) or "versions" not in obj:
        raise DecodeError("a history answer is a lookup answer with versions",
                          requirement="HC-95")
    raw_versions = obj["versions"]
    lookup = verify_lookup({k: v for k, v in obj.items() if k != "versions"}, label=label,
                           trust=trust, now=now, last_epoch=last_epoch)
    if not isinstance(raw_versions, list):
        raise DecodeError("history.versions must be a list", requirement="HC-95")
    latest = lookup.leaf
    count = 0 if latest is None else latest.version
    if len(raw_versions) != count:
        raise HistoryError(f"the history lists {len(raw_versions)} versions, the leaf is "
                           f"version {count}", requirement="HC-95")
    out: list[HistoryVersion] = []
    previous: hd.LeafVersion | None = None
    for number, raw in enumerate(raw_versions, start=1):
        item = wire.members(raw, VERSION_MEMBERS, "history.versions[]")
        version = wire.integer(item, "version", "history.versions[]")
        epoch = wire.integer(item, "epoch", "history.versions[]")
        if version != number:
            raise HistoryError(f"version {version} is listed where {number} belongs",
                               requirement="HC-95")
        if not 1 <= epoch <= lookup.epoch or (previous is not None and epoch < previous.epoch):
            raise HistoryError(f"version {version} has epoch {epoch} out of order",
                               requirement="HC-95")
        previous = hd.next_version(previous, hd.value_hash_of(label, item["value"]), epoch)
        out.append(HistoryVersion(previous, item["value"]))
    if latest is not None and (previous is None or previous.leaf_value != latest.leaf_value):
        raise ProofError("the versions do not chain to the verified leaf", requirement="HC-95")
    if pinned is not None:
        check_pinned(out, pinned)
    return History(lookup=lookup, versions=tuple(out))


def check_pinned(versions: Sequence[HistoryVersion], pinned: hd.LeafVersion) -> None:
    """HC-96: a verified history passes through every leaf the client accepted before;
    otherwise the directory showed two histories (fork)."""
    if pinned.version > len(versions) or \
            versions[pinned.version - 1].leaf.leaf_value != pinned.leaf_value:
        raise ForkError(f"the history does not pass through version {pinned.version} seen "
                        "before", requirement="HC-96")


def history_to_wire(answer: dict[str, Any], versions: Sequence[tuple[int, object]]
                    ) -> dict[str, Any]:
    """HC-95: a history answer, from a lookup answer and (epoch, value) per version."""
    return {**answer, "versions": [{"version": i, "epoch": e, "value": v}
                                   for i, (e, v) in enumerate(versions, start=1)]}
