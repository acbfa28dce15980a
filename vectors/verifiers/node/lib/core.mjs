// Shared rules of every flow, written from docs/common.rst ("Common rules") and
// docs/vectors.rst ("Test vectors"): the rejection type, hex and strict base64url,
// labelled contexts, identifiers, and the primitives of the spec's primitive list.
//
// Independent of the Python executable specification by construction: nothing here was
// ported from spec/ or vectors/*.py.

import crypto from "node:crypto";
import { argon2id as argon2idWasm } from "hash-wasm";
import nacl from "tweetnacl";

// --- rejections ------------------------------------------------------------------------

/** A consumer's refusal: the failure class (docs/vectors.rst "Failure classes") and the
 * numbered step of the chapter whose check refused. */
export class Reject extends Error {
  constructor(cls, step, message) {
    super(`${cls} at step ${step}: ${message}`);
    this.cls = cls;
    this.step = String(step);
  }
}

export const FAILURE_CLASSES = new Set([
  "decode", "length", "params", "point", "aead", "mac", "signature", "binding",
  "link", "replay", "expired", "authz", "share", "proof", "history", "fork", "witness",
  "monitor",
]);

// --- bytes -----------------------------------------------------------------------------

export const enc = new TextEncoder();
export const utf8 = (s) => new Uint8Array(Buffer.from(s, "utf8"));
export const ascii = (s) => {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) throw new Error(`not ASCII: ${JSON.stringify(s)}`);
  }
  return new Uint8Array(Buffer.from(s, "latin1"));
};

/** Lowercase hex of the vector files (docs/vectors.rst: "Byte strings ... are lowercase
 * hexadecimal"). Strict: the files are canonical. */
export function fromHex(s) {
  if (typeof s !== "string" || !/^(?:[0-9a-f]{2})*$/.test(s)) {
    throw new Error(`vector field is not lowercase hex: ${JSON.stringify(s)}`);
  }
  return new Uint8Array(Buffer.from(s, "hex"));
}
export const toHex = (b) => Buffer.from(b).toString("hex");

