"""The reference log store as another flow's server code uses it: append a key-directory
root entry inside its own write transaction (HC-47), then read the C2SP tlog-proof of it
that a lookup carries, and verify that proof as a client does."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from servers import start_reference_server

from keyflows.reference import hashchain as routes
from keyflows.reference.hashchain_store import HashchainStore
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note


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
