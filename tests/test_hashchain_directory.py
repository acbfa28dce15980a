"""The key directory (hashchain steps 14 .. 22): the map against an independent recursive
definition, proofs, answers, monitoring and history; properties: any change to a byte an
answer protects is refused with the failure class of the step that must catch it."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import ecvrf
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_client as hdc
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_directory_model as hm
from keyflows.spec import hashchain_note as note
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

ORIGIN = "directory.example.org/log"
NOW = 1_700_000_000


# --- the map against its definition -----------------------------------------------------------

def reference_root(leaves: dict[bytes, bytes], depth: int = 0) -> bytes:
    """HC-84 read literally: the subtree hash of a set of leaves at a depth."""
    if not leaves:
        return dmap.EMPTY
    if len(leaves) == 1:
        ((position, value),) = leaves.items()
        return hashlib.sha256(b"\x00" + position + value).digest()
    left = {p: v for p, v in leaves.items() if not dmap.bit(p, depth)}
    right = {p: v for p, v in leaves.items() if dmap.bit(p, depth)}
    return hashlib.sha256(b"\x01" + reference_root(left, depth + 1)
                          + reference_root(right, depth + 1)).digest()


positions = st.binary(min_size=32, max_size=32)
# Positions that share long prefixes, so that deep paths and empty siblings occur.
clustered = st.builds(lambda head, tail: head + tail, st.sampled_from([b"", b"\x00" * 31,
                                                                      b"\xff" * 30]),
                      st.binary(min_size=0, max_size=32)).map(
    lambda b: (b + bytes(32))[:32])
leaf_maps = st.dictionaries(st.one_of(positions, clustered), st.binary(min_size=32, max_size=32),
                            max_size=24)


@settings(max_examples=80, deadline=None)
@given(leaf_maps, st.lists(st.integers(min_value=0, max_value=30), max_size=4), st.data())
def test_root_is_the_definition_whatever_the_batches(leaves: dict[bytes, bytes],
                                                     cuts: list[int], data: st.DataObject
                                                     ) -> None:
    items = list(leaves.items())
    tree = dmap.MemoryMap()
    bounds = sorted({0, len(items), *(c for c in cuts if c < len(items))})
    for start, end in itertools.pairwise(bounds):
        tree.apply(dict(items[start:end]))
    # then change some values in place
    changed = {p: hashlib.sha256(v).digest() for p, v in items[: data.draw(
        st.integers(min_value=0, max_value=len(items)))]}
    tree.apply(changed)
    final = {**leaves, **changed}
    assert tree.root == reference_root(final)
    for position, value in final.items():
        dmap.verify_membership(position, value, tree.prove(position), tree.root)


@settings(max_examples=80, deadline=None)
@given(leaf_maps, st.one_of(positions, clustered))
def test_absence_and_membership_cannot_both_verify(leaves: dict[bytes, bytes],
                                                   probe: bytes) -> None:
    tree = dmap.MemoryMap()
    tree.apply(leaves)
    proof = tree.prove(probe)
    if probe in leaves:
        dmap.verify_membership(probe, leaves[probe], proof, tree.root)
        with pytest.raises(SpecError) as exc:
            dmap.verify_absence(probe, proof, tree.root)
    else:
        dmap.verify_absence(probe, proof, tree.root)
        forged = dmap.MapProof(proof.siblings, dmap.Leaf(probe, bytes(32)))
        with pytest.raises(SpecError) as exc:
            dmap.verify_membership(probe, bytes(32), forged, tree.root)
    assert exc.value.failure_class == "proof"


@settings(max_examples=80, deadline=None)
@given(leaf_maps.filter(lambda m: len(m) >= 2), st.data())
def test_any_flipped_proof_bit_is_refused(leaves: dict[bytes, bytes],
                                          data: st.DataObject) -> None:
    tree = dmap.MemoryMap()
    tree.apply(leaves)
    position = data.draw(st.sampled_from(sorted(leaves)))
    proof = tree.prove(position)
    parts = [*proof.siblings, leaves[position]]
    which = data.draw(st.integers(min_value=0, max_value=len(parts) - 1))
    flip = data.draw(st.integers(min_value=0, max_value=255))
    target = bytearray(parts[which])
    target[flip // 8] ^= 0x80 >> (flip % 8)
    parts[which] = bytes(target)
    with pytest.raises(SpecError) as exc:
        dmap.verify_membership(position, parts[-1],
                               dmap.MapProof(tuple(parts[:-1]), dmap.Leaf(position, parts[-1])),
                               tree.root)
    assert exc.value.failure_class == "proof"


def test_an_empty_map_and_a_single_leaf() -> None:
    tree = dmap.MemoryMap()
    assert tree.root == dmap.EMPTY
    dmap.verify_absence(bytes(32), tree.prove(bytes(32)), dmap.EMPTY)
    tree.apply({b"\x01" * 32: b"\x02" * 32})
    assert tree.root == dmap.leaf_hash(b"\x01" * 32, b"\x02" * 32)
    proof = tree.prove(b"\x03" * 32)
    assert proof.siblings == () and proof.terminal == dmap.Leaf(b"\x01" * 32, b"\x02" * 32)
    dmap.verify_absence(b"\x03" * 32, proof, tree.root)


def test_a_leaf_off_the_path_proves_nothing() -> None:
    tree = dmap.MemoryMap()
    left, right, far = b"\x00" * 32, b"\x40" + b"\x00" * 31, b"\x80" + b"\x00" * 31
    tree.apply({left: b"\x01" * 32, right: b"\x02" * 32, far: b"\x03" * 32})
    proof = tree.prove(b"\x90" + b"\x00" * 31)          # ends at `far`, depth 1
    dmap.verify_absence(b"\x90" + b"\x00" * 31, proof, tree.root)
    with pytest.raises(SpecError, match="off the position's path"):
        dmap.root_from_proof(b"\x10" + b"\x00" * 31, proof)


# --- answers ----------------------------------------------------------------------------------

def device_value(user: str, client: str, body: bytes) -> str:
    return b64url_encode(hd.device_list_prefix(user, client) + body)


class World:
    """A log, a directory with a few epochs, and a client's trust."""

    def __init__(self) -> None:
        rnd = Drbg("directory-tests")
        self.rnd = rnd
        self.log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
        self.directory = hm.DirectoryModel(vrf_secret_key=rnd(32), log=self.log)
        self.alice = hd.devices_label("alice", "mail")
        self.bob = hd.devices_label("bob", "mail")
        self.values = [device_value("alice", "mail", b"v1"), device_value("alice", "mail", b"v2")]
        self.directory.stage(self.alice, self.values[0])
        for i in range(6):
            self.directory.stage(hd.devices_label(f"user{i}", "mail"),
                                 device_value(f"user{i}", "mail", b"x"))
        self.directory.publish(published_at=NOW - 100, nonce=rnd(16))
        self.directory.stage(self.alice, self.values[1])
        self.directory.publish(published_at=NOW - 50, nonce=rnd(16))
        self.trust = hdc.Trust(vrf_public_key=self.directory.vrf_public_key, origin=ORIGIN,
                               log_keys=tuple(self.log.verifiers()))


