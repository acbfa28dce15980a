"""Vectors of the envelope flow: STREAM alone (steps 4 and 10, ENV-20, ENV-23, ENV-24).

A stream case's plaintext is Drbg(plaintext_drbg)(plaintext_length); its payload is a list
of chunk recipes -- seal plaintext[offset:offset+length] with nonce (index, last) under
the payload key or another message's key -- or literal bytes, so that the 64 KiB chunks of
the mutation families need not be written out; valid cases pin the exact payload by its
SHA-256 (and in full up to 64 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyflows.spec import envelope_stream as S
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.vectors.envelope_common import (
    FLOW,
    OP_STREAM,
    STEP_OPEN,
    chunk_nonces,
    fails,
    flip,
)
from keyflows.vectors.framework import Case, Failure, Outcome, compare, expect_rejection, hx

STREAM_KEY_LABEL = f"{FLOW}/v1/stream/payload-key"
OTHER_KEY_LABEL = f"{FLOW}/v1/stream/other-payload-key"
BOUNDARIES = (0, 1, S.CHUNK_SIZE - 1, S.CHUNK_SIZE, S.CHUNK_SIZE + 1)

Recipe = dict[str, Any]


def _plaintext(label: str, length: int) -> bytes:
    return Drbg(label)(length)


def _honest_recipes(length: int) -> list[Recipe]:
    count = S.chunk_count(length)
    return [{"index": i, "last": i == count - 1, "offset": i * S.CHUNK_SIZE,
             "length": min(S.CHUNK_SIZE, length - i * S.CHUNK_SIZE), "key": "payload"}
            for i in range(count)]


def _bytes(value: Any, name: str) -> bytes:
    return value if isinstance(value, bytes) else hx(value, name)


def build_payload(inputs: Mapping[str, Any]) -> bytes:
    """The payload a stream case describes: its chunk recipes, in order."""
    plaintext = _plaintext(inputs["plaintext_drbg"], inputs["plaintext_length"])
    keys = {"payload": _bytes(inputs["payload_key"], "payload_key"),
            "other": _bytes(inputs["other_payload_key"], "other_payload_key")}
    out = bytearray()
    for recipe in inputs["chunks"]:
        if "bytes" in recipe:
            out += _bytes(recipe["bytes"], "bytes")
            continue
        chunk = plaintext[recipe["offset"]:recipe["offset"] + recipe["length"]]
        out += primitives.aes256gcm_encrypt(keys[recipe["key"]],
                                            S.chunk_nonce(recipe["index"], recipe["last"]),
                                            chunk, b"")
    return bytes(out)


def _stream_inputs(length: int, chunks: list[Recipe]) -> dict[str, Any]:
    return {"payload_key": Drbg(STREAM_KEY_LABEL)(32),
            "other_payload_key": Drbg(OTHER_KEY_LABEL)(32),
            "plaintext_drbg": f"{FLOW}/v1/stream/plaintext-{length}",
            "plaintext_length": length, "chunks": chunks}


def _open_stream(inputs: Mapping[str, Any]) -> bytes:
    opener = S.StreamOpener(_bytes(inputs["payload_key"], "payload_key"),
                            inputs["payload_length"])
    payload = build_payload(inputs)
    out = b"".join(piece for start in range(0, len(payload), 40_000)
                   for piece in opener.update(payload[start:start + 40_000]))
    opener.finish()
    return out


def _stream_case(slug: str, comment: str, flags: tuple[str, ...],
                 requirements: tuple[str, ...], failure: Failure | None, *, length: int,
                 chunks: list[Recipe], payload_length: int | None = None) -> Case:
    inputs = _stream_inputs(length, chunks)
    payload = build_payload(inputs)
    inputs["payload_length"] = len(payload) if payload_length is None else payload_length
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        plaintext = _plaintext(inputs["plaintext_drbg"], length)
        intermediates = {"chunk_nonces": chunk_nonces(length)}
        outputs = {"payload_sha256": primitives.sha256(payload),
                   "plaintext_sha256": primitives.sha256(plaintext)}
        if len(payload) <= 64:
            outputs["payload"] = payload
    return Case(id=f"env-v1-stream/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_STREAM, inputs=inputs,
                intermediates=intermediates, outputs=outputs, failure=failure)


def stream_cases() -> list[Case]:
    cases = [_stream_case(f"length-{n}", f"{n} plaintext bytes: {S.chunk_count(n)} chunk(s)",
                          ("Valid", "ChunkBoundary"), ("ENV-23", "ENV-24"), None, length=n,
                          chunks=_honest_recipes(n))
             for n in BOUNDARIES]
    aead = fails("aead", STEP_OPEN)
    length = fails("length", STEP_OPEN)
    two = _honest_recipes(S.CHUNK_SIZE + 1)  # a full chunk and a 1-byte final chunk
    full_two = _honest_recipes(2 * S.CHUNK_SIZE)  # two full chunks
    one_full = _honest_recipes(S.CHUNK_SIZE)  # one full final chunk
    cases += [
        _stream_case("truncated", "a 2-chunk payload cut after its first (non-final) chunk",
                     ("StreamTruncated",), ("ENV-24",), aead, length=S.CHUNK_SIZE + 1,
                     chunks=two[:1]),
        _stream_case("extended", "a chunk appended after a full final chunk",
                     ("StreamExtended",), ("ENV-24",), aead, length=2 * S.CHUNK_SIZE,
                     chunks=[one_full[0], full_two[1]]),
        _stream_case("reordered", "two full chunks in swapped order", ("StreamReordered",),
                     ("ENV-24",), aead, length=2 * S.CHUNK_SIZE,
                     chunks=[full_two[1], full_two[0]]),
        _stream_case("swapped-chunk", "chunk 0 sealed under another message's payload key",
                     ("StreamSwapped",), ("ENV-24",), aead, length=S.CHUNK_SIZE + 1,
                     chunks=[two[0] | {"key": "other"}, two[1]]),
        _stream_case("final-not-last", "the final chunk sealed with last = 0x00",
                     ("StreamFinalFlag",), ("ENV-24",), aead, length=1,
                     chunks=[_honest_recipes(1)[0] | {"last": False}]),
        _stream_case("early-last", "a non-final chunk sealed with last = 0x01",
                     ("StreamFinalFlag",), ("ENV-24",), aead, length=S.CHUNK_SIZE + 1,
                     chunks=[two[0] | {"last": True}, two[1]]),
        _stream_case("empty-final-after-full", "a full chunk followed by an empty final "
                     "chunk: a length no STREAM has", ("StreamLength",), ("ENV-20", "ENV-23"),
                     length, length=S.CHUNK_SIZE,
                     chunks=[one_full[0] | {"last": False},
                             {"index": 1, "last": True, "offset": S.CHUNK_SIZE, "length": 0,
                              "key": "payload"}]),
        _stream_case("bitflip-chunk-0", "one bit of the first chunk flipped (as literal bytes)",
                     ("BitFlip",), ("ENV-24",), aead, length=1,
                     chunks=[{"bytes": flip(build_payload(
                         _stream_inputs(1, _honest_recipes(1))), 0)}]),
        _stream_case("short", "the payload ends 1 byte before payload_length",
                     ("StreamLength",), ("ENV-20",), length, length=S.CHUNK_SIZE + 1,
                     chunks=two, payload_length=S.ciphertext_length(S.CHUNK_SIZE + 1) + 1),
        _stream_case("long", "1 byte after payload_length", ("StreamLength",), ("ENV-20",),
                     length, length=1, chunks=[*_honest_recipes(1), {"bytes": "00"}],
                     payload_length=S.ciphertext_length(1)),
        _stream_case("tag-only-length", "payload_length 15, shorter than one tag",
                     ("StreamLength",), ("ENV-20", "ENV-23"), length, length=0, chunks=[],
                     payload_length=15),
    ]
    return cases



def verify_stream(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _open_stream(inputs))
    plaintext = _open_stream(inputs)
    payload = build_payload(inputs)
    outputs: dict[str, Any] = {"payload_sha256": primitives.sha256(payload),
                               "plaintext_sha256": primitives.sha256(plaintext)}
    if len(payload) <= 64:
        outputs["payload"] = payload
    return compare(case, intermediates={"chunk_nonces": chunk_nonces(len(plaintext))},
                   outputs=outputs)
