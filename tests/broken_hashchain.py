"""Deliberately broken hashchain servers: the conformance runner must catch every one.

Each variant is the real reference server with one fault monkeypatched into the
hashchain store, routes or spec calls, where a real bug (or a malicious operator) would
sit. Each names the checks that must fail because of it; `only` says that no other
hashchain check may fail, so the check that catches it is the one named for the attack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class HashchainVariant:
    name: str
    fault: str
    must_fail: tuple[str, ...]
    patch: Patch
    only: bool = True


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def rewrites_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """On every append past entry 3, changes the nonce of entry 1 and rebuilds the whole
    tree and the latest checkpoint over it: each new tree is valid on its own, but does
    not extend the one the log signed before."""
    from keyflows.reference.hashchain_store import HashchainStore
    from keyflows.spec import hashchain_merkle as merkle
    from keyflows.spec import hashchain_note as note

    original = HashchainStore._append

    def append(self: HashchainStore, db: Any, entry: bytes) -> int:
        index = original(self, db, entry)
        if index < 3:
            return index
        old = bytes(db.execute("SELECT entry FROM hashchain_log WHERE idx = 1").fetchone()[0])
        db.execute("UPDATE hashchain_log SET entry = ? WHERE idx = 1", (_flip(old, 3),))
        db.execute("DELETE FROM hashchain_nodes")
        tree = merkle.MerkleTree()
        for (data,) in db.execute("SELECT entry FROM hashchain_log ORDER BY idx").fetchall():
            tree.append(bytes(data))
        for level, hashes in enumerate(tree.levels):
            for i in range(len(hashes) // 32):
                db.execute("INSERT INTO hashchain_nodes (level, idx, hash) VALUES (?, ?, ?)",
                           (level, i, tree.node(level, i)))
        signed = note.sign_checkpoint(note.Checkpoint(self.origin, index + 1, tree.root()),
                                      seeds=[self.log_seed])
        db.execute("UPDATE hashchain_checkpoints SET note = ? WHERE size = ?",
                   (signed.to_bytes(), index + 1))
        return index

    monkeypatch.setattr(HashchainStore, "_append", append)


def bad_inclusion_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flips a bit in the first hash of every inclusion proof it serves as JSON (the
    proofs in its UID replies stay right)."""
    from keyflows.spec import hashchain_tiles as tiles

    original = tiles.inclusion_to_wire

    def to_wire(index: int, size: int, proof: list[bytes]) -> Any:
        if proof:
            proof = [_flip(proof[0], 0), *proof[1:]]
        return original(index, size, proof)

    monkeypatch.setattr(tiles, "inclusion_to_wire", to_wire)


def bad_consistency_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flips a bit in the last hash of the JSON consistency proofs between sizes more than
    one entry apart (clients that sync after each entry do not notice)."""
    from keyflows.spec import hashchain_tiles as tiles

    original = tiles.consistency_to_wire

    def to_wire(size1: int, size2: int, root1: bytes, proof: list[bytes]) -> Any:
        if size2 - size1 > 1 and proof:
            proof = [*proof[:-1], _flip(proof[-1], 31)]
        return original(size1, size2, root1, proof)

    monkeypatch.setattr(tiles, "consistency_to_wire", to_wire)


def splits_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shows a client whose User-Agent names "client-b" another log: the same entries but
    the last one's nonce changed, with its own tiles and a checkpoint the log signs."""
    import keyflows.reference.hashchain as routes
    from keyflows.spec import hashchain_merkle as merkle
    from keyflows.spec import hashchain_note as note
    from keyflows.spec import hashchain_tiles as tiles

    def fork(store: Any) -> tuple[list[bytes], merkle.MerkleTree]:
        entries = store.store.read(lambda db: [bytes(r[0]) for r in db.execute(
            "SELECT entry FROM hashchain_log ORDER BY idx").fetchall()])
        entries[-1] = _flip(entries[-1], 5)
        tree = merkle.MerkleTree()
        for entry in entries:
            tree.append(entry)
        return entries, tree

    def for_b(request: Any) -> bool:
        return "client-b" in request.headers.get("user-agent", "")

    real_checkpoint, real_tile = routes.get_checkpoint, routes.get_tile

    async def get_checkpoint(request: Any) -> Any:
        if not for_b(request):
            return await real_checkpoint(request)
        store = routes.chain(request)
        _, tree = fork(store)
        signed = note.sign_checkpoint(note.Checkpoint(store.origin, tree.size, tree.root()),
                                      seeds=[store.log_seed])
        return routes.text_response(signed.to_bytes(), tiles.CHECKPOINT_MEDIA_TYPE,
                                    tiles.SHORT_LIVED)

    async def get_tile(request: Any) -> Any:
        if not for_b(request):
            return await real_tile(request)
        tile = tiles.parse_tile_path(request.path_params["path"])
        entries, tree = fork(routes.chain(request))
        if tile.level is None:
            body = tiles.entry_bundle(entries[tile.first_node:tile.first_node + tile.width])
        else:
            body = tiles.tile_hashes(tile, tree.node)
        return routes.text_response(body, tiles.TILE_MEDIA_TYPE, tile.cache_control())

    monkeypatch.setattr(routes, "get_checkpoint", get_checkpoint)
    monkeypatch.setattr(routes, "get_tile", get_tile)