WORLD = World()
ALICE_ANSWER = WORLD.directory.answer(WORLD.alice)
BOB_ANSWER = WORLD.directory.answer(WORLD.bob)


def verify(answer: object, label: hd.Label = WORLD.alice, **kwargs: Any) -> hdc.Lookup:
    return hdc.verify_lookup(answer, label=label, trust=WORLD.trust, now=NOW, **kwargs)


def test_membership_gives_the_latest_version() -> None:
    lookup = verify(ALICE_ANSWER)
    assert lookup.leaf is not None and lookup.leaf.version == 2 and lookup.epoch == 2
    assert lookup.value == WORLD.values[1]


def test_absence() -> None:
    lookup = verify(BOB_ANSWER, WORLD.bob)
    assert not lookup.found


def test_a_past_epoch_for_monitoring() -> None:
    past = WORLD.directory.answer(WORLD.alice, epoch=1)
    lookup = verify(past, at_epoch=1)
    assert lookup.leaf is not None and lookup.leaf.version == 1
    with pytest.raises(SpecError) as exc:
        verify(past)                 # as a current answer, epoch 1 is fine by age...
        verify(past, last_epoch=2)   # ...but not after epoch 2 was seen
    assert exc.value.failure_class == "replay"


def _flip_b64(text: str, bit: int) -> str:
    data = bytearray(b64url_decode(text))
    data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    return b64url_encode(bytes(data))


