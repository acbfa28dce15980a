"""Shamir secret sharing over GF(2^8), in the share layout of HashiCorp Vault's `shamir`.

Field: GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11b); it is
the field of Vault's log/exp tables (generator 0xe5), and `gf_mul` agrees with them on all
65536 products (tests/test_lock_layering_spec.py checks it against the copied tables).

Each secret byte is the intercept of its own random polynomial of degree threshold - 1
whose leading coefficient is non-zero. A share is

    y_1 || y_2 || ... || y_n || x        (n = secret length; share length n + 1)

with x in 1..255, distinct per share. Combining is Lagrange interpolation at x = 0.

Steps (lock-layering chapter, "Secret shares"):
  S1. Parameters: 2 <= threshold <= parts <= 255, non-empty secret (LOCK-2).
  S2. Polynomials: all threshold - 1 non-intercept coefficients are drawn together and
      the whole draw is repeated while the leading one is zero (LOCK-2), as Vault's
      makePolynomial does since it checks the leading coefficient (hashicorp/vault
      shamir/shamir.go, e.g. commit 0057c76). The release trustbloc pinned drew them once
      and never looked at the leading coefficient (`draw_polynomial_once`, LOCK-8).
  S3. x-coordinates: distinct, in 1..255. The v1 layout is x = 1..parts (current Vault);
      the Vault releases of 2017..2024, which trustbloc pinned, drew a random permutation
      of 1..255 (`vault_2017_x_coordinates`). Vectors carry the x-coordinates as inputs.
  S4. Layout: y bytes in secret order, then the one x byte (LOCK-2).
  S5. Combine: at least two shares, one common length >= 2, no x = 0, no duplicate x;
      the order of the shares is free (LOCK-3).

Arithmetic on secret bytes (y values, coefficients) uses no tables and no branches on
secret data; x-coordinates are public, so their inverses may come from a cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from keyflows.spec.drbg import RandomSource
from keyflows.spec.errors import ParamsError, ShareError

MAX_PARTS = 255


def gf_mul(a: int, b: int) -> int:
    """Multiply in GF(2^8) mod 0x11b without tables or data-dependent branches."""
    product = 0
    for _ in range(8):
        product ^= -(b & 1) & a
        carry = -((a >> 7) & 1) & 0x1B
        a = ((a << 1) & 0xFF) ^ carry
        b >>= 1
    return product & 0xFF


def gf_inv(a: int) -> int:
    """a^254 = a^-1 for a != 0 (Fermat in the multiplicative group of order 255)."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    result, base, exponent = 1, a, 254
    while exponent:
        if exponent & 1:
            result = gf_mul(result, base)
        base = gf_mul(base, base)
        exponent >>= 1
    return result


@cache
def _public_inverse(a: int) -> int:
    """Inverse of a public value (a difference of x-coordinates): cached."""
    return gf_inv(a)


def evaluate(coefficients: Sequence[int], x: int) -> int:
    """Horner's rule; coefficients[0] is the intercept (the secret byte)."""
    out = 0
    for c in reversed(coefficients):
        out = gf_mul(out, x) ^ c
    return out


