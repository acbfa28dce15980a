"""Properties of the hashchain flow: round trips, and every change to a protected byte is
rejected with the failure class of the step that must catch it."""

from __future__ import annotations

import base64
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import hashchain_mute as mute
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import SpecError

ORIGIN = "keys.example.org"
NOW = 1_700_000_000
N = 12


def _log() -> hc.ChainLog:
    rnd = Drbg("properties")
    log = hc.ChainLog(origin=ORIGIN, server_seed=rnd(32), nonce0=rnd(16))
    for i in range(N):
        entry_type = hc.TYPE_PUBLICATION if i % 4 == 3 else hc.TYPE_UID
        log.append_record(entry_type=entry_type, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    return log


LOG = _log()
HEAD = LOG.head(NOW)
CHAIN = b"".join(LOG.entries)


def _verify_chunks(data: bytes, cuts: list[int]) -> hc.ChainVerifier:
    v = hc.ChainVerifier(origin=ORIGIN)
    bounds = sorted({0, len(data) // hc.ENTRY_LEN, *cuts})
    for start, end in itertools.pairwise(bounds):
        v.feed_chunk(data[start * hc.ENTRY_LEN:end * hc.ENTRY_LEN])
    return v


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=N + 1), max_size=6))
def test_any_chunking_gives_the_same_state(cuts: list[int]) -> None:
    v = _verify_chunks(CHAIN, cuts)
    v.check_head(HEAD, now=NOW)
    assert v.last_hash == LOG.head_hash


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(CHAIN) * 8 - 1),
       st.lists(st.integers(min_value=0, max_value=N + 1), max_size=3))
def test_any_bit_flip_is_rejected(bit: int, cuts: list[int]) -> None:
    data = bytearray(CHAIN)
    data[bit // 8] ^= 1 << (bit % 8)
    try:
        v = _verify_chunks(bytes(data), cuts)
        v.check_head(HEAD, now=NOW)
    except SpecError as exc:
        # A type byte turned into an unknown type is a decode error; a flip in entry 0's
        # key or signature a signature error (a point error when the key leaves the
        # curve, HC-35); a flip in a reserved byte a decode error; everything else breaks
        # a link or the head.
        assert exc.failure_class in {"link", "decode", "signature", "point", "length"}
        return
    raise AssertionError(f"bit {bit} flipped without detection")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=N), st.integers(min_value=1, max_value=N))
def test_reorder_or_drop_is_rejected(i: int, j: int) -> None:
    entries = list(LOG.entries)
    if i == j:
        del entries[i]
    else:
        entries[i], entries[j] = entries[j], entries[i]
    try:
        hc.verify_chain(entries, HEAD, origin=ORIGIN, now=NOW)
    except SpecError as exc:
        assert exc.failure_class == "link"
        return
    raise AssertionError("reordered chain verified")


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32),
       st.from_regex(r"\A[a-z][a-z2-9]{2,10}@[a-z]{1,8}\.org\Z", fullmatch=True))
def test_record_entry_round_trip(nonce: bytes, record_hash: bytes, identity: str) -> None:
    built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=identity.encode(),
                                  record_hash=record_hash, nonce=nonce, prev_hash=hc.ZERO_HASH)
    entry = hc.decode_entry(built.entry)
    assert entry.to_bytes() == built.entry
    found = hc.check_entry_for(built.entry, subject=identity.encode(), record_hash=record_hash)
    assert found.hash_id == built.hash_id


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=hc.ENTRY_LEN * 8 - 1))
def test_entry_bit_flip_breaks_binding(bit: int) -> None:
    rnd = Drbg("binding")
    record_hash = rnd(32)
    built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                                  record_hash=record_hash, nonce=rnd(16), prev_hash=hc.ZERO_HASH)
    data = bytearray(built.entry)
    data[bit // 8] ^= 1 << (bit % 8)
    if bit // 8 >= hc.PREV_OFFSET:
        return  # prev_hash is protected by the link (HC-5), not by the binding
    try:
        hc.check_entry_for(bytes(data), subject=b"alice@example.org", record_hash=record_hash)
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
