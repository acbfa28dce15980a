"""The hashchain transparency log in the executable specification: entries, checkpoints
(signed notes, with external known-answer vectors), cosignatures, the witness protocol,
tiles, the follow-the-log client, fork proofs and identity history."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import hashchain_witness as witness
from keyflows.spec import primitives
from keyflows.spec.errors import SpecError

NOTES = json.loads((Path(__file__).parent / "kat" / "signed_note.json").read_text())
ORIGIN = "keys.example.org/log"
NOW = 1_700_000_000


def seed(label: str) -> bytes:
    return primitives.sha256(label.encode())


def failure(action: Any) -> str:
    try:
        action()
    except SpecError as exc:
        return exc.failure_class
    raise AssertionError("accepted")


def make_log(records: int = 20) -> hc.TransparencyLog:
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=seed("log"), nonce0=bytes(16))
    for i in range(records):
        log.append_record(entry_type=hc.TYPE_UID, subject=f"u{i}@example.org".encode(),
                          record_hash=seed(f"r{i}"), nonce=seed(f"n{i}")[:16])
    return log


# --- signed notes: external vectors ---------------------------------------------------------

@pytest.mark.parametrize("case", NOTES["signed_note"], ids=lambda c: c["vkey"].split("+")[0])
def test_published_notes_verify(case: dict[str, Any]) -> None:
    verifier = note.parse_vkey(case["vkey"])
    parsed = note.parse_note(case["note"].encode())
    assert [v.verifier for v in note.verify_note(parsed, [verifier])] == [verifier]
    assert parsed.to_bytes() == case["note"].encode()
    if "skey" in case:  # the signing key is published too: our signature is theirs
        skey = base64.b64decode(case["skey"].split("+", 4)[4])
        assert skey[0] == note.SIG_ED25519
        assert note.sign_note_text(parsed.text, name=verifier.name,
                                   seed=skey[1:]) == parsed.signatures[0]
        doubly = note.parse_note(case["doubly_signed"].encode())
        # The second signer's key is unknown here: ignored, not an error (HC-38).
        assert len(doubly.signatures) == 2
        assert len(note.verify_note(doubly, [verifier])) == 1
    tampered = case["note"].replace("message", "massage").replace("answer", "answers")
    assert failure(lambda: note.verify_note(note.parse_note(tampered.encode()),
                                            [verifier])) == "signature"


@pytest.mark.parametrize("case", NOTES["vkeys"], ids=lambda c: c["vkey"].split("+")[0])
def test_published_vkeys_parse(case: dict[str, Any]) -> None:
    verifier = note.parse_vkey(case["vkey"])
    assert verifier.sig_type == case["type"] and verifier.vkey == case["vkey"]
    wrong_id = case["vkey"].split("+")
    wrong_id[1] = "00000000"
    assert failure(lambda: note.parse_vkey("+".join(wrong_id))) == "binding"


def test_published_cosignature_timestamp() -> None:
    case = NOTES["cosignature_timestamps"][0]
    raw = base64.b64decode(case["signature_base64"])
    assert int.from_bytes(raw[4:12], "big") == case["timestamp"]
    assert len(raw) == 4 + 8 + 64


@pytest.mark.parametrize("text", [
    "no blank line\n\u2014 a QUJDREVGR0g=\n",
    "text\n\n",
    "text\n\n\u2014 a QUJD\n",            # key ID and no signature
    "text\n\n- a QUJDREVGR0g=\n",          # hyphen, not em dash
    "text\n\n\u2014 a+b QUJDREVGR0g=\n",    # '+' in the key name
    "te\x07xt\n\n\u2014 a QUJDREVGR0g=\n",  # control character
    "text\n\n\u2014 a QUJDREVGR0g\n",       # unpadded base64
])
def test_malformed_notes_are_refused(text: str) -> None:
    assert failure(lambda: note.parse_note(text.encode())) in {"decode", "length"}


# --- checkpoints and cosignatures -------------------------------------------------------------

def test_checkpoint_round_trip_and_rules() -> None:
    log = make_log()
    signed = log.signed_checkpoint()
    verified = note.verify_checkpoint(signed.to_bytes(), origin=ORIGIN,
                                      log_keys=log.verifiers())
    assert verified.checkpoint == log.checkpoint()
    assert signed.text == f"{ORIGIN}\n{log.size}\n{base64.b64encode(log.tree.root()).decode()}\n"
    other = note.log_verifier(ORIGIN, primitives.ed25519_public_key(seed("other")))
    assert failure(lambda: note.verify_checkpoint(signed.to_bytes(), origin=ORIGIN,
                                                  log_keys=[other])) == "signature"
    assert failure(lambda: note.verify_checkpoint(signed.to_bytes(), origin="elsewhere",
                                                  log_keys=log.verifiers())) == "binding"
    for bad in ("o\n01\nAAAA\n", "o\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",
                "o\n5\n", "o\n\nx\n"):
        assert failure(lambda b=bad: note.parse_checkpoint_text(b)) in {"decode", "length"}


def test_witness_policy_k_of_n() -> None:
    log = make_log()
    signed = log.signed_checkpoint()
    witnesses = [note.witness_verifier(f"w{i}.example", primitives.ed25519_public_key(
        seed(f"w{i}"))) for i in range(3)]
    cosigs = [note.cosign(signed.text, name=f"w{i}.example", seed=seed(f"w{i}"),
                          timestamp=NOW - 10) for i in range(2)]
    full = note.add_signatures(signed, cosigs).to_bytes()
    policy = note.WitnessPolicy(tuple(witnesses), quorum=2, max_age=3600)
    got = note.verify_checkpoint(full, origin=ORIGIN, log_keys=log.verifiers(), policy=policy,
                                 now=NOW)
    assert got.cosigned_by == ("w0.example", "w1.example")
    three = note.WitnessPolicy(tuple(witnesses), quorum=3)
    assert failure(lambda: note.verify_checkpoint(full, origin=ORIGIN, log_keys=log.verifiers(),
                                                  policy=three, now=NOW)) == "witness"
    assert failure(lambda: note.verify_checkpoint(full, origin=ORIGIN, log_keys=log.verifiers(),
                                                  policy=policy, now=NOW + 7200)) == "expired"
    # a cosignature over another checkpoint is a failed known signature, not an ignored one
    forged = note.add_signatures(signed, [note.cosign("x\n1\n" + "A" * 43 + "=\n",
                                                      name="w0.example", seed=seed("w0"),
                                                      timestamp=NOW)]).to_bytes()
    assert failure(lambda: note.verify_checkpoint(forged, origin=ORIGIN,
                                                  log_keys=log.verifiers(), policy=policy,
                                                  now=NOW)) == "signature"


# --- the witness protocol -------------------------------------------------------------------

def test_witness_add_checkpoint_statuses() -> None:
    log = make_log(5)
    logs = {ORIGIN: log.verifiers()}
    first = log.signed_checkpoint().to_bytes()

    def submit(old: int, proof: tuple[bytes, ...], cp: bytes,
               state: witness.LogState | None) -> witness.Cosigned | witness.Answer:
        request = witness.parse_add_checkpoint(witness.submission(old_size=old, checkpoint=cp,
                                                                  proof=proof))
        try:
            return witness.add_checkpoint(request, logs=logs, state=state, name="w.example",
                                          seed=seed("w"), now=NOW)
        except SpecError as exc:
            return witness.answer_for(exc)

    ok = submit(0, (), first, None)
    assert isinstance(ok, witness.Cosigned) and ok.state.size == 6
    for _ in range(3):
        log.append_record(entry_type=hc.TYPE_PUBLICATION, subject=b"a/b",
                          record_hash=seed("p"), nonce=seed("q")[:16])
    second = log.signed_checkpoint().to_bytes()
    proof = tuple(log.consistency_proof(6))
    assert isinstance(submit(6, proof, second, ok.state), witness.Cosigned)
    conflict = submit(0, (), second, ok.state)
    assert conflict == witness.Answer(409, b"6\n", witness.SIZE_MEDIA_TYPE)
    bad = (bytes(32), *proof[1:])
    assert isinstance(submit(6, bad, second, ok.state), witness.Answer)
    assert submit(6, bad, second, ok.state).status == 422  # type: ignore[union-attr]
    assert submit(10, (), second, ok.state).status == 400  # type: ignore[union-attr]
    stranger = hc.TransparencyLog(origin="other.example/log", key_seed=seed("x"),
                                  nonce0=bytes(16)).signed_checkpoint().to_bytes()
    assert submit(0, (), stranger, None).status == 404  # type: ignore[union-attr]
    impostor = hc.TransparencyLog(origin=ORIGIN, key_seed=seed("x"),
                                  nonce0=bytes(16)).signed_checkpoint().to_bytes()
    assert submit(0, (), impostor, None).status == 403  # type: ignore[union-attr]


def test_log_reads_witness_answers() -> None:
    log = make_log(3)
    signed = log.signed_checkpoint()
    wv = note.witness_verifier("w.example", primitives.ed25519_public_key(seed("w")))
    line = note.cosign(signed.text, name="w.example", seed=seed("w"), timestamp=NOW).line()
    got = witness.read_answer(200, "text/plain; charset=utf-8", line.encode(),
                              checkpoint_text=signed.text, witness=wv)
    assert got.timestamp == NOW and got.cosignature is not None
    forged = note.cosign(signed.text, name="w.example", seed=seed("mallory"),
                         timestamp=NOW).line()
    assert witness.read_answer(200, "text/plain", forged.encode(), checkpoint_text=signed.text,
                               witness=wv) == witness.WitnessReply()
    assert witness.read_answer(409, "text/x.tlog.size", b"12\n", checkpoint_text=signed.text,
                               witness=wv).latest_size == 12
    assert witness.read_answer(500, "text/plain", b"", checkpoint_text=signed.text,
                               witness=wv) == witness.WitnessReply()


# --- tiles ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "tile"), [
    ("tile/0/000", tiles.Tile(0, 0)),
    ("tile/0/x001/x234/067", tiles.Tile(0, 1234067)),
    ("tile/1/x001/000.p/17", tiles.Tile(1, 1000, 17)),
    ("tile/entries/005.p/1", tiles.Tile(None, 5, 1)),
])
def test_tile_paths(path: str, tile: tiles.Tile) -> None:
    assert tiles.parse_tile_path(path.removeprefix("tile/")) == tile and tile.path() == path


@pytest.mark.parametrize("path", ["00/000", "0/1", "0/x000/001", "0/001.p/0", "0/001.p/256",
                                  "64/000", "0/x001", "0/001/002", "0/001.p/07", "0", "entries",
                                  "0/x000.p/3", "0/x001/x234/067x"])
def test_bad_tile_paths(path: str) -> None:
    assert failure(lambda: tiles.parse_tile_path(path)) == "decode"


def test_tiles_of_a_tree_rebuild_its_root() -> None:
    log = make_log(70_000 // 100)  # 701 leaves: two full level-0 tiles and partials
    size = log.size
    want = {t.path() for t in tiles.tiles_for(size)}
    assert want == {"tile/0/000", "tile/0/001", "tile/0/002.p/189", "tile/1/000.p/2"}
    contents = {(t.level, t.index): tiles.tile_hashes(t, log.tree.node)
                for t in tiles.tiles_for(size)}

    def node(level: int, index: int) -> bytes:
        return tiles.node_from_tiles(level, index, lambda lv, n: contents[(lv, n)])

    assert merkle.tree_root(size, node) == log.tree.root()
    bundle = tiles.entry_bundle(log.entries[:256])
    assert tiles.parse_entry_bundle(bundle, count=256, entry_len=hc.ENTRY_LEN) == log.entries[:256]
    assert failure(lambda: tiles.parse_entry_bundle(bundle + b"x", count=256)) == "length"
    assert tiles.available(tiles.Tile(0, 2, 189), size)
    assert not tiles.available(tiles.Tile(0, 2, 190), size)
    assert not tiles.available(tiles.Tile(0, 2), size)


# --- following the log, forks -------------------------------------------------------------------

def follow(log: hc.TransparencyLog, state: hcc.FollowerState | None = None,
           **kw: Any) -> hcc.FollowerState:
    follower = hcc.LogFollower(origin=ORIGIN, state=state, **kw)
    if state is None:
        follower.trust_first_entry(log.entries[0])
    follower.check_checkpoint(log.signed_checkpoint().to_bytes())
    needed = follower.consistency_needed()
    if needed:
        follower.check_consistency(size1=needed[0], size2=needed[1],
                                   root1=log.tree.root(needed[0]),
                                   proof=log.consistency_proof(needed[0]))
    follower.feed(log.entries[follower.next_index():])
    return follower.finish()


def test_follower_syncs_in_constant_state() -> None:
    log = make_log(50)
    state = follow(log)
    assert state.size == 51 and len(state.compact) == bin(51).count("1")
    for i in range(30):
        log.append_record(entry_type=hc.TYPE_UID, subject=b"z@example.org",
                          record_hash=seed(f"z{i}"), nonce=seed(f"zn{i}")[:16])
    assert follow(log, state).size == 81


def test_follower_refuses_rollback_rewrite_and_forks() -> None:
    log = make_log(10)
    state = follow(log)
    old = log.signed_checkpoint().to_bytes()
    log.append_record(entry_type=hc.TYPE_UID, subject=b"y@example.org", record_hash=seed("y"),
                      nonce=seed("yn")[:16])
    newer = follow(log, state)
    follower = hcc.LogFollower(origin=ORIGIN, state=newer)
    assert failure(lambda: follower.check_checkpoint(old)) == "replay"
    # a rewritten history: same first key, entry 3 replaced, grown past the trusted size
    fork = hc.TransparencyLog(origin=ORIGIN, key_seed=seed("log"), nonce0=bytes(16))
    for i, data in enumerate(log.entries[1:], start=1):
        fork.append_raw(data if i != 3 else log.entries[4])
    fork.append_raw(log.entries[5])
    follower = hcc.LogFollower(origin=ORIGIN, state=newer)
    follower.check_checkpoint(fork.signed_checkpoint().to_bytes())
    with pytest.raises(hcc.ForkDetected) as info:
        follower.check_consistency(size1=newer.size, size2=fork.size,
                                   root1=fork.tree.root(newer.size),
                                   proof=fork.consistency_proof(newer.size))
    evidence = hcc.verify_fork_proof(info.value.proof, origin=ORIGIN, log_keys=log.verifiers())
    assert evidence.size == newer.size and evidence.roots[0] == newer.root
    wire = hcc.parse_fork_proof(json.loads(json.dumps(info.value.proof.to_wire())))
    assert wire == info.value.proof
    # a proof that does not lead to the new root proves nothing: a proof failure
    follower = hcc.LogFollower(origin=ORIGIN, state=newer)
    follower.check_checkpoint(fork.signed_checkpoint().to_bytes())
    assert failure(lambda: follower.check_consistency(
        size1=newer.size, size2=fork.size, root1=newer.root,
        proof=fork.consistency_proof(newer.size))) == "proof"
    # same size, other root: a fork at once
    equal = hc.TransparencyLog(origin=ORIGIN, key_seed=seed("log"), nonce0=bytes(16))
    for data in log.entries[1:]:
        equal.append_raw(data if data != log.entries[2] else log.entries[1])
    follower = hcc.LogFollower(origin=ORIGIN, state=newer)
    with pytest.raises(hcc.ForkDetected) as same:
        follower.check_checkpoint(equal.signed_checkpoint().to_bytes())
    hcc.verify_fork_proof(same.value.proof, origin=ORIGIN, log_keys=log.verifiers())
    consistent = hcc.ForkProof(old, log.signed_checkpoint().to_bytes(), log.tree.root(11),
                               tuple(log.consistency_proof(11)))
    assert failure(lambda: hcc.verify_fork_proof(consistent, origin=ORIGIN,
                                                 log_keys=log.verifiers())) == "link"


def test_follower_refuses_entries_that_miss_the_root() -> None:
    log = make_log(10)
    follower = hcc.LogFollower(origin=ORIGIN)
    follower.trust_first_entry(log.entries[0])
    follower.check_checkpoint(log.signed_checkpoint().to_bytes())
    follower.feed([*log.entries[:5], log.entries[6], log.entries[5], *log.entries[7:]])
    assert failure(follower.finish) == "proof"
    follower = hcc.LogFollower(origin=ORIGIN)
    follower.trust_first_entry(log.entries[0])
    follower.check_checkpoint(log.signed_checkpoint().to_bytes())
    follower.feed(log.entries[:-1])
    assert failure(follower.finish) == "link"


def test_key_rotation_is_followed() -> None:
    log = make_log(3)
    state = follow(log)
    log.rotate_key(seed("log2"), nonce=seed("rot")[:16])
    log.append_record(entry_type=hc.TYPE_UID, subject=b"a@example.org", record_hash=seed("a"),
                      nonce=seed("an")[:16])
    state = follow(log, state)  # signed by both keys: the old one still verifies it
    assert state.log_keys == (primitives.ed25519_public_key(seed("log2")),)
    log.retire_previous_key()
    log.append_record(entry_type=hc.TYPE_UID, subject=b"b@example.org", record_hash=seed("b"),
                      nonce=seed("bn")[:16])
    assert follow(log, state).size == log.size
    stale = make_log(3)
    assert failure(lambda: follow(log, follow(stale))) == "signature"


# --- identity history ---------------------------------------------------------------------

IDENTITY = "alice@example.org"


def uid_of(*, sigkey: str, escrow: str, msg_count: int = 0, previous: hu.Uid | None = None,
           signer: str | None = None, role: str = "sigkey") -> hu.Uid:
    content = hu.UidContent(
        identity=IDENTITY, msg_count=msg_count, not_before=NOW - 60, not_after=NOW + 86400,
        sigkey=primitives.ed25519_public_key(seed(sigkey)),
        sigescrow=primitives.ed25519_public_key(seed(escrow)),
        x25519=primitives.x25519_public_key(seed("x")),
        last_checkpoint=hu.LastCheckpoint(size=1, root=bytes(32)),
        previous=None if previous is None else hu.uid_record_hash(previous))
    return hu.sign_uid(content, sigkey_seed=seed(sigkey),
                       sigescrow_seed=seed(escrow) if previous is None else None,
                       previous_seed=None if previous is None else seed(signer or sigkey),
                       previous_role=None if previous is None else role)


def history_of(log: hc.TransparencyLog, uids: list[hu.Uid]) -> hcc.IdentityHistory:
    for i, uid in enumerate(uids):
        log.append_record(entry_type=hc.TYPE_UID, subject=IDENTITY.encode(),
                          record_hash=hu.uid_record_hash(uid), nonce=seed(f"h{i}")[:16])
    by_hash = {hu.uid_record_hash(u): u for u in uids}
    history = hcc.IdentityHistory(IDENTITY)
    for index, data in enumerate(log.entries):
        found = history.match(data)
        if found is not None:
            history.add(index, found[1], by_hash[found[1]])
    return history


def test_history_creation_then_updates() -> None:
    first = uid_of(sigkey="k1", escrow="e1")
    second = uid_of(sigkey="k2", escrow="e1", msg_count=1, previous=first, signer="k1")
    history = history_of(make_log(4), [first, second])
    assert history.current(now=NOW) == second and len(history.items) == 2
    history.check_own([hu.uid_record_hash(first), hu.uid_record_hash(second)])
    assert failure(lambda: history.check_own([hu.uid_record_hash(first)])) == "history"


def test_forged_second_creation_is_detected() -> None:
    """The critical attack: the server 're-creates' alice with keys it holds."""
    genuine = uid_of(sigkey="k1", escrow="e1")
    forged = uid_of(sigkey="server", escrow="server-escrow")
    assert failure(lambda: history_of(make_log(2), [genuine, forged])) == "history"


def test_update_by_a_stranger_is_refused() -> None:
    first = uid_of(sigkey="k1", escrow="e1")
    stranger = uid_of(sigkey="k2", escrow="e1", msg_count=1, previous=first, signer="mallory")
    assert failure(lambda: history_of(make_log(2), [first, stranger])) == "signature"
    not_first = uid_of(sigkey="k2", escrow="e1", msg_count=1, previous=first, signer="k1")
    assert failure(lambda: history_of(make_log(2), [not_first])) == "history"