def _mutate(answer: dict[str, Any], where: str, bit: int) -> dict[str, Any]:
    out = copy.deepcopy(answer)
    if where == "vrf_proof":
        out["vrf_proof"] = _flip_b64(out["vrf_proof"], bit)
    elif where == "sibling":
        siblings = out["map_proof"]["siblings"]
        siblings[bit % len(siblings)] = _flip_b64(siblings[bit % len(siblings)], bit)
    elif where == "previous":
        out["leaf"]["previous"] = _flip_b64(out["leaf"]["previous"], bit)
    elif where == "value":
        data = bytearray(b64url_decode(out["leaf"]["value"]))
        data[-1] ^= 1 << (bit % 8)                      # the list, after its names
        out["leaf"]["value"] = b64url_encode(bytes(data))
    elif where == "entry":
        data = bytearray(b64url_decode(out["log"]["entry"]))
        data[17 + (bit % 40)] ^= 1 << (bit % 8)        # epoch or root
        out["log"]["entry"] = b64url_encode(bytes(data))
    elif where == "published_at":
        out["published_at"] -= 1 + bit % 10
    elif where == "leaf_epoch":
        out["leaf"]["epoch"] = 1
    elif where == "inclusion":
        tlog = note.parse_tlog_proof(out["log"]["proof"].encode())
        proof = list(tlog.proof)
        index = bit % len(proof)
        flipped = bytearray(proof[index])
        flipped[(bit // 8) % 32] ^= 1 << (bit % 8)
        proof[index] = bytes(flipped)
        out["log"]["proof"] = note.TlogProof(tlog.index, tuple(proof),
                                             tlog.checkpoint).to_bytes().decode()
    return out


# vrf_proof: a flipped Gamma may stop being a point (class point); c and s give proof.
EXPECTED = {"vrf_proof": {"proof", "point"}, "sibling": {"proof"}, "previous": {"proof"},
            "value": {"proof"}, "entry": {"proof", "binding"}, "published_at": {"proof"},
            "leaf_epoch": {"proof"}, "inclusion": {"proof"}}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.integers(min_value=0, max_value=639))
def test_any_change_to_a_protected_byte_is_refused(where: str, bit: int) -> None:
    with pytest.raises(SpecError) as exc:
        verify(_mutate(ALICE_ANSWER, where, bit))
    assert exc.value.failure_class in EXPECTED[where]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=6))
def test_next_epoch_numbers_from_one_and_never_goes_back_in_time(clock: list[int]) -> None:
    """HC-87: what the directory publishes (next_epoch, whatever its clock says) is what
    check_next_epoch accepts, and a time before the previous epoch's is refused."""
    previous: hd.Epoch | None = None
    for now in clock:
        number, published_at = hd.next_epoch(previous, now)
        hd.check_next_epoch(previous, number, published_at)
        assert published_at >= now
        assert number == (1 if previous is None else previous.epoch + 1)
        if previous is not None and previous.published_at > 0:
            with pytest.raises(SpecError) as exc:
                hd.check_next_epoch(previous, number, previous.published_at - 1)
            assert exc.value.failure_class == "link"
        previous = hd.Epoch(number, published_at, bytes(32), bytes(32))


def test_a_stale_epoch_is_expired() -> None:
    with pytest.raises(SpecError) as exc:
        hdc.verify_lookup(ALICE_ANSWER, label=WORLD.alice, trust=WORLD.trust,
                          now=NOW + hdc.DEFAULT_MAX_EPOCH_AGE)
    assert exc.value.failure_class == "expired"


