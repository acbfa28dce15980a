"""Deliberately broken hashchain logs, as a hostile witness or a client's tile request
finds them: the conformance runner must catch every one.

Each variant is the real reference server with one fault monkeypatched into the spec
calls its log makes, where a real bug would sit: reading a witness's answer too
leniently or trusting the size of its 409, or parsing tile paths that name a large
index. Each names the checks that must fail because of it; `only` says that no other
check of their areas may fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from broken_hashchain import HashchainVariant


def reads_witness_answers_leniently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps the first line of the witness's key that verifies, skipping lines it cannot
    parse, whatever the rest of the answer holds (bytes that are not UTF-8 replaced)."""
    from keyflows.spec import hashchain_note as note
    from keyflows.spec import hashchain_witness as hw
    from keyflows.spec.errors import SpecError

    original = hw.read_answer

    def read_answer(status: int, content_type: str, body: bytes, *, checkpoint_text: str,
                    witness: note.Verifier) -> Any:
        if status != 200:
            return original(status, content_type, body, checkpoint_text=checkpoint_text,
                            witness=witness)
        for raw in body.split(b"\n"):
            try:
                [line] = note.signature_lines(raw + b"\n")
                [ok] = note.verify_note(note.Note(checkpoint_text, (line,)), [witness])
            except (SpecError, ValueError):
                continue
            return _reply(line, ok.timestamp, raw + b"\n")
        return _reply(None, None, None)

    monkeypatch.setattr(hw, "read_answer", read_answer)


def _reply(line: Any, timestamp: int | None, raw: bytes | None) -> Any:
    from keyflows.spec import hashchain_witness as witness

    return witness.WitnessReply(cosignature=line, timestamp=timestamp, line=raw)


def trusts_witness_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads the size of a witness's 409 as any run of digits, and records it."""
    from keyflows.spec import hashchain_note as note
    from keyflows.spec import hashchain_witness as hw

    original = hw.read_answer

    def read_answer(status: int, content_type: str, body: bytes, *, checkpoint_text: str,
                    witness: note.Verifier) -> Any:
        text = body.decode("ascii", "replace").strip()
        if status == 409 and text.isdigit():
            return hw.WitnessReply(latest_size=int(text))
        return original(status, content_type, body, checkpoint_text=checkpoint_text,
                        witness=witness)

    monkeypatch.setattr(hw, "read_answer", read_answer)


def short_tile_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Knows tile indices of one 3-digit element only: a path with x-prefixed elements
    is 400, although it names a tile the tree may have one day (404 until then)."""
    from keyflows.spec import hashchain_tiles as tiles
    from keyflows.spec.errors import DecodeError

    original = tiles.parse_tile_path

    def parse_tile_path(path: str) -> Any:
        if "/x" in path:
            raise DecodeError("a tile index is one 3-digit element", requirement="HC-44")
        return original(path)

    monkeypatch.setattr(tiles, "parse_tile_path", parse_tile_path)


VARIANTS = (
    HashchainVariant("reads-witness-answers-leniently", "keeps a witness's cosignature from "
                     "an answer that is not well-formed signature lines",
                     ("hashchain/witness/malformed-answer-ignored",),
                     reads_witness_answers_leniently),
    HashchainVariant("trusts-witness-sizes", "records any size a witness's 409 names",
                     ("hashchain/witness/malformed-answer-ignored",), trusts_witness_sizes),
    HashchainVariant("short-tile-indices", "refuses tile indices of several elements",
                     ("hashchain/tiles/missing-and-malformed",), short_tile_indices),
)