def accepts_second_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a second creation of an existing identity through (the critical attack: the
    server re-creates an identity with keys it holds)."""
    from keyflows.spec import hashchain_uid as hu

    monkeypatch.setattr(hu, "decide_create", lambda existing: None)


def skips_witnesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never submits its checkpoints to its witnesses, though it lists them."""
    import keyflows.reference.hashchain as routes

    async def ask(self: Any, *args: Any) -> None:
        return None

    monkeypatch.setattr(routes.Publisher, "_ask", ask)


def cheats_witnesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Submits checkpoints to its witnesses with a consistency proof that does not verify."""
    import keyflows.reference.hashchain as routes

    original = routes.Publisher._proof

    def proof(self: Any, size1: int, size2: int) -> list[bytes]:
        hashes = original(self, size1, size2)
        return [_flip(hashes[0], 0), *hashes[1:]]

    monkeypatch.setattr(routes.Publisher, "_proof", proof)


def lax_ed25519(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifies Ed25519 signatures without the strict rule's checks (cofactorless
    equation only, as many libraries do)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from keyflows.spec import primitives
    from keyflows.spec.errors import SignatureError

    def verify(public_key: bytes, message: bytes, signature: bytes, *,
               requirement: str | None = None) -> None:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError("does not verify", requirement=requirement) from exc

    monkeypatch.setattr(primitives, "ed25519_verify", verify)


def reserves_keyinits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hands out a KeyInit without marking it served: the next fetch gets it again."""
    import keyflows.reference.hashchain_store as store

    monkeypatch.setattr(store, "SERVED", store.PENDING)


def ignores_keyinit_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks a KeyInit's identity, signer and signature but not its dates (HC-25)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import primitives

    original = hu.verify_keyinit

    def dateless(ki: Any, *, identity: str, current_sigkey: bytes, now: int) -> None:
        if ki.identity != identity or ki.sigkey != current_sigkey:
            original(ki, identity=identity, current_sigkey=current_sigkey, now=now)
        primitives.ed25519_verify(
            ki.sigkey, hu.keyinit_message(ki.identity, ki.sigkey, ki.key_id, ki.not_before,
                                          ki.not_after, ki.x25519),
            ki.signature, requirement="HC-25")

    monkeypatch.setattr(hu, "verify_keyinit", dateless)


def keyinit_for_any_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes a KeyInit whatever identity it names, if the path's SIGKEY signed it (HC-26)."""
    from keyflows.spec import hashchain_uid as hu

    original = hu.verify_keyinit

    def verify_keyinit(ki: Any, *, identity: str, current_sigkey: bytes, now: int) -> None:
        original(ki, identity=ki.identity, current_sigkey=current_sigkey, now=now)

    monkeypatch.setattr(hu, "verify_keyinit", verify_keyinit)


def ignores_uid_validity_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compares a UID's validity with now but not its length or order (HC-18)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec.errors import ExpiredError

    def check_uid_validity(c: Any, *, now: int | None) -> None:
        if now is not None and not c.not_before <= now < c.not_after:
            raise ExpiredError("UID is not valid now", requirement="HC-18")

    monkeypatch.setattr(hu, "check_uid_validity", check_uid_validity)