def check_split_params(parts: int, threshold: int, secret_len: int) -> None:
    """Step S1 (LOCK-2): 2 <= threshold <= parts <= 255 and a non-empty secret."""
    for name, value in (("parts", parts), ("threshold", threshold)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamsError(f"{name} must be an integer", requirement="LOCK-2")
    if not 2 <= threshold <= parts <= MAX_PARTS:
        raise ParamsError("need 2 <= threshold <= parts <= 255", requirement="LOCK-2")
    if secret_len == 0:
        raise ParamsError("cannot split an empty secret", requirement="LOCK-2")


def check_x_coordinates(x_coordinates: Sequence[int], parts: int) -> None:
    """Step S3 (LOCK-2): one x per share, each in 1..255, all distinct."""
    if len(x_coordinates) != parts:
        raise ParamsError("one x-coordinate per share", requirement="LOCK-2")
    for x in x_coordinates:
        if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= MAX_PARTS:
            raise ParamsError("x-coordinates must be integers in 1..255", requirement="LOCK-2")
    if len(set(x_coordinates)) != len(x_coordinates):
        raise ParamsError("x-coordinates must be distinct", requirement="LOCK-2")


def sequential_x_coordinates(parts: int) -> list[int]:
    """Step S3, v1 layout (current Vault): x = 1, 2, ..., parts."""
    return list(range(1, parts + 1))


def vault_2017_x_coordinates(parts: int, random: RandomSource) -> list[int]:
    """Step S3, the layout of Vault 2017..2024 (hashicorp/vault PR 2621, still in place in
    issue 25440): the first `parts` entries of a random permutation of 0..254, plus one.

    Vault drew the permutation with math/rand; this draws it from `random` (Fisher-Yates
    with rejection sampling, one byte per draw), so the coordinates are reproducible in
    vectors. Only the distribution matches Vault, not its bytes: vectors carry the
    resulting x-coordinates as inputs, which is what byte-exactness needs.
    """
    check_split_params(parts, 2, 1)
    pool = list(range(MAX_PARTS))
    for i in range(MAX_PARTS - 1, 0, -1):
        bound = i + 1
        limit = 256 - 256 % bound
        while True:
            r = random(1)[0]
            if r < limit:
                break
        j = r % bound
        pool[i], pool[j] = pool[j], pool[i]
    return [v + 1 for v in pool[:parts]]


def draw_polynomial(intercept: int, degree: int, random: RandomSource) -> list[int]:
    """Step S2 (LOCK-2): draw all non-intercept coefficients, and draw them all again
    while the leading one is zero, so the polynomial has exactly the stated degree."""
    while True:
        rest = random(degree)
        if rest[-1] != 0:
            return [intercept, *rest]


def draw_polynomial_once(intercept: int, degree: int, random: RandomSource) -> list[int]:
    """The pinned Vault release of the trustbloc profile (LOCK-8): one draw, whatever the
    leading coefficient. A zero one lowers the degree; in a 2-of-2 split the byte's
    polynomial is then constant and that byte of every share equals the secret byte."""
    return [intercept, *random(degree)]


def check_polynomials(secret: bytes, coefficients: Sequence[Sequence[int]],
                      threshold: int, *, leading_nonzero: bool = True) -> None:
    """Step S2 (LOCK-2): one polynomial per secret byte, intercept = that byte, degree
    threshold - 1 with a non-zero leading coefficient (unless `leading_nonzero` is off, for
    the trustbloc profile's shares), every coefficient a byte."""
    if len(coefficients) != len(secret):
        raise ParamsError("one polynomial per secret byte", requirement="LOCK-2")
    for byte, poly in zip(secret, coefficients, strict=True):
        if len(poly) != threshold:
            raise ParamsError("each polynomial has threshold coefficients", requirement="LOCK-2")
        if any(not isinstance(c, int) or not 0 <= c <= 255 for c in poly):
            raise ParamsError("coefficients are bytes", requirement="LOCK-2")
        if poly[0] != byte:
            raise ParamsError("the intercept must be the secret byte", requirement="LOCK-2")
        if leading_nonzero and poly[-1] == 0:
            raise ParamsError("the leading coefficient must be non-zero", requirement="LOCK-2")


@dataclass(frozen=True)
class Split:
    """Shares and the values that made them (for vectors)."""

    shares: list[bytes]
    coefficients: list[list[int]]  # one polynomial per secret byte, intercept first
    x_coordinates: list[int]


def split_with(secret: bytes, coefficients: Sequence[Sequence[int]],
               x_coordinates: Sequence[int], *, leading_nonzero: bool = True) -> list[bytes]:
    """Steps S1-S4 from given polynomials and x-coordinates (the Vault layout)."""
    threshold = len(coefficients[0]) if coefficients else 0
    check_split_params(len(x_coordinates), threshold, len(secret))
    check_polynomials(secret, coefficients, threshold, leading_nonzero=leading_nonzero)
    check_x_coordinates(x_coordinates, len(x_coordinates))
    return [bytes(evaluate(poly, x) for poly in coefficients) + bytes([x])
            for x in x_coordinates]


def split(secret: bytes, parts: int, threshold: int, random: RandomSource,
          x_coordinates: Sequence[int] | None = None,
          draw: Callable[[int, int, RandomSource], list[int]] = draw_polynomial) -> Split:
    """Split `secret` into `parts` shares, any `threshold` of which recombine it.

    The polynomials are drawn first, byte by byte, as Vault does; x-coordinates default to
    the v1 layout 1..parts."""
    check_split_params(parts, threshold, len(secret))
    xs = list(x_coordinates) if x_coordinates is not None else sequential_x_coordinates(parts)
    check_x_coordinates(xs, parts)
    coefficients = [draw(b, threshold - 1, random) for b in secret]
    return Split(shares=split_with(secret, coefficients, xs,
                                   leading_nonzero=draw is draw_polynomial),
                 coefficients=coefficients,
                 x_coordinates=xs)


def check_shares(shares: Sequence[bytes]) -> None:
    """Step S5 (LOCK-3): at least two shares, one common length of at least 2 bytes,
    non-zero distinct x-coordinates (so at most 255 shares)."""
    if len(shares) < 2:
        raise ShareError("at least two shares are needed", requirement="LOCK-3")
    length = len(shares[0])
    if length < 2 or any(len(s) != length for s in shares):
        raise ShareError("shares must have one common length of at least 2 bytes",
                         requirement="LOCK-3")
    check_share_points(shares)


def check_share_points(shares: Sequence[bytes]) -> None:
    """Step S5 (LOCK-3), the x-coordinates: none is 0, no two are equal. The rest of
    `check_shares` for shares whose count and common length the caller's own parse fixed."""
    xs = [s[-1] for s in shares]
    if 0 in xs:
        # x = 0 would carry the secret itself; Vault never makes one and v1 refuses it.
        raise ShareError("a share has x-coordinate 0", requirement="LOCK-3")
    if len(set(xs)) != len(xs):
        raise ShareError("duplicate x-coordinate", requirement="LOCK-3")


def lagrange_basis_at_zero(xs: Sequence[int]) -> list[int]:
    """l_i(0) = prod_{j != i} x_j / (x_i - x_j); in GF(2^8) subtraction is XOR."""
    basis = []
    for i, xi in enumerate(xs):
        b = 1
        for j, xj in enumerate(xs):
            if i != j:
                b = gf_mul(b, gf_mul(xj, _public_inverse(xi ^ xj)))
        basis.append(b)
    return basis


def combine(shares: Sequence[bytes]) -> bytes:
    """Step S5: Lagrange interpolation at 0 of every byte position; order is free.

    With fewer shares than the threshold the result is a wrong secret, not an error:
    shares carry no threshold, so the layer above must detect it (the lock check, LOCK-6).
    """
    check_shares(shares)
    return interpolate(shares)


def interpolate(shares: Sequence[bytes]) -> bytes:
    """Step S5 without its checks: the secret of shares that passed `check_shares`."""
    basis = lagrange_basis_at_zero([s[-1] for s in shares])
    out = bytearray(len(shares[0]) - 1)
    for k in range(len(out)):
        acc = 0
        for share, b in zip(shares, basis, strict=True):
            acc ^= gf_mul(share[k], b)
        out[k] = acc
    return bytes(out)
