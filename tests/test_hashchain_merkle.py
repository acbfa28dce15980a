"""The RFC 9162 Merkle tree of the hashchain flow (keyflows.spec.hashchain_merkle).

External data: transparency-dev/merkle's RFC 6962 test data (tests/kat/README.md): every
valid case verifies, every mutated case is rejected, and the proofs this module makes for
the reference tree are the published ones. Properties: proofs made for any size verify
and every mutation of them is refused.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import hashchain_merkle as M
from keyflows.spec.errors import LengthError, ParamsError, ProofError, SpecError

KAT = json.loads((Path(__file__).parent / "kat" / "transparency_dev_merkle_rfc6962.json")
                 .read_text())
FILES: dict[str, dict[str, Any]] = KAT["files"]
REF = KAT["reference_tree"]


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(x) for x in case["proof"] or []]


def _run(path: str, case: dict[str, Any]) -> None:
    if path.startswith("testdata/inclusion/"):
        M.verify_inclusion(index=case["leafIdx"], size=case["treeSize"],
                           leaf=_b64(case["leafHash"]), proof=_proof(case),
                           root=_b64(case["root"]))
    else:
        M.verify_consistency(size1=case["size1"], size2=case["size2"],
                             root1=_b64(case["root1"]), root2=_b64(case["root2"]),
                             proof=_proof(case))


def test_kat_file_shape() -> None:
    assert KAT["source"]["repository"] == "https://github.com/transparency-dev/merkle"
    inclusion = [p for p in FILES if p.startswith("testdata/inclusion/")]
    consistency = [p for p in FILES if p.startswith("testdata/consistency/")]
    assert len(inclusion) == 98 and len(consistency) == 98
    assert sum(not c["wantErr"] for c in FILES.values()) == 12  # happy paths and equal sizes


@pytest.mark.parametrize("path", sorted(FILES))
def test_transparency_dev_case(path: str) -> None:
    """Valid cases verify; every mutated case (wantErr) is rejected with a SpecError."""
    case = FILES[path]
    if case["wantErr"]:
        with pytest.raises(SpecError) as info:
            _run(path, case)
        assert info.value.failure_class in {"proof", "length", "params"}
    else:
        _run(path, case)


def reference_tree() -> M.MerkleTree:
    tree = M.MerkleTree()
    for leaf in REF["leaf_inputs"]:
        tree.append(bytes.fromhex(leaf))
    return tree


def test_reference_tree_nodes_and_roots() -> None:
    tree = reference_tree()
    for level, hashes in enumerate(REF["node_hashes"]):
        assert [tree.node(level, i).hex() for i in range(len(hashes))] == hashes
    for size, root in enumerate(REF["root_hashes"]):
        assert tree.root(size).hex() == root
        leaves = [M.leaf_hash(bytes.fromhex(x)) for x in REF["leaf_inputs"][:size]]
        assert M.root_of(leaves).hex() == root
        compact = M.CompactRange()
        compact.extend(leaves)
        assert compact.root().hex() == root
        assert M.compact_range_of(size, tree.node).nodes == compact.nodes


@pytest.mark.parametrize("path", sorted(p for p, c in FILES.items()
                                        if not c["wantErr"]
                                        and c.get("treeSize", c.get("size2", 9)) <= 8))
def test_proofs_made_here_are_the_published_ones(path: str) -> None:
    """The happy-path proofs over the reference tree are exactly what this module makes."""
    case, tree = FILES[path], reference_tree()
    if path.startswith("testdata/inclusion/"):
        assert tree.inclusion_proof(case["leafIdx"], case["treeSize"]) == _proof(case)
    elif 0 < case["size1"]:
        assert tree.consistency_proof(case["size1"], case["size2"]) == _proof(case)


# --- properties --------------------------------------------------------------------------

def tree_of(size: int) -> M.MerkleTree:
    tree = M.MerkleTree()
    for i in range(size):
        tree.append(i.to_bytes(4, "big"))
    return tree


BIG = tree_of(300)
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(st.integers(1, 300), st.data())
def test_inclusion_proofs_verify(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = BIG.inclusion_proof(index, size)
    root = BIG.root(size)
    leaf = BIG.node(0, index)
    assert root == M.root_of([BIG.node(0, i) for i in range(size)])
    M.verify_inclusion(index=index, size=size, leaf=leaf, proof=proof, root=root)


@SETTINGS
@given(st.integers(1, 300), st.data())
def test_inclusion_mutations_are_rejected(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof, root, leaf = BIG.inclusion_proof(index, size), BIG.root(size), BIG.node(0, index)

    def rejected(**changes: Any) -> None:
        args: dict[str, Any] = {"index": index, "size": size, "leaf": leaf, "proof": proof,
                                "root": root, **changes}
        with pytest.raises((ProofError, LengthError)):
            M.verify_inclusion(**args)

    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        flipped = bytearray(proof[i])
        flipped[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        rejected(proof=[*proof[:i], bytes(flipped), *proof[i + 1:]])
        rejected(proof=proof[:-1])
    rejected(proof=[*proof, leaf])
    rejected(proof=[leaf, *proof])
    rejected(root=M.node_hash(root, root))
    rejected(leaf=M.leaf_hash(b"other"))
    rejected(index=size)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda j: j != index))
        if BIG.node(0, other) != leaf:
            rejected(index=other)
    if proof:
        rejected(proof=[*proof[:-1], proof[-1][:31]])


@SETTINGS
@given(st.integers(1, 300), st.data())
def test_consistency_proofs_verify(size2: int, data: st.DataObject) -> None:
    size1 = data.draw(st.integers(1, size2))
    proof = BIG.consistency_proof(size1, size2)
    M.verify_consistency(size1=size1, size2=size2, root1=BIG.root(size1),
                         root2=BIG.root(size2), proof=proof)
    assert len(proof) <= 2 * size2.bit_length()


@SETTINGS
@given(st.integers(2, 300), st.data())
def test_consistency_mutations_are_rejected(size2: int, data: st.DataObject) -> None:
    size1 = data.draw(st.integers(1, size2 - 1))
    proof, root1, root2 = BIG.consistency_proof(size1, size2), BIG.root(size1), BIG.root(size2)

    def rejected(**changes: Any) -> None:
        args: dict[str, Any] = {"size1": size1, "size2": size2, "root1": root1,
                                "root2": root2, "proof": proof, **changes}
        with pytest.raises((ProofError, LengthError, ParamsError)):
            M.verify_consistency(**args)

    i = data.draw(st.integers(0, len(proof) - 1))
    flipped = bytearray(proof[i])
    flipped[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
    rejected(proof=[*proof[:i], bytes(flipped), *proof[i + 1:]])
    rejected(proof=proof[:-1])
    rejected(proof=[*proof, root1])
    rejected(root1=root2, root2=root1)
    rejected(root1=M.node_hash(root1, root1))
    rejected(root2=M.node_hash(root2, root2))
    rejected(size1=size2, size2=size1)
    if size1 + 1 < size2 and BIG.consistency_proof(size1 + 1, size2) != proof:
        rejected(size1=size1 + 1)


def test_roots_from_consistency_proof_expose_the_old_root() -> None:
    """What a fork proof relies on: a proof that leads to the new root names the old
    root of THAT tree, even when it differs from the one the verifier holds."""
    for size1 in (3, 5, 6, 7):
        roots = M.roots_from_consistency_proof(size1=size1, size2=8, root1=bytes(32),
                                               proof=BIG.consistency_proof(size1, 8))
        assert roots.old_root == BIG.root(size1)
        assert roots.new_root == BIG.root(8)


def test_compact_range_tracks_every_size() -> None:
    compact = M.CompactRange()
    for size in range(1, 300):
        compact.append(BIG.node(0, size - 1))
        assert compact.root() == BIG.root(size)
        assert M.compact_range_of(size, BIG.node).nodes == compact.nodes
    copy = compact.copy()
    copy.append(M.leaf_hash(b"x"))
    assert compact.size == 299 and copy.size == 300


def test_bad_parameters() -> None:
    with pytest.raises(ParamsError):
        M.inclusion_ranges(5, 5)
    with pytest.raises(ParamsError):
        M.consistency_ranges(0, 5)
    with pytest.raises(ParamsError):
        M.CompactRange(3, [bytes(32)])
    with pytest.raises(ParamsError):
        BIG.node(0, 300)
    assert M.tree_root(0, BIG.node) == M.EMPTY_ROOT
    assert M.split_point(2) == 1 and M.split_point(5) == 4 and M.split_point(8) == 4