def accepts_one_bad_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks a creation's SIGKEY signature but never the SIGESCROW one."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import primitives

    def verify(uid: hu.Uid, *, now: int | None, domains: Any = None) -> bytes:
        c = uid.content
        hu.check_identity(c.identity, domains=domains)
        body = hu.uid_content_bytes(c)
        primitives.ed25519_verify(c.sigkey, hu.uid_signature_message("sigkey", body),
                                  uid.sig_sigkey, requirement="HC-16")
        hu.check_uid_validity(c, now=now)
        return hu.uid_record_hash(uid)

    monkeypatch.setattr(hu, "verify_uid_create", verify)


def accepts_creation_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks a creation's identity, both signatures and validity, but not its shape:
    update fields (msg_count, previous, a previous signature) and SIGKEY == SIGESCROW pass
    (HC-16)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import primitives
    from keyflows.spec.errors import SignatureError

    def verify(uid: hu.Uid, *, now: int | None, domains: Any = None) -> bytes:
        c = uid.content
        hu.check_identity(c.identity, domains=domains)
        body = hu.uid_content_bytes(c)
        if uid.sig_sigescrow is None:
            raise SignatureError("a creation must be signed by SIGESCROW", requirement="HC-16")
        primitives.ed25519_verify(c.sigkey, hu.uid_signature_message("sigkey", body),
                                  uid.sig_sigkey, requirement="HC-16")
        primitives.ed25519_verify(c.sigescrow, hu.uid_signature_message("sigescrow", body),
                                  uid.sig_sigescrow, requirement="HC-16")
        hu.check_uid_validity(c, now=now)
        return hu.uid_record_hash(uid)

    monkeypatch.setattr(hu, "verify_uid_create", verify)


def accepts_loose_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks an update's identity, msg_count, SIGKEY signature and, when present, the
    previous key's signature and role, but not its previous hash, SIGKEY != SIGESCROW, the
    SIGESCROW signature or its validity (HC-17)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import primitives
    from keyflows.spec.errors import AuthzError, BindingError, ReplayError

    def verify(uid: hu.Uid, previous: hu.Uid, *, now: int | None,
               domains: Any = None) -> bytes:
        c, p = uid.content, previous.content
        hu.check_identity(c.identity, domains=domains)
        if c.identity != p.identity:
            raise BindingError("an update must keep the identity", requirement="HC-17")
        if c.msg_count != p.msg_count + 1:
            raise ReplayError("msg_count must be one more", requirement="HC-17")
        body = hu.uid_content_bytes(c)
        primitives.ed25519_verify(c.sigkey, hu.uid_signature_message("sigkey", body),
                                  uid.sig_sigkey, requirement="HC-17")
        if uid.sig_previous is not None:
            if c.sigescrow != p.sigescrow and uid.previous_role != "sigescrow":
                raise AuthzError("needs the previous SIGESCROW", requirement="HC-17")
            signer = p.sigkey if uid.previous_role == "sigkey" else p.sigescrow
            primitives.ed25519_verify(
                signer, hu.uid_signature_message(f"previous-{uid.previous_role}", body),
                uid.sig_previous, requirement="HC-17")
        return hu.uid_record_hash(uid)

    monkeypatch.setattr(hu, "verify_uid_update", verify)


def accepts_empty_last_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes a UID whose last_checkpoint is the empty tree (size 0) (HC-19)."""
    from keyflows.spec import hashchain_uid as hu

    original = hu.check_last_checkpoint

    def check(last: hu.LastCheckpoint, *, root_at: Callable[[int], bytes], log_size: int,
              max_lag: int = hu.DEFAULT_MAX_CHECKPOINT_LAG) -> None:
        if last.size == 0 and last.root == root_at(0):
            return
        original(last, root_at=root_at, log_size=log_size, max_lag=max_lag)

    monkeypatch.setattr(hu, "check_last_checkpoint", check)


def ignores_checkpoint_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes a UID whose last_checkpoint is of this log however far behind it lies (HC-19)."""
    from keyflows.spec import hashchain_uid as hu

    original = hu.check_last_checkpoint

    def check(last: hu.LastCheckpoint, *, root_at: Callable[[int], bytes], log_size: int,
              max_lag: int = hu.DEFAULT_MAX_CHECKPOINT_LAG) -> None:
        original(last, root_at=root_at, log_size=log_size, max_lag=log_size)

    monkeypatch.setattr(hu, "check_last_checkpoint", check)


