"""Canonical encodings shared by every flow.

- base64url: RFC 4648 section 5 alphabet, no padding. Decoding is strict: padding,
  characters outside the alphabet, whitespace, and non-zero unused trailing bits are
  all rejected, so every byte string has exactly one accepted text form.
- Labelled context: the byte string every KDF `info` and every AEAD AAD is built from,

      "keyflows-v1" || 0x00 || label || 0x00 || for each field: u16be(len(field)) || field

  which keeps every derivation domain-separated and every field boundary unambiguous.
"""

from __future__ import annotations

import base64
import binascii

from keyflows.spec.errors import DecodeError, LengthError

PROTOCOL_ID = b"keyflows-v1"

_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url_encode(data: bytes) -> str:
    """Encode without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, requirement: str | None = None) -> bytes:
    """Decode strictly; raise DecodeError for any non-canonical text."""
    if not isinstance(text, str):
        raise DecodeError("base64url value is not a string", requirement=requirement)
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise DecodeError("base64url value has characters outside the alphabet",
                          requirement=requirement) from None
    # '+', '/' and '=' are valid for binascii but not in unpadded base64url; everything
    # else outside the alphabet (whitespace included) is refused by strict_mode.
    if b"+" in raw or b"/" in raw or b"=" in raw:
        raise DecodeError("base64url value has characters outside the alphabet or padding",
                          requirement=requirement)
    remainder = len(raw) % 4
    if remainder == 1:
        raise DecodeError("base64url value has an impossible length", requirement=requirement)
    if remainder:
        # The unused low bits of the last character must be zero (canonical form).
        unused_bits = {2: 4, 3: 2}[remainder]
        last = _B64URL_ALPHABET.find(text[-1])
        if last >= 0 and last & ((1 << unused_bits) - 1):
            raise DecodeError("base64url value has non-zero trailing bits",
                              requirement=requirement)
    try:
        return binascii.a2b_base64(raw.translate(_URL_TO_STD) + b"=" * (-len(raw) % 4),
                                   strict_mode=True)
    except binascii.Error:
        raise DecodeError("base64url value has characters outside the alphabet or padding",
                          requirement=requirement) from None


def b64url_decode_exact(text: str, length: int, *, field: str,
                        requirement: str | None = None) -> bytes:
    """Decode strictly and require an exact byte length."""
    data = b64url_decode(text, requirement=requirement)
    if len(data) != length:
        raise LengthError(f"{field} must be {length} bytes, got {len(data)}",
                          requirement=requirement)
    return data


def u16be(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u32be(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64be(n: int) -> bytes:
    return n.to_bytes(8, "big")


def length_prefixed(field: bytes) -> bytes:
    if len(field) > 0xFFFF:
        raise LengthError("context field longer than 65535 bytes")
    return u16be(len(field)) + field


def labelled_context(label: str, *fields: bytes) -> bytes:
    """The domain-separated context string used as HKDF info and as AEAD AAD."""
    out = PROTOCOL_ID + b"\x00" + label.encode("ascii") + b"\x00"
    return out + b"".join(length_prefixed(f) for f in fields)
