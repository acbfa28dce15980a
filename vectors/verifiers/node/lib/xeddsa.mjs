// XEdDSA (Signal, "The XEdDSA and VXEdDSA Signature Schemes", revision 1, sections 2.2,
// 2.3, 3.3, 3.4), as the keypair-publication chapter uses it for the possession signature
// of an X25519 key (KP-14). Written from that document with BigInt edwards25519
// arithmetic: independent of the Python specification and of libsodium.

import crypto from "node:crypto";
import { concat, ed25519Verify } from "./core.mjs";

const P = (1n << 255n) - 19n;
const Q = (1n << 252n) + 27742317777372353535851937790883648493n;
const D = (-121665n * inv(121666n)) % P;
const BY = (4n * inv(5n)) % P;
const BX = recoverX(BY, 0);
const BASE = [BX, BY, 1n, (BX * BY) % P];

function mod(a, m = P) { const r = a % m; return r < 0n ? r + m : r; }
function pow(b, e, m = P) {
  let r = 1n; b = mod(b, m);
  while (e > 0n) { if (e & 1n) r = (r * b) % m; b = (b * b) % m; e >>= 1n; }
  return r;
}
function inv(a) { return pow(a, P - 2n); }
function recoverX(y, sign) {
  const x2 = mod((y * y - 1n) * inv(D * y * y + 1n));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * pow(2n, (P - 1n) / 4n));
  if (Number(x & 1n) !== sign) x = mod(-x);
  return x;
}
// Extended twisted Edwards coordinates (RFC 8032 section 5.1.4).
function add([x1, y1, z1, t1], [x2, y2, z2, t2]) {
  const a = mod((y1 - x1) * (y2 - x2)), b = mod((y1 + x1) * (y2 + x2));
  const c = mod(2n * t1 * t2 * D), d = mod(2n * z1 * z2);
  const e = b - a, f = d - c, g = d + c, h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}
function mul(k, point) {
  let r = [0n, 1n, 1n, 0n];
  for (let i = 255n; i >= 0n; i--) {
    r = add(r, r);
    if ((k >> i) & 1n) r = add(r, point);
  }
  return r;
}
function encode([x, y, z]) {
  const zi = inv(z);
  const ax = mod(x * zi), ay = mod(y * zi);
  const out = leBytes(ay, 32);
  out[31] |= Number(ax & 1n) << 7;
  return out;
}
const leInt = (b) => b.reduceRight((acc, v) => (acc << 8n) + BigInt(v), 0n);
function leBytes(n, len) {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) { out[i] = Number(n & 0xffn); n >>= 8n; }
  return out;
}
const sha512 = (...parts) => new Uint8Array(crypto.createHash("sha512").update(concat(...parts)).digest());

/** calculate_key_pair (section 2.3): the clamped X25519 scalar k, A = kB with its sign
 * bit forced to 0 by negating a. */
export function calculateKeyPair(x25519Private) {
  const k = Uint8Array.from(x25519Private);
  k[0] &= 248; k[31] &= 127; k[31] |= 64;
  let a = mod(leInt(k), Q);
  let A = encode(mul(a, BASE));
  if (A[31] & 0x80) { a = mod(-a, Q); A = encode(mul(a, BASE)); }
  return { A, a };
}

/** convert_mont (section 2.2): y = (u - 1) / (u + 1), sign bit 0; null for u = -1. */
export function convertMont(u) {
  const masked = Uint8Array.from(u); masked[31] &= 0x7f;
  const v = mod(leInt(masked));
  if (mod(v + 1n) === 0n) return null;
  return leBytes(mod((v - 1n) * inv(v + 1n)), 32);
}

/** xeddsa_sign (section 3.3) with the 64 random bytes Z. */
export function xeddsaSign(x25519Private, message, z) {
  const { A, a } = calculateKeyPair(x25519Private);
  const prefix = new Uint8Array(32).fill(0xff); prefix[0] = 0xfe;
  const r = mod(leInt(sha512(prefix, leBytes(a, 32), message, z)), Q);
  const R = encode(mul(r, BASE));
  const h = mod(leInt(sha512(R, A, message)), Q);
  return concat(R, leBytes(mod(r + h * a, Q), 32));
}

/** xeddsa_verify (section 3.4) as Ed25519 verification under convert_mont(u). */
export function xeddsaVerify(x25519Public, message, signature) {
  const edwards = convertMont(x25519Public);
  return edwards !== null && ed25519Verify(edwards, message, signature);
}