def accepts_loose_keyinits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decodes KeyInits without checking their identity's syntax or X25519 key, and
    checks key_ids only against earlier batches (HC-14, HC-25, HC-26)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import wire
    from keyflows.spec.encoding import b64url_decode_exact
    from keyflows.spec.errors import ReplayError
    from keyflows.spec.hashchain import MAX_INDEX

    def parse(obj: object) -> hu.KeyInit:
        m = wire.members(obj, ("identity", "sigkey", "key_id", "not_before", "not_after",
                               "x25519", "signature"), "keyinit")
        return hu.KeyInit(identity=wire.string(m, "identity", "keyinit"),
                          sigkey=hu._key(m, "sigkey", "keyinit"),
                          key_id=b64url_decode_exact(wire.string(m, "key_id", "keyinit"),
                                                     hu.KEYINIT_ID_LEN, field="key_id"),
                          not_before=hu._uint(m, "not_before", "keyinit", MAX_INDEX),
                          not_after=hu._uint(m, "not_after", "keyinit", MAX_INDEX),
                          x25519=hu._key(m, "x25519", "keyinit"),
                          signature=hu._sig(m, "signature", "keyinit"))

    def decide(keyinits: Any, *, identity: str, current_sigkey: bytes, now: int,
               known: Callable[[bytes], bool]) -> None:
        for ki in keyinits:
            hu.verify_keyinit(ki, identity=identity, current_sigkey=current_sigkey, now=now)
            if known(ki.key_id):
                raise ReplayError("a KeyInit key_id was published before", requirement="HC-26")

    monkeypatch.setattr(hu, "parse_keyinit", parse)
    monkeypatch.setattr(hu, "decide_keyinits", decide)


def flushes_by_body_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decodes a flush request without checking its identity's syntax, and checks it
    against the identity it names rather than the path's (HC-14, HC-28)."""
    from keyflows.reference.hashchain_store import HashchainStore
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec import wire
    from keyflows.spec.encoding import b64url_decode_exact
    from keyflows.spec.hashchain import MAX_INDEX

    def parse(obj: object) -> hu.FlushRequest:
        m = wire.members(obj, ("identity", "timestamp", "nonce", "signature"), "flush")
        return hu.FlushRequest(identity=wire.string(m, "identity", "flush"),
                               timestamp=hu._uint(m, "timestamp", "flush", MAX_INDEX),
                               nonce=b64url_decode_exact(wire.string(m, "nonce", "flush"), 16,
                                                         field="nonce"),
                               signature=hu._sig(m, "signature", "flush"))

    original = HashchainStore.flush_keyinits

    def flush(self: HashchainStore, identity: str, request: hu.FlushRequest, now: int) -> int:
        return original(self, request.identity, request, now)

    monkeypatch.setattr(hu, "parse_flush", parse)
    monkeypatch.setattr(HashchainStore, "flush_keyinits", flush)


def misjudges_identity_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses localparts of exactly 3 bytes, and checks an update path's identity
    against the UID's but not against the domains it serves (HC-14, HC-34)."""
    from keyflows.spec import hashchain_uid as hu
    from keyflows.spec.errors import BindingError, DecodeError

    original = hu.check_identity

    def check_identity(identity: str, *, domains: Any = None) -> bytes:
        if len(identity.split("@")[0]) <= 3:
            raise DecodeError("identity: minimum length is 3", requirement="HC-34")
        return original(identity, domains=domains)

    def check_update_path(uid: hu.Uid, identity: str, *, domains: Any) -> None:
        if uid.content.identity != identity:
            raise BindingError("the UID is for another identity", requirement="HC-17")

    monkeypatch.setattr(hu, "check_identity", check_identity)
    monkeypatch.setattr(hu, "check_update_path", check_update_path)


