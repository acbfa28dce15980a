"""The reference log store as another flow's server code uses it: append a key-directory
root entry inside its own write transaction (HC-47), then read the C2SP tlog-proof of it
that a lookup carries, and verify that proof as a client does."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from servers import start_reference_server

from keyflows.conformance.checks.hashchain_support import Person, make_uid
from keyflows.reference import hashchain as routes
from keyflows.reference import hashchain_config
from keyflows.reference.hashchain_store import HashchainStore
from keyflows.reference.store import canonical_json
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec.hashchain_mute import map_localpart


def test_directory_root_entry_and_its_tlog_proof(tmp_path: Path) -> None:
    server = start_reference_server("http://127.0.0.1:9", tmp_path / "keys.sqlite3")
    try:
        store = server.app_state.hashchain
        assert isinstance(store, HashchainStore)
        root = os.urandom(32)
        entry = hc.build_directory_entry(epoch=1, root=root, nonce=os.urandom(16))
        with store.store.write() as db:  # the directory's own transaction
            index = store.append_entry(db, entry)
        proof = note.parse_tlog_proof(asyncio.run(routes.tlog_proof(server.app_state, index)))
        assert proof.index == index
        verified = note.verify_checkpoint(proof.checkpoint, origin=store.origin,
                                          log_keys=[store.verifier])
        merkle.verify_inclusion(index=index, size=verified.checkpoint.size,
                                leaf=merkle.leaf_hash(entry), proof=proof.proof,
                                root=verified.checkpoint.root_hash)
        decoded = hc.decode_entry(entry)
        assert decoded.type == hc.TYPE_DIRECTORY
    finally:
        server.stop()


def fresh_person(store: HashchainStore, label: str) -> Person:
    local = map_localpart(f"{label}-{os.urandom(3).hex()}")
    return Person(identity=f"{local}@{store.domains[0]}", sigkey_seed=os.urandom(32),
                  escrow_seed=os.urandom(32), x25519_private=os.urandom(32))


def test_uid_hooks_run_in_the_uid_transaction(tmp_path: Path) -> None:
    """A store-level UID hook sees (db, identity, record_hash, uid_json) inside the UID's
    own transaction: what it writes commits with the UID, and a hook that raises undoes
    the UID and its log entry."""
    server = start_reference_server("http://127.0.0.1:9", tmp_path / "keys.sqlite3")
    try:
        store = server.app_state.hashchain
        assert isinstance(store, HashchainStore)
        seen: list[tuple[str, bytes, str, int]] = []

        def hook(db: Any, identity: str, record_hash: bytes, uid_json: str) -> None:
            # the entry of this UID is already in the log, in this transaction
            seen.append((identity, record_hash, uid_json,
                         int(db.execute("SELECT COUNT(*) FROM hashchain_log").fetchone()[0])))

        store.store.uid_hooks.append(hook)
        checkpoint = note.parse_checkpoint_text(note.parse_note(
            store.published_checkpoint()[1]  # type: ignore[index]
        ).text)
        who = fresh_person(store, "hook")
        uid = make_uid(who, checkpoint)
        appended = store.create_uid(uid, hu.uid_record_hash(uid))
        assert seen == [(who.identity, appended.record_hash,
                         canonical_json(hu.uid_to_wire(uid)), appended.index + 1)]
        assert hu.parse_uid(json.loads(seen[0][2])) == uid

        def failing(*_: Any) -> None:
            raise RuntimeError("the directory refused")

        store.store.uid_hooks.append(failing)
        size = store.size()
        other = make_uid(fresh_person(store, "hooktwo"), checkpoint)
        with pytest.raises(RuntimeError):
            store.create_uid(other, hu.uid_record_hash(other))
        assert store.size() == size
        assert store.current_uid(other.content.identity) is None
    finally:
        server.stop()


def test_a_database_keeps_its_origin_and_entry_0(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """HC-6, HC-22 at start-up (HashchainStore.attach): the first start writes the
    configured origin and entry 0; a restart on the same database under another configured
    origin keeps the stored origin, the log key and entry 0 (no second key entry)."""
    db = tmp_path / "keys.sqlite3"
    monkeypatch.setenv(hashchain_config.ENV_ORIGIN, "first.example/log")
    server = start_reference_server("http://127.0.0.1:9", db)
    try:
        first = server.app_state.hashchain
        assert isinstance(first, HashchainStore)
        assert first.origin == "first.example/log"
        size, log_key = first.size(), first.log_key
        entry0 = first.store.read(lambda d: bytes(
            d.execute("SELECT entry FROM hashchain_log WHERE idx = 0").fetchone()[0]))
    finally:
        server.stop()
    monkeypatch.setenv(hashchain_config.ENV_ORIGIN, "second.example/log")
    server = start_reference_server("http://127.0.0.1:9", db)
    try:
        again = server.app_state.hashchain
        assert isinstance(again, HashchainStore)
        assert again.origin == "first.example/log" and again.size() == size
        assert again.log_key == log_key
        hc.verify_log_key_entry(hc.decode_entry(entry0), origin=again.origin, index=0,
                                key_in_force=None, pinned_key=log_key)
        _, signed, _ = again.latest_checkpoint()
        assert note.verify_checkpoint(signed, origin="first.example/log",
                                      log_keys=[again.verifier]).checkpoint.size == size
    finally:
        server.stop()


def test_checkpoint_lag_is_configured_and_checked() -> None:
    """HC-19: KEYFLOWS_HASHCHAIN_MAX_CHECKPOINT_LAG sets the lag (default 4096); a value
    that is not a number of entries stops the server at start-up."""
    env = hashchain_config.ENV_MAX_CHECKPOINT_LAG
    assert hashchain_config.load({}).max_checkpoint_lag == hu.DEFAULT_MAX_CHECKPOINT_LAG
    assert hashchain_config.load({env: "16"}).max_checkpoint_lag == 16
    assert hashchain_config.load({env: "0"}).max_checkpoint_lag == 0
    for bad in ("-1", "", "4k", "1.5", str(2**63)):
        with pytest.raises(ValueError, match=env):
            hashchain_config.load({env: bad})
