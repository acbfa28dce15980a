"""Properties of the hashchain flow: a client following the log accepts exactly the
logs that extend what it trusts, whatever the sizes; every change to an entry, its order
or the proofs is refused with the failure class of the step that must catch it; round
trips of entries and of the mute profile."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_mute as mute
from keyflows.spec import hashchain_uid as hu
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import SpecError

ORIGIN = "keys.example.org/log"
N = 40


def _log() -> hc.TransparencyLog:
    rnd = Drbg("properties")
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    for i in range(1, N):
        entry_type = hc.TYPE_PUBLICATION if i % 4 == 3 else hc.TYPE_UID
        log.append_record(entry_type=entry_type, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    return log


LOG = _log()
KEY = LOG.keys[0].public


def state_at(size: int) -> hcc.FollowerState:
    return hcc.FollowerState(checkpoint=LOG.signed_checkpoint(size).to_bytes(), size=size,
                             root=LOG.tree.root(size),
                             compact=tuple(merkle.compact_range_of(size, LOG.tree.node).nodes),
                             log_keys=(KEY,))


def sync(trusted: int | None, size: int, entries: list[bytes] | None = None,
         proof: list[bytes] | None = None) -> hcc.FollowerState:
    follower = hcc.LogFollower(origin=ORIGIN, log_keys=[KEY],
                               state=None if trusted is None else state_at(trusted))
    follower.check_checkpoint(LOG.signed_checkpoint(size).to_bytes())
    needed = follower.consistency_needed()
    if needed is not None:
        follower.check_consistency(size1=needed[0], size2=needed[1],
                                   root1=LOG.tree.root(needed[0]),
                                   proof=LOG.consistency_proof(*needed) if proof is None
                                   else proof)
    start = 0 if trusted is None else trusted
    follower.feed(LOG.entries[start:size] if entries is None else entries)
    return follower.finish()


@settings(max_examples=80, deadline=None)
@given(st.integers(1, N), st.data())
def test_any_extension_is_accepted_in_constant_state(size: int, data: st.DataObject) -> None:
    trusted = data.draw(st.one_of(st.none(), st.integers(1, size)))
    state = sync(trusted, size)
    assert state.size == size and state.root == LOG.tree.root(size)
    assert len(state.compact) == bin(size).count("1")


@settings(max_examples=200, deadline=None)
@given(st.integers(2, N), st.data())
def test_any_bit_flip_in_an_entry_is_refused(size: int, data: st.DataObject) -> None:
    entries = list(LOG.entries[:size])
    index = data.draw(st.integers(0, size - 1))
    bit = data.draw(st.integers(0, hc.ENTRY_LEN * 8 - 1))
    raw = bytearray(entries[index])
    raw[bit // 8] ^= 1 << (bit % 8)
    entries[index] = bytes(raw)
    try:
        sync(None, size, entries=entries)
    except SpecError as exc:
        # An unknown type or reserved bit is a decode error, a flip in entry 0's key or
        # signature a signature (or point) error; anything else changes the root.
        assert exc.failure_class in {"decode", "signature", "point", "proof", "binding"}
        return
    raise AssertionError(f"bit {bit} of entry {index} flipped without detection")


@settings(max_examples=100, deadline=None)
@given(st.integers(3, N), st.data())
def test_reorder_drop_or_add_is_refused(size: int, data: st.DataObject) -> None:
    entries = list(LOG.entries[:size])
    i = data.draw(st.integers(1, size - 1))
    j = data.draw(st.integers(1, size - 1))
    how = data.draw(st.sampled_from(["swap", "drop", "repeat"]))
    if how == "swap":
        if entries[i] == entries[j]:
            return
        entries[i], entries[j] = entries[j], entries[i]
    elif how == "drop":
        del entries[i]
    else:
        entries.insert(i, entries[j])
    try:
        sync(None, size, entries=entries)
    except SpecError as exc:
        assert exc.failure_class in {"proof", "link"}
        return
    raise AssertionError(f"{how} {i} {j} accepted")


@settings(max_examples=150, deadline=None)
@given(st.integers(2, N), st.data())
def test_a_bad_consistency_proof_is_refused(size: int, data: st.DataObject) -> None:
    trusted = data.draw(st.integers(1, size - 1))
    proof = LOG.consistency_proof(trusted, size)
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    node = bytearray(proof[i])
    node[bit // 8] ^= 1 << (bit % 8)
    try:
        sync(trusted, size, proof=[*proof[:i], bytes(node), *proof[i + 1:]])
    except SpecError as exc:
        assert exc.failure_class == "proof"
        return
    raise AssertionError("a flipped consistency proof verified")


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32),
       st.from_regex(r"\A[a-z][a-z2-9]{2,10}@[a-z]{1,8}\.org\Z", fullmatch=True))
def test_record_entry_round_trip(nonce: bytes, record_hash: bytes, identity: str) -> None:
    built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=identity.encode(),
                                  record_hash=record_hash, nonce=nonce)
    entry = hc.decode_entry(built.entry)
    assert entry.to_bytes() == built.entry
    found = hu.check_entry_for(built.entry, subject=identity.encode(), record_hash=record_hash)
    assert found.hash_id == built.hash_id


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=hc.ENTRY_LEN * 8 - 1))
def test_entry_bit_flip_breaks_binding(bit: int) -> None:
    rnd = Drbg("binding")
    record_hash = rnd(32)
    built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                                  record_hash=record_hash, nonce=rnd(16))
    data = bytearray(built.entry)
    data[bit // 8] ^= 1 << (bit % 8)
    try:
        hu.check_entry_for(bytes(data), subject=b"alice@example.org", record_hash=record_hash)
    except SpecError as exc:
        assert exc.failure_class in {"binding", "aead", "decode"}
        return
    raise AssertionError("flipped entry still binds")


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16),
       st.binary(min_size=1, max_size=64))
def test_mute_entry_round_trip(nonce: bytes, iv: bytes, uid_json: bytes) -> None:
    built = mute.build_entry(mapped_identity="alice@mute.berlin", uid_message_json=uid_json,
                             nonce=nonce, iv=iv, previous_hash=mute.ZERO_HASH)
    assert mute.decode_entry(built.text) == built.entry
    assert mute.verify_chain([built.text]) == built.entry.hash
    assert mute.lookup("alice@mute.berlin", [built.text])[0].uid_hash == built.uid_hash


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=153 * 8 - 1))
def test_mute_bit_flip_is_rejected(bit: int) -> None:
    rnd = Drbg("mute-flip")
    built = mute.build_entry(mapped_identity="alice@mute.berlin", uid_message_json=b"{}",
                             nonce=rnd(8), iv=rnd(16), previous_hash=mute.ZERO_HASH)
    raw = bytearray(built.entry.to_bytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        mute.verify_chain([base64.b64encode(bytes(raw)).decode()])
    except SpecError as exc:
        assert exc.failure_class in {"link", "decode"}
        return
    raise AssertionError("flipped mute entry verified")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCJ0123456789.-", min_size=3, max_size=20),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyzMUTE.", min_size=1, max_size=12))
def test_mapping_is_idempotent(local: str, domain: str) -> None:
    try:
        mapped = mute.map_identity(f"{local}@{domain}")
    except SpecError:
        return
    assert mute.map_identity(mapped) == mapped
    assert mute.is_mapped(mapped)
    assert not any(c in mapped.split("@")[0] for c in "01j")