def tolerates_clock_skew(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judges every validity edge with 30 seconds of grace for clock skew: UIDs from 30 s
    before their not_before to 30 s past their not_after, KeyInits to 30 s past their
    not_after, flushes 30 s outside the window (HC-18, HC-25, HC-28)."""
    from keyflows.spec import hashchain_uid as hu

    grace = 30
    check_uid_validity = hu.check_uid_validity
    verify_keyinit = hu.verify_keyinit
    verify_flush = hu.verify_flush

    def uid_validity(c: hu.UidContent, *, now: int | None) -> None:
        if now is not None and c.not_before - grace <= now < c.not_after + grace:
            now = c.not_before
        check_uid_validity(c, now=now)

    def keyinit(ki: hu.KeyInit, *, identity: str, current_sigkey: bytes, now: int) -> None:
        verify_keyinit(ki, identity=identity, current_sigkey=current_sigkey,
                       now=min(now, ki.not_after - 1) if now < ki.not_after + grace else now)

    def flush(req: hu.FlushRequest, *, origin: str, identity: str, current_sigkey: bytes,
              now: int, nonce_seen: bool) -> None:
        if abs(now - req.timestamp) <= hu.FLUSH_WINDOW + grace:
            now = req.timestamp
        verify_flush(req, origin=origin, identity=identity, current_sigkey=current_sigkey,
                     now=now, nonce_seen=nonce_seen)

    monkeypatch.setattr(hu, "check_uid_validity", uid_validity)
    monkeypatch.setattr(hu, "verify_keyinit", keyinit)
    monkeypatch.setattr(hu, "verify_flush", flush)


def forgets_publications(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores keypair publications without logging them."""
    from keyflows.reference.hashchain_store import HashchainStore

    monkeypatch.setattr(HashchainStore, "_log_publication", lambda self, *args: None)


def keeps_bad_cosignatures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps a witness's cosignature line without verifying it."""
    from keyflows.spec import hashchain_note as note
    from keyflows.spec import hashchain_witness as witness

    original = witness.read_answer

    def read_answer(status: int, content_type: str, body: bytes, *, checkpoint_text: str,
                    witness: note.Verifier) -> Any:
        if status == 200:
            for line in note.signature_lines(body):
                if line.name == witness.name and line.key_id == witness.key_id:
                    return _witness_reply(line)
        return original(status, content_type, body, checkpoint_text=checkpoint_text,
                        witness=witness)

    monkeypatch.setattr(witness, "read_answer", read_answer)


def _witness_reply(line: Any) -> Any:
    from keyflows.spec import hashchain_witness as witness

    return witness.WitnessReply(cosignature=line, line=line.line().encode("utf-8"))


def forgets_witness_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never records the size a witness cosigned: every round starts from size 0 and
    learns the witness's size from its 409."""
    from keyflows.reference.hashchain_store import HashchainStore

    monkeypatch.setattr(HashchainStore, "set_witness_size", lambda self, vkey, size: None)


def forgets_409_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records a witness's size only when the witness cosigns the checkpoint being
    published, never the size a 409 names: after an answer it could not use, each round
    starts from a stale size again."""
    from keyflows.reference.hashchain_store import HashchainStore

    original = HashchainStore.set_witness_size

    def set_size(self: HashchainStore, vkey: str, size: int) -> None:
        if size == self.latest_checkpoint()[0]:
            original(self, vkey, size)

    monkeypatch.setattr(HashchainStore, "set_witness_size", set_size)


def ignores_body_limit_on_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads request bodies of any size on the hashchain routes."""
    import keyflows.reference.hashchain as routes

    async def unlimited(request: Any) -> bytes:
        return bytes(await request.body())

    monkeypatch.setattr(routes, "limited_body", unlimited)


VARIANTS = (
    HashchainVariant("rewrites-history", "rebuilds its tree over a changed entry 1 at each "
                     "append", ("hashchain/log/consistent-with-earlier",
                                "hashchain/tiles/immutable"), rewrites_history, only=False),
    HashchainVariant("bad-inclusion-proof", "serves inclusion proofs with a flipped bit",
                     ("hashchain/proofs/inclusion",), bad_inclusion_proof),
    HashchainVariant("bad-consistency-proof", "serves wide consistency proofs with a "
                     "flipped bit", ("hashchain/proofs/consistency",
                                     "hashchain/log/consistent-with-earlier"),
                     bad_consistency_proof, only=False),
    HashchainVariant("splits-view", "shows client-b a log with another last entry",
                     ("hashchain/log/no-split-view",), splits_view),
    HashchainVariant("ignores-keyinit-dates", "takes KeyInits whatever their dates",
                     ("hashchain/keyinit/lifetime-checked",), ignores_keyinit_dates),
    HashchainVariant("keyinit-for-any-identity", "takes a KeyInit naming another identity",
                     ("hashchain/keyinit/signer-and-replay-checked",),
                     keyinit_for_any_identity),
    HashchainVariant("ignores-uid-validity-bounds", "takes empty, reversed and over-long "
                     "UID validities", ("hashchain/uid/validity-checked",
                                        "hashchain/uid/update-shape-checked"),
                     ignores_uid_validity_bounds),
    HashchainVariant("accepts-second-creation", "lets an identity be created twice",
                     ("hashchain/uid/second-creation-refused",), accepts_second_creation),
    HashchainVariant("skips-witnesses", "never submits to its witnesses",
                     ("hashchain/witness/cosigned-by-runner",
                      "hashchain/witness/bad-cosignature-dropped",
                      "hashchain/witness/malformed-answer-ignored",
                      "hashchain/witness/size-learned-from-409"), skips_witnesses),
    HashchainVariant("cheats-witnesses", "submits to its witnesses with bad proofs",
                     ("hashchain/witness/cosigned-by-runner",
                      "hashchain/witness/bad-cosignature-dropped",
                      "hashchain/witness/malformed-answer-ignored",
                      "hashchain/witness/size-learned-from-409"), cheats_witnesses),
    HashchainVariant("keeps-bad-cosignatures", "keeps witness cosignatures unverified",
                     ("hashchain/witness/bad-cosignature-dropped",
                      "hashchain/witness/malformed-answer-ignored",
                      "hashchain/witness/size-learned-from-409"), keeps_bad_cosignatures),
    HashchainVariant("forgets-witness-sizes", "does not record the size each witness "
                     "cosigned", ("hashchain/witness/cosigned-by-runner",
                                  "hashchain/witness/size-learned-from-409"),
                     forgets_witness_sizes),
    HashchainVariant("forgets-409-sizes", "does not record the size a witness names in a "
                     "409", ("hashchain/witness/size-learned-from-409",), forgets_409_sizes),
    HashchainVariant("ignores-body-limit-on-reads", "reads bodies of any size",
                     ("hashchain/limits/oversized-bodies",), ignores_body_limit_on_reads),
    HashchainVariant("lax-ed25519", "verifies Ed25519 without the strict rule",
                     ("hashchain/uid/lax-ed25519-refused",), lax_ed25519),
    HashchainVariant("re-serves-keyinit", "hands out KeyInits without consuming them",
                     ("hashchain/keyinit/served-once", "hashchain/keyinit/concurrent-fetch-once",
                      "hashchain/keyinit/signer-and-replay-checked"), reserves_keyinits),
    HashchainVariant("accepts-one-bad-signature", "never checks the SIGESCROW signature",
                     ("hashchain/uid/bad-signatures-refused",
                      "hashchain/uid/creation-shape-checked"), accepts_one_bad_signature),
    HashchainVariant("accepts-creation-shapes", "takes creations with update fields or "
                     "SIGKEY == SIGESCROW", ("hashchain/uid/creation-shape-checked",),
                     accepts_creation_shapes),
    HashchainVariant("accepts-loose-updates", "takes updates with a wrong previous hash, "
                     "missing or bad signatures, or dates", ("hashchain/uid/update-shape-checked",),
                     accepts_loose_updates),
    HashchainVariant("accepts-empty-last-checkpoint", "takes UIDs naming the empty tree",
                     ("hashchain/uid/last-checkpoint-checked",), accepts_empty_last_checkpoint),
    HashchainVariant("ignores-checkpoint-lag", "takes last_checkpoints however old",
                     ("hashchain/uid/last-checkpoint-lag",), ignores_checkpoint_lag),
    HashchainVariant("accepts-loose-keyinits", "takes small-order keys, unmapped identities "
                     "and key_ids repeated in a batch", ("hashchain/keyinit/shape-checked",),
                     accepts_loose_keyinits),
    HashchainVariant("flushes-by-body-identity", "flushes the identity the request names",
                     ("hashchain/keyinit/flush-signed-and-fresh",), flushes_by_body_identity),
    HashchainVariant("misjudges-identity-edges", "refuses 3-byte localparts, serves update "
                     "paths on any domain", ("hashchain/uid/identity-syntax-and-domain",),
                     misjudges_identity_edges),
    HashchainVariant("tolerates-clock-skew", "judges validity edges with 30 s of grace",
                     ("hashchain/time/validity-edges",), tolerates_clock_skew),
    HashchainVariant("forgets-publications", "does not log keypair publications",
                     ("hashchain/growth/one-entry-per-publication",), forgets_publications),
)
