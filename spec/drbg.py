"""Deterministic randomness for vector generation.

Each vector case draws its random bytes from a stream seeded by a label, so
regeneration is byte-identical and every random byte is written into the vector.
The stream is SHA-256 in counter mode over a domain-separated label:

    block_i = SHA-256("keyflows-drbg-v1" || 0x00 || u16be(len(label)) || label || u64be(i))

It is a test fixture, not a CSPRNG for production keys: a server passes the operating
system's random source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

RandomSource = Callable[[int], bytes]
"""A source of random bytes: called with a length, returns that many bytes."""

_DOMAIN = b"keyflows-drbg-v1\x00"


class Drbg:
    """A labelled, reproducible byte stream. Call it like a RandomSource."""

    def __init__(self, label: str) -> None:
        encoded = label.encode("utf-8")
        if len(encoded) > 0xFFFF:
            raise ValueError("label too long")
        self.label = label
        self._prefix = _DOMAIN + len(encoded).to_bytes(2, "big") + encoded
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative length")
        while len(self._buffer) < n:
            block = hashlib.sha256(self._prefix + self._counter.to_bytes(8, "big")).digest()
            self._buffer += block
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def fork(self, sublabel: str) -> Drbg:
        """An independent stream for a named sub-purpose of the same case."""
        return Drbg(f"{self.label}/{sublabel}")


class Unrecorded:
    """A random source whose bytes nobody records: the operating system's CSPRNG, wrapped.

    The spec still takes randomness as a parameter; marking a source unrecorded only
    allows a randomized algorithm whose deterministic form exists for vectors (ML-KEM's
    Encaps = Encaps_internal(ek, m) with m fresh) to draw its randomness inside a faster,
    equivalent library call instead. Vectors never use an unrecorded source.
    """

    def __init__(self, source: RandomSource) -> None:
        self._source = source

    def __call__(self, n: int) -> bytes:
        return self._source(n)


def unrecorded(source: RandomSource) -> RandomSource:
    """Mark `source` (e.g. os.urandom) as unrecorded; see Unrecorded."""
    return source if isinstance(source, Unrecorded) else Unrecorded(source)


def is_unrecorded(source: RandomSource) -> bool:
    return isinstance(source, Unrecorded)
