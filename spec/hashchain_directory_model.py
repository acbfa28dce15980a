"""Flow hashchain, key directory: a directory in memory (vectors, tests, benchmark).

It does what a directory server does with the functions of hashchain_directory and
hashchain_directory_map, over a hashchain.TransparencyLog: changes are staged, an epoch
applies them (one new version per change, HC-83), commits the map root (HC-86) in the
log, and keeps the map of every epoch so that it can answer a lookup at any past epoch
(owners monitor every epoch, HC-92). The reference server keeps the same state in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyflows.spec import ecvrf
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_note as note
from keyflows.spec.errors import ParamsError


@dataclass
class Snapshot:
    """One epoch: what it commits, its log entry's index, its map and each identity's
    leaf versions as of that epoch."""

    epoch: hd.Epoch
    entry: bytes
    index: int
    map: dmap.MemoryMap
    versions: dict[hd.Label, list[tuple[hd.LeafVersion, Any]]]


@dataclass
class DirectoryModel:
    vrf_secret_key: bytes
    log: hc.TransparencyLog
    snapshots: list[Snapshot] = field(default_factory=list)
    staged: list[tuple[hd.Label, Any]] = field(default_factory=list)
    _positions: dict[hd.Label, hd.Positioned] = field(default_factory=dict)

    @property
    def vrf_public_key(self) -> bytes:
        return ecvrf.public_key(self.vrf_secret_key)

    def positioned(self, label: hd.Label) -> hd.Positioned:
        """Step 14 (HC-80): the VRF evaluation of a label (remembered: it never changes)."""
        if label not in self._positions:
            self._positions[label] = hd.prove_position(ecvrf.expand(self.vrf_secret_key),
                                                       label)
        return self._positions[label]

    def stage(self, label: hd.Label, value: Any) -> None:
        """A change: the label's next version will hold `value` (None removes it)."""
        hd.value_hash_of(label, value)   # refuse a value that does not check out now
        self.staged.append((label, value))

    @property
    def latest(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def publish(self, *, published_at: int, nonce: bytes,
                forged: Mapping[hd.Label, list[tuple[hd.LeafVersion, Any]] | None]
                | None = None) -> Snapshot:
        """Step 18 (HC-83, HC-86, HC-87): apply every staged change as the next version
        of its identity, commit the new map in the log, keep the epoch's snapshot.
        `forged` replaces (or, with None, removes) identities' versions as a dishonest
        directory would: the vectors of owner monitoring need such epochs."""
        last = self.latest
        number = 1 if last is None else last.epoch.epoch + 1
        hd.check_next_epoch(None if last is None else last.epoch, number, published_at)
        versions = {} if last is None else {k: list(v) for k, v in last.versions.items()}
        tree = dmap.MemoryMap() if last is None else last.map.copy()
        changes: dict[bytes, bytes] = {}
        for label, value in self.staged:
            history = versions.setdefault(label, [])
            current = history[-1][0] if history else None
            leaf = hd.next_version(current, hd.value_hash_of(label, value), number)
            history.append((leaf, value))
            changes[self.positioned(label).position] = leaf.leaf_value
        self.staged = []
        if forged:
            for label, replaced in forged.items():
                if replaced is None:
                    versions.pop(label, None)
                else:
                    versions[label] = list(replaced)
            tree = dmap.MemoryMap()
            changes = {self.positioned(label).position: history[-1][0].leaf_value
                       for label, history in versions.items()}
        tree.apply(changes)
        epoch = hd.Epoch(number, published_at, self.vrf_public_key, tree.root)
        entry = hd.epoch_entry(epoch, nonce)
        index = self.log.append_raw(entry)
        snapshot = Snapshot(epoch, entry, index, tree, versions)
        self.snapshots.append(snapshot)
        return snapshot

    def snapshot(self, epoch: int | None = None) -> Snapshot:
        if not self.snapshots:
            raise ParamsError("the directory has published no epoch", requirement="HC-98")
        if epoch is None:
            return self.snapshots[-1]
        if not 1 <= epoch <= len(self.snapshots):
            raise ParamsError(f"no epoch {epoch}", requirement="HC-98")
        return self.snapshots[epoch - 1]

    def tlog_proof(self, index: int, *, cosignatures: tuple[note.NoteSignature, ...] = (),
                   size: int | None = None) -> bytes:
        """The C2SP tlog-proof of a log entry against a checkpoint of the log (its
        current size by default), with the given witness cosignatures added."""
        size = self.log.size if size is None else size
        signed = note.add_signatures(self.log.signed_checkpoint(size), cosignatures)
        return note.TlogProof(index=index, proof=tuple(self.log.inclusion_proof(index, size)),
                              checkpoint=signed.to_bytes()).to_bytes()

    def answer(self, label: hd.Label, *, epoch: int | None = None,
               cosignatures: tuple[note.NoteSignature, ...] = (),
               size: int | None = None) -> dict[str, Any]:
        """Step 19 (HC-88): the lookup answer for `label` at an epoch (the latest)."""
        snap = self.snapshot(epoch)
        positioned = self.positioned(label)
        proof = snap.map.prove(positioned.position)
        history = snap.versions.get(label)
        found = None
        if history:
            leaf, value = history[-1]
            found = hd.FoundLeaf(leaf.version, leaf.epoch, leaf.previous, value)
        answer = hd.Answer(label=label, epoch=snap.epoch.epoch,
                           published_at=snap.epoch.published_at, vrf_proof=positioned.proof,
                           leaf=found, map_proof=proof, log_entry=snap.entry,
                           log_proof=self.tlog_proof(snap.index, cosignatures=cosignatures,
                                                     size=size))
        return hd.answer_to_wire(answer)

    def history(self, label: hd.Label, **kwargs: Any) -> dict[str, Any]:
        """Step 22 (HC-95): the lookup answer and every version of the label."""
        answer = self.answer(label, **kwargs)
        versions = self.snapshot(kwargs.get("epoch")).versions.get(label, [])
        return {**answer, "versions": [{"version": leaf.version, "epoch": leaf.epoch,
                                        "value": value} for leaf, value in versions]}