def test_another_label_or_vrf_key_is_refused() -> None:
    with pytest.raises(SpecError) as exc:
        verify(ALICE_ANSWER, WORLD.bob)
    assert exc.value.failure_class == "binding"
    other = hdc.Trust(vrf_public_key=ecvrf.public_key(bytes(32)), origin=ORIGIN,
                      log_keys=WORLD.trust.log_keys)
    with pytest.raises(SpecError) as exc:
        hdc.verify_lookup(ALICE_ANSWER, label=WORLD.alice, trust=other, now=NOW)
    assert exc.value.failure_class == "proof"


def test_an_absence_answer_for_a_present_identity_is_refused() -> None:
    forged = copy.deepcopy(ALICE_ANSWER)
    forged["leaf"] = None
    with pytest.raises(SpecError) as exc:
        verify(forged)
    assert exc.value.failure_class == "proof"


# --- monitoring and history -------------------------------------------------------------------

def _monitor() -> hdc.OwnerMonitor:
    monitor = hdc.OwnerMonitor(WORLD.alice, max_delay=600)
    monitor.made(hd.value_hash_of(WORLD.alice, WORLD.values[0]), accepted_at=NOW - 110)
    return monitor


def test_the_owner_follows_its_own_changes() -> None:
    monitor = _monitor()
    monitor.check(verify(WORLD.directory.answer(WORLD.alice, epoch=1), at_epoch=1))
    monitor.made(hd.value_hash_of(WORLD.alice, WORLD.values[1]), accepted_at=NOW - 60)
    monitor.check(verify(WORLD.directory.answer(WORLD.alice, epoch=2), at_epoch=2))
    assert monitor.leaf is not None and monitor.leaf.version == 2 and not monitor.pending


def test_a_version_the_owner_did_not_make_is_a_monitor_failure() -> None:
    monitor = _monitor()
    monitor.check(verify(WORLD.directory.answer(WORLD.alice, epoch=1), at_epoch=1))
    with pytest.raises(SpecError) as exc:      # version 2 was never made by this owner
        monitor.check(verify(WORLD.directory.answer(WORLD.alice, epoch=2), at_epoch=2))
    assert exc.value.failure_class == "monitor"


def test_an_unpublished_change_is_a_monitor_failure() -> None:
    monitor = hdc.OwnerMonitor(WORLD.bob, max_delay=10)
    monitor.made(hd.value_hash_of(WORLD.bob, device_value("bob", "mail", b"b")),
                 accepted_at=NOW - 200)
    with pytest.raises(SpecError) as exc:
        monitor.check(verify(WORLD.directory.answer(WORLD.bob, epoch=2), WORLD.bob, at_epoch=2))
    assert exc.value.failure_class == "monitor"


def test_history_through_the_directory() -> None:
    history = hdc.verify_history(WORLD.directory.history(WORLD.alice), label=WORLD.alice,
                                 trust=WORLD.trust, now=NOW)
    assert [v.value for v in history.versions] == WORLD.values
    pinned = history.versions[0].leaf
    hdc.verify_history(WORLD.directory.history(WORLD.alice), label=WORLD.alice,
                       trust=WORLD.trust, now=NOW, pinned=pinned)
    forked = hd.LeafVersion(1, 1, hd.value_hash_of(WORLD.alice, WORLD.values[1]), bytes(32))
    with pytest.raises(SpecError) as exc:
        hdc.verify_history(WORLD.directory.history(WORLD.alice), label=WORLD.alice,
                           trust=WORLD.trust, now=NOW, pinned=forked)
    assert exc.value.failure_class == "fork"
    dropped = WORLD.directory.history(WORLD.alice)
    dropped["versions"] = dropped["versions"][1:]
    with pytest.raises(SpecError) as exc:
        hdc.verify_history(dropped, label=WORLD.alice, trust=WORLD.trust, now=NOW)
    assert exc.value.failure_class == "history"


def test_the_vectors_rfc9381_inputs_are_those_of_the_kat_file() -> None:
    from pathlib import Path

    from keyflows.vectors import hashchain_directory as vhd
    kat = Path(__file__).parent / "kat" / "rfc9381_ecvrf_edwards25519_tai.json"
    data = json.loads(kat.read_text(encoding="utf-8"))
    assert [(v["origin"], v["sk"], v["alpha"]) for v in data["valid"]] == \
        list(vhd.RFC9381_EXAMPLES)