export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
export const equalBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export function u16be(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new Error(`u16 out of range: ${n}`);
  return new Uint8Array([n >> 8, n & 0xff]);
}
export function u32be(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`u32 out of range: ${n}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}
export function u64be(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), false);
  return b;
}

// --- base64url (API-1) ------------------------------------------------------------------

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Strict unpadded base64url (docs/common.rst "Encoding", API-1): rejects padding,
 * whitespace, '+' and '/', a length of 1 modulo 4 and non-zero unused low bits
 * (failure class decode). The caller checks the decoded length (class length). */
export function b64urlDecode(s, step, what = "value") {
  if (typeof s !== "string") throw new Reject("decode", step, `${what} is not a string`);
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Reject("decode", step, `${what}: character outside the unpadded base64url alphabet`);
  if (s.length % 4 === 1) throw new Reject("decode", step, `${what}: length 1 mod 4`);
  const out = [];
  let acc = 0, bits = 0;
  for (const ch of s) {
    acc = (acc << 6) | B64URL.indexOf(ch);
    bits += 6;
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); }
    acc &= (1 << bits) - 1;
  }
  if (acc !== 0) throw new Reject("decode", step, `${what}: non-zero unused trailing bits`);
  return new Uint8Array(out);
}
export const b64urlEncode = (b) => Buffer.from(b).toString("base64url");

/** base64url value of an exact length: decode, then length (API-1 ordering). */
export function b64urlExact(s, n, step, what) {
  const b = b64urlDecode(s, step, what);
  if (b.length !== n) throw new Reject("length", step, `${what} is ${b.length} bytes, not ${n}`);
  return b;
}

// --- identifiers and labelled contexts --------------------------------------------------

const IDENTIFIER = /^[A-Za-z0-9._~-]{1,64}$/; // JS '$' never matches before a final "\n"

/** KD-2: 1 to 64 characters from A-Z a-z 0-9 . _ ~ - (failure class decode). */
export function checkIdentifier(v, step, what) {
  if (typeof v !== "string" || !IDENTIFIER.test(v)) {
    throw new Reject("decode", step, `${what} ${JSON.stringify(v)} is not an identifier`);
  }
  return v;
}

/** docs/common.rst "Labelled contexts": "keyflows-v1" 00 label 00 (u16be(len) field)*.
 * Text fields are their ASCII bytes. */
export function labelledContext(label, ...fields) {
  const parts = [ascii("keyflows-v1"), new Uint8Array([0]), ascii(label), new Uint8Array([0])];
  for (const f of fields) {
    const b = typeof f === "string" ? ascii(f) : f;
    parts.push(u16be(b.length), b);
  }
  return concat(...parts);
}

// --- primitives --------------------------------------------------------------------------

export const sha256 = (...parts) => new Uint8Array(crypto.createHash("sha256").update(concat(...parts)).digest());
export const sha512 = (...parts) => new Uint8Array(crypto.createHash("sha512").update(concat(...parts)).digest());
export const hmacSha256 = (key, ...parts) =>
  new Uint8Array(crypto.createHmac("sha256", key).update(concat(...parts)).digest());

/** RFC 5869 HKDF-SHA256, in two halves so the PRK can be compared. An empty salt is 32
 * zero bytes (docs/flows/key-derivation.rst step 2). */
export function hkdfExtract(salt, ikm) {
  return hmacSha256(salt && salt.length ? salt : new Uint8Array(32), ikm);
}
export function hkdfExpand(prk, info, length) {
  if (length > 255 * 32) throw new Error("HKDF output too long");
  const out = [];
  let t = new Uint8Array(0);
  for (let i = 1; out.length * 32 < length; i++) {
    t = hmacSha256(prk, t, info, new Uint8Array([i]));
    out.push(t);
  }
  return concat(...out).slice(0, length);
}
export function hkdf(ikm, salt, info, length) {
  const prk = hkdfExtract(salt, ikm);
  return { prk, okm: hkdfExpand(prk, info, length) };
}

export async function argon2id(password, salt, t, m, p, length = 32) {
  const out = await argon2idWasm({
    password, salt, iterations: t, memorySize: m, parallelism: p, hashLength: length,
    outputType: "binary",
  });
  return new Uint8Array(out);
}

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

const x25519PrivateKey = (priv) =>
  crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, Buffer.from(priv)]), format: "der", type: "pkcs8" });
const x25519PublicKey = (pub) =>
  crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64urlEncode(pub) }, format: "jwk" });
const ed25519PrivateKey = (seed) =>
  crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, Buffer.from(seed)]), format: "der", type: "pkcs8" });

/** X25519(priv, 9) (RFC 7748). */
export function x25519Public(priv) {
  const jwk = crypto.createPublicKey(x25519PrivateKey(priv)).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x, "base64url"));
}
/** X25519(priv, pub); null when the library refuses (an all-zero result). */
export function x25519(priv, pub) {
  try {
    return new Uint8Array(crypto.diffieHellman({ privateKey: x25519PrivateKey(priv), publicKey: x25519PublicKey(pub) }));
  } catch {
    return null;
  }
}
export function ed25519Public(seed) {
  const jwk = crypto.createPublicKey(ed25519PrivateKey(seed)).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x, "base64url"));
}
export const ed25519Sign = (seed, msg) => new Uint8Array(crypto.sign(null, msg, ed25519PrivateKey(seed)));
/** Ed25519 verification by the strict rule of docs/common.rst ("Signatures", HC-35):
 * "point" when the public key is not the canonical encoding of a curve point or is of
 * small order; "signature" when S >= L, R is non-canonical or of small order, or the
 * cofactorless equation fails (node's OpenSSL verify); "valid" otherwise. */
export function ed25519Strict(pub, msg, sig) {
  if (pub.length !== 32 || sig.length !== 64) return "length";
  if (!ed25519IsCanonical(pub) || ED25519_SMALL_ORDER.has(toHex(pub))) return "point";
  const r = sig.subarray(0, 32);
  if (leBigInt(sig.subarray(32)) >= ED25519_L) return "signature";
  if (!ed25519IsCanonical(r) || ED25519_SMALL_ORDER.has(toHex(r))) return "signature";
  try {
    const key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64urlEncode(pub) }, format: "jwk" });
    return crypto.verify(null, msg, key, sig) ? "valid" : "signature";
  } catch {
    return "signature";
  }
}
export const ed25519Verify = (pub, msg, sig) => ed25519Strict(pub, msg, sig) === "valid";

const ED25519_P = (1n << 255n) - 19n;
export const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;
const modPow = (b, e, m) => {
  let r = 1n;
  b %= m;
  for (; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
  return r;
};
const ED25519_D = ((-121665n * modPow(121666n, ED25519_P - 2n, ED25519_P)) % ED25519_P + ED25519_P) % ED25519_P;
const leBigInt = (bytes) => BigInt(`0x${Buffer.from(bytes).reverse().toString("hex") || "0"}`);
// The eight points of order dividing 8, canonically encoded (docs/common.rst).
const ED25519_SMALL_ORDER = new Set([
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]);
/** y < p, x exists for y, and the sign bit is clear when x = 0 (docs/common.rst). */
export function ed25519IsCanonical(encoding) {
  const v = leBigInt(encoding);
  const y = v & ((1n << 255n) - 1n);
  const sign = v >> 255n;
  if (y >= ED25519_P) return false;
  const p = ED25519_P;
  const x2 = (((y * y - 1n) % p + p) % p) * modPow((ED25519_D * y * y + 1n) % p, p - 2n, p) % p;
  if (x2 === 0n) return sign === 0n;
  return modPow(x2, (p - 1n) / 2n, p) === 1n;
}

/** AES-256-GCM with a 12-byte nonce; the result is ciphertext || 16-byte tag. */
export function aesGcmSeal(key, nonce, plaintext, aad) {
  const c = crypto.createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  return concat(c.update(plaintext), c.final(), c.getAuthTag());
}
/** null when the tag does not verify. */
export function aesGcmOpen(key, nonce, sealed, aad) {
  if (sealed.length < 16) return null;
  try {
    const d = crypto.createDecipheriv("aes-256-gcm", key, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.slice(sealed.length - 16));
    return concat(d.update(sealed.slice(0, sealed.length - 16)), d.final());
  } catch {
    return null;
  }
}

/** NaCl SecretBox (XSalsa20-Poly1305): tag || ciphertext. */
export const secretboxSeal = (key, nonce, msg) => nacl.secretbox(msg, nonce, key);
export const secretboxOpen = (key, nonce, box) => nacl.secretbox.open(box, nonce, key);

// --- X25519 public key checks (KP-5) ----------------------------------------------------

const P25519 = (1n << 255n) - 19n;
const leBig = (b) => b.reduceRight((a, x) => (a << 8n) | BigInt(x), 0n);
// The canonical u-coordinates of the points of order 1, 2, 4 and 8 of Curve25519
// (RFC 7748 section 7 points to them; listed at cr.yp.to/ecdh.html#validate).
const LOW_ORDER_U = new Set([
  0n, 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
  P25519 - 1n,
]);

/** KP-5: 32 bytes, top bit clear, u < p, not of low order (failure class point). Returns
 * the reason, or null. */
export function x25519PointProblem(pub) {
  if (pub.length !== 32) return "not 32 bytes";
  if (pub[31] & 0x80) return "top bit set";
  const u = leBig(pub);
  if (u >= P25519) return "u >= 2^255 - 19";
  if (LOW_ORDER_U.has(u)) return "a point of low order";
  return null;
}

// --- JSON-shaped wire values ------------------------------------------------------------

export const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** Exactly these members, no other (docs: "No other members are allowed at any level");
 * a missing or unknown member is a decode failure. */
export function checkMembers(obj, required, optional, step, what) {
  if (!isObject(obj)) throw new Reject("decode", step, `${what} is not an object`);
  for (const k of Object.keys(obj)) {
    if (!required.includes(k) && !optional.includes(k)) {
      throw new Reject("decode", step, `${what} has an unknown member ${JSON.stringify(k)}`);
    }
  }
  for (const k of required) {
    if (!(k in obj)) throw new Reject("decode", step, `${what} misses member ${JSON.stringify(k)}`);
  }
  return obj;
}

/** A JSON integer (not a boolean, not a string, not a float). */
export const isInteger = (v) => typeof v === "number" && Number.isInteger(v);

// --- the deterministic randomness of the vector files (header `source.construction`) ------

/** keyflows-drbg-v1: block_i = SHA-256("keyflows-drbg-v1" || 0x00 || u16be(len(label)) ||
 * label || u64be(i)); the stream is block_0 || block_1 || ..., consumed in order. */
export class Drbg {
  constructor(label) {
    this.prefix = concat(ascii("keyflows-drbg-v1"), new Uint8Array([0]), u16be(utf8(label).length), utf8(label));
    this.block = 0;
    this.buffer = new Uint8Array(0);
  }
  take(n) {
    while (this.buffer.length < n) {
      this.buffer = concat(this.buffer, sha256(this.prefix, u64be(this.block++)));
    }
    const out = this.buffer.slice(0, n);
    this.buffer = this.buffer.slice(n);
    return out;
  }
}
