"""Deliberately broken key directories: the runner's hashchain/directory checks must
catch every one. Each variant is the reference server with one fault monkeypatched into
the directory's routes or store (never into spec/, which the in-process runner shares)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class DirectoryVariant:
    name: str
    fault: str
    must_fail: str
    patch: Patch


def wrong_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers a keypair lookup with the answer for the same user's other application."""
    from keyflows.reference import directory
    from keyflows.spec import hashchain_directory as hd

    original = directory.label_of

    def label_of(request: Any, kind: str) -> hd.Label:
        label = original(request, kind)
        if kind != hd.KIND_KEYPAIR:
            return label
        return hd.Label(kind, (label.names[0], label.names[1] + "-other"))

    monkeypatch.setattr(directory, "label_of", label_of)


def _lookup_patched(monkeypatch: pytest.MonkeyPatch, change: Callable[[Any], Any]) -> None:
    from keyflows.reference.directory_store import DirectoryStore

    original = DirectoryStore.lookup

    def lookup(self: DirectoryStore, *args: Any) -> Any:
        found = original(self, *args)
        return None if found is None else change(found)

    monkeypatch.setattr(DirectoryStore, "lookup", lookup)


def map_proof_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds an empty sibling at the top of every map proof: it no longer leads to the
    committed root."""
    from keyflows.spec import hashchain_directory_map as dmap

    def change(found: Any) -> Any:
        stored, latest, proof, versions = found
        bad = dmap.MapProof((*proof.siblings, dmap.EMPTY), proof.terminal)
        return stored, latest, bad, versions

    _lookup_patched(monkeypatch, change)


def root_not_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    """States a publication time one second later than the epoch's: the (epoch, time,
    VRF key, root) it claims is not what the log committed."""
    def change(found: Any) -> Any:
        stored, latest, proof, versions = found
        epoch = dataclasses.replace(stored.epoch, published_at=stored.epoch.published_at + 1)
        return dataclasses.replace(stored, epoch=epoch), latest, proof, versions

    _lookup_patched(monkeypatch, change)


def deletion_unpublished(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts keypair deletions but never publishes them in the directory."""
    from keyflows.reference.directory_store import DirectoryStore

    original = DirectoryStore.queue

    def queue(self: DirectoryStore, tx: Any, label: Any, value: object,
              value_bytes: bytes) -> None:
        if value is not None:
            original(self, tx, label, value, value_bytes)

    monkeypatch.setattr(DirectoryStore, "queue", queue)


def history_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists only the latest version in a history."""
    from keyflows.reference import directory
    from keyflows.spec import hashchain_directory_client as hdc

    def history_to_wire(answer: dict[str, Any], versions: Any) -> dict[str, Any]:
        return hdc.history_to_wire(answer, list(versions)[-1:])

    fake = types.SimpleNamespace(history_to_wire=history_to_wire,
                                 DEFAULT_MAX_EPOCH_AGE=hdc.DEFAULT_MAX_EPOCH_AGE)
    monkeypatch.setattr(directory, "hdc", fake)


def past_epochs_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignores the epoch parameter: every lookup is answered at the latest epoch."""
    from keyflows.reference import directory

    monkeypatch.setattr(directory, "query_epoch", lambda request: None)


def apps_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists a user's applications to anyone (the VRF then hides nothing)."""
    from broken_servers import public_apps_list

    public_apps_list(monkeypatch)


def bodies_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads no body on the directory's routes, so none is refused for its size."""
    from keyflows.reference import directory

    async def no_body(request: Any) -> bytes:
        return b""

    monkeypatch.setattr(directory, "limited_body", no_body)


def reset_unpublished(monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishes initial keypairs and rotations in the directory, never a reset."""
    from keyflows.reference.directory_store import DirectoryStore

    original = DirectoryStore.queue

    def queue(self: DirectoryStore, tx: Any, label: Any, value: object,
              value_bytes: bytes) -> None:
        if not (isinstance(value, dict) and value.get("change") == {"type": "reset"}):
            original(self, tx, label, value, value_bytes)

    monkeypatch.setattr(DirectoryStore, "queue", queue)


def mlkem_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers keypair lookups with the public view without its ML-KEM-768 key (a
    directory that knows only the X25519 and Ed25519 members)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict) and "public_keys" in value:
            keys = {k: v for k, v in value["public_keys"].items() if k != "mlkem768"}
            return {**value, "public_keys": keys}
        return value

    def change(found: Any) -> Any:
        stored, latest, proof, versions = found
        if latest is not None:
            latest = dataclasses.replace(latest, value=strip(latest.value))
        return stored, latest, proof, [dataclasses.replace(v, value=strip(v.value))
                                       for v in versions]

    _lookup_patched(monkeypatch, change)


VARIANTS = (
    DirectoryVariant("wrong-label", "a lookup answered for another identity",
                     "hashchain/directory/lookup-verifies", wrong_label),
    DirectoryVariant("map-proof-broken", "a map proof that does not lead to the root",
                     "hashchain/directory/lookup-verifies", map_proof_broken),
    DirectoryVariant("root-not-committed", "a root the log did not commit",
                     "hashchain/directory/lookup-verifies", root_not_committed),
    DirectoryVariant("deletion-unpublished", "a deletion accepted and never published",
                     "hashchain/directory/owner-monitors", deletion_unpublished),
    DirectoryVariant("history-truncated", "a history without its earlier versions",
                     "hashchain/directory/history-verifies", history_truncated),
    DirectoryVariant("apps-listed", "a user's applications listed to anyone",
                     "hashchain/directory/no-enumeration", apps_listed),
    DirectoryVariant("reset-unpublished", "a keypair reset accepted and never published",
                     "hashchain/directory/hybrid-reset-verifies", reset_unpublished),
    DirectoryVariant("mlkem-stripped", "a keypair's ML-KEM-768 key left out of its answers",
                     "hashchain/directory/hybrid-reset-verifies", mlkem_stripped),
    DirectoryVariant("past-epochs-forgotten", "lookups at a past epoch answered at the latest",
                     "hashchain/directory/past-epochs", past_epochs_forgotten),
    DirectoryVariant("bodies-unlimited", "a directory route reading any body",
                     "hashchain/directory/body-on-bodiless", bodies_unlimited),
)
