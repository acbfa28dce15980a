// ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381 section 5, suite 0x03), written from the RFC
// with BigInt edwards25519 arithmetic, for the key directory's positions (HC-80, HC-81).
// prove() exists to recompute the vectors' proofs; verify() is what a client runs.

import crypto from "node:crypto";
import { Reject, concat } from "./core.mjs";

const P = (1n << 255n) - 19n;
export const Q = (1n << 252n) + 27742317777372353535851937790883648493n;
const SUITE = Uint8Array.of(0x03);
const COFACTOR = 8n;

const mod = (a, m = P) => { const r = a % m; return r < 0n ? r + m : r; };
function pow(b, e, m = P) {
  let r = 1n; b = mod(b, m);
  while (e > 0n) { if (e & 1n) r = (r * b) % m; b = (b * b) % m; e >>= 1n; }
  return r;
}
const inv = (a) => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

const leInt = (b) => b.reduceRight((acc, v) => (acc << 8n) + BigInt(v), 0n);
function leBytes(n, len) {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) { out[i] = Number(n & 0xffn); n >>= 8n; }
  return out;
}
const sha512 = (...parts) => new Uint8Array(crypto.createHash("sha512").update(concat(...parts)).digest());

// Points in extended coordinates [X, Y, Z, T] (RFC 8032 section 5.1.4).
const IDENTITY = [0n, 1n, 1n, 0n];
function add([x1, y1, z1, t1], [x2, y2, z2, t2]) {
  const a = mod((y1 - x1) * (y2 - x2)), b = mod((y1 + x1) * (y2 + x2));
  const c = mod(2n * D * t1 * t2), d = mod(2n * z1 * z2);
  const e = b - a, f = d - c, g = d + c, h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}
const negate = ([x, y, z, t]) => [mod(-x), y, z, mod(-t)];
function mul(k, point) {
  let r = IDENTITY, q = point;
  while (k > 0n) { if (k & 1n) r = add(r, q); q = add(q, q); k >>= 1n; }
  return r;
}
const isIdentity = ([x, y, z]) => mod(x) === 0n && mod(y - z) === 0n;

/** RFC 8032 section 5.1.3: y < p, x recovered from its square, no x = 0 with sign 1;
 * null when the string is not a point. */
export function decodePoint(s) {
  if (s.length !== 32) return null;
  const n = leInt(s);
  const sign = n >> 255n;
  const y = n & ((1n << 255n) - 1n);
  if (y >= P) return null;
  const x2 = mod((y * y - 1n) * inv(D * y * y + 1n));
  if (x2 === 0n) return sign ? null : [0n, y, 1n, 0n];
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * SQRT_M1);
  if (mod(x * x - x2) !== 0n) return null;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

export function encodePoint([x, y, z]) {
  const zi = inv(z);
  const ax = mod(x * zi), ay = mod(y * zi);
  const out = leBytes(ay, 32);
  out[31] |= Number(ax & 1n) << 7;
  return out;
}

const BY = mod(4n * inv(5n));
const BASE = (() => {
  const enc = leBytes(BY, 32);
  return decodePoint(enc);      // sign bit 0: the positive x of RFC 8032's B
})();

/** RFC 8032 section 5.1.5: the clamped scalar and the hash's second half. */
function expandSecret(sk) {
  const h = sha512(sk);
  const a = Uint8Array.from(h.slice(0, 32));
  a[0] &= 248; a[31] &= 127; a[31] |= 64;
  return { x: leInt(a), prefix: h.slice(32) };
}

/** Section 5.4.1.1, try-and-increment with encode_to_curve_salt = PK_string. */
function encodeToCurve(pk, alpha) {
  for (let ctr = 0; ctr < 256; ctr++) {
    const hash = sha512(SUITE, Uint8Array.of(0x01), pk, alpha, Uint8Array.of(ctr), Uint8Array.of(0x00));
    const point = decodePoint(hash.slice(0, 32));
    if (point) return mul(COFACTOR, point);
  }
  throw new Reject("proof", "14", "encode_to_curve found no point");
}

/** Section 5.4.3: the first 16 bytes of SHA-512 over the five points, little-endian. */
function challenge(...points) {
  const hash = sha512(SUITE, Uint8Array.of(0x02), ...points.map(encodePoint), Uint8Array.of(0x00));
  return leInt(hash.slice(0, 16));
}

/** Section 5.2: beta from Gamma. */
const gammaToHash = (gamma) => sha512(SUITE, Uint8Array.of(0x03), encodePoint(mul(COFACTOR, gamma)), Uint8Array.of(0x00));

export function publicKey(sk) { return encodePoint(mul(expandSecret(sk).x, BASE)); }

/** Section 5.1: { pi, beta, h } for secret key sk and input alpha. */
export function prove(sk, alpha) {
  const { x, prefix } = expandSecret(sk);
  const Y = mul(x, BASE);
  const pk = encodePoint(Y);
  const H = encodeToCurve(pk, alpha);
  const h = encodePoint(H);
  const gamma = mul(x, H);
  const k = mod(leInt(sha512(prefix, h)), Q);
  const c = challenge(Y, H, gamma, mul(k, BASE), mul(k, H));
  const s = mod(k + c * x, Q);
  const pi = concat(encodePoint(gamma), leBytes(c, 16), leBytes(s, 32));
  return { pi, beta: gammaToHash(gamma), h, publicKey: pk };
}

/** Section 5.3 with validate_key (5.4.5): beta, or a Reject at `step` (point for a key or
 * Gamma that is not a point or a key of small order, length for sizes, proof otherwise). */
export function verify(pk, pi, alpha, step) {
  if (pk.length !== 32) throw new Reject("length", step, "a VRF public key is 32 bytes");
  const Y = decodePoint(pk);
  if (!Y) throw new Reject("point", step, "the VRF public key is not a point");
  if (isIdentity(mul(COFACTOR, Y))) throw new Reject("point", step, "the VRF public key is of small order");
  if (pi.length !== 80) throw new Reject("length", step, "a VRF proof is 80 bytes");
  const gamma = decodePoint(pi.slice(0, 32));
  if (!gamma) throw new Reject("point", step, "Gamma is not a point");
  const c = leInt(pi.slice(32, 48));
  const s = leInt(pi.slice(48, 80));
  if (s >= Q) throw new Reject("proof", step, "s is not below the group order");
  const H = encodeToCurve(pk, alpha);
  const U = add(mul(s, BASE), negate(mul(c, Y)));
  const V = add(mul(s, H), negate(mul(c, gamma)));
  if (challenge(Y, H, gamma, U, V) !== c) throw new Reject("proof", step, "the VRF proof does not verify");
  return gammaToHash(gamma);
}
