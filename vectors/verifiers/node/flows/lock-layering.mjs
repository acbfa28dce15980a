// Lock layering (LOCK-1..LOCK-19): Shamir over GF(2^8), unlock with shares, the server
// lock, working keys, whole keystores, capabilities, ECDH-ES wrap; and the trustbloc
// compatibility profile (LOCK-8).

import crypto from "node:crypto";
import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlDecode, b64urlEncode, b64urlExact, checkIdentifier,
  checkMembers, concat, ed25519Public, fromHex, hkdf, hmacSha256, isInteger,
  labelledContext, x25519, x25519PointProblem, x25519Public,
} from "../lib/core.mjs";

const ctx = labelledContext;
const ZERO12 = new Uint8Array(12);
const EMPTY = new Uint8Array(0);

// --- GF(2^8) with the polynomial 0x11b (LOCK-2) ---------------------------------------------

function gfMul(a, b) {
  let p = 0;
  while (b) {
    if (b & 1) p ^= a;
    a <<= 1;
    if (a & 0x100) a ^= 0x11b;
    b >>= 1;
  }
  return p;
}
function gfInv(a) {
  // a^254 = a^-1 for a != 0.
  let r = 1, base = a, e = 254;
  while (e) {
    if (e & 1) r = gfMul(r, base);
    base = gfMul(base, base);
    e >>= 1;
  }
  return r;
}

/** Step 2 (LOCK-2): split. `coefficients[i]` holds the threshold - 1 coefficients of byte
 * i's polynomial, a_1 first; a_0 is the secret byte. Shares are y bytes || x. */
function split(secret, threshold, xs, coefficients, step) {
  const fail = (why) => { throw new Reject("params", step, why); };
  if (!isInteger(threshold) || threshold < 2) fail("threshold below 2");
  if (xs.length > 255) fail("more than 255 parts");
  if (threshold > xs.length) fail("threshold above parts");
  if (secret.length === 0) fail("an empty secret");
  const seen = new Set();
  for (const x of xs) {
    if (!isInteger(x) || x < 1 || x > 255) fail(`x-coordinate ${x} outside 1..255`);
    if (seen.has(x)) fail(`x-coordinate ${x} twice`);
    seen.add(x);
  }
  if (coefficients.length !== secret.length) fail("one polynomial per secret byte");
  const polys = coefficients.map((h) => fromHex(h));
  for (const c of polys) {
    if (c.length !== threshold - 1) fail("a polynomial of the wrong degree");
    if (c[c.length - 1] === 0) fail("a zero leading coefficient");
  }
  return xs.map((x) => {
    const ys = new Uint8Array(secret.length);
    for (let i = 0; i < secret.length; i++) {
      // Horner, highest degree first.
      let y = 0;
      const c = polys[i];
      for (let d = c.length - 1; d >= 0; d--) y = gfMul(y, x) ^ c[d];
      ys[i] = gfMul(y, x) ^ secret[i];
    }
    return concat(ys, new Uint8Array([x]));
  });
}

/** Step 3 (LOCK-3): combine by Lagrange interpolation at 0, in any order. */
function combine(shares, step) {
  const fail = (why) => { throw new Reject("share", step, why); };
  if (shares.length < 2) fail("fewer than two shares");
  const n = shares[0].length;
  if (shares.some((s) => s.length !== n)) fail("shares of unequal length");
  if (n < 2) fail("a share without y bytes");
  const xs = shares.map((s) => s[n - 1]);
  if (xs.includes(0)) fail("a share with x = 0");
  if (new Set(xs).size !== xs.length) fail("two shares with one x");
  const secret = new Uint8Array(n - 1);
  for (let j = 0; j < shares.length; j++) {
    // l_j(0) = prod_{m != j} x_m / (x_m - x_j); subtraction is XOR.
    let l = 1;
    for (let m = 0; m < shares.length; m++) {
      if (m !== j) l = gfMul(l, gfMul(xs[m], gfInv(xs[m] ^ xs[j])));
    }
    for (let i = 0; i < n - 1; i++) secret[i] ^= gfMul(shares[j][i], l);
  }
  return secret;
}

// --- steps 4, 6: the user lock of scenario "shares" -----------------------------------------

const lockKeyInfo = (keystoreId) => ctx("lock-key", keystoreId);
const lockCheckInput = (keystoreId) => ctx("lock-check", keystoreId);
const lockKeyOf = (secret, keystoreId) => hkdf(secret, null, lockKeyInfo(keystoreId), 32).okm;
const lockCheckOf = (lockKey, keystoreId) => hmacSha256(lockKey, lockCheckInput(keystoreId));

/** LOCK-10: a share is strict base64url of 33 bytes; every defect is a share failure. */
function decodeShare(text, step, what) {
  if (typeof text !== "string" || text.length === 0) throw new Reject("share", step, `${what} is absent`);
  let b;
  try {
    b = b64urlDecode(text, step, what);
  } catch (e) {
    if (e instanceof Reject) throw new Reject("share", step, e.message);
    throw e;
  }
  if (b.length !== 33) throw new Reject("share", step, `${what} is ${b.length} bytes, not 33`);
  return b;
}

async function unlock(inp, trace) {
  const step = "6";
  const account = decodeShare(inp.account_share, step, "the account share");
  const user = decodeShare(inp.user_share, step, "the user share");
  const secret = combine([account, user], step);
  if (secret.length !== 32) throw new Reject("share", step, "the combined secret is not 32 bytes");
  const info = lockKeyInfo(inp.keystore_id);
  const lockKey = lockKeyOf(secret, inp.keystore_id);
  const check = lockCheckOf(lockKey, inp.keystore_id);
  const stored = fromHex(inp.lock_check);
  if (stored.length !== check.length || !crypto.timingSafeEqual(stored, check)) {
    throw new Reject("share", step, "the lock check does not match");
  }
  trace.inter("secret", secret);
  trace.inter("lock_key_info", info);
  trace.inter("lock_check_input", lockCheckInput(inp.keystore_id));
  trace.out("lock_key", lockKey);
}

// --- step 5: the server lock (file backend) ---------------------------------------------------

const serverLockAad = (keystoreId, purpose) => ctx("server-lock", keystoreId, purpose);
const sealBlob = (key, nonce, plaintext, aad) => concat(nonce, aesGcmSeal(key, nonce, plaintext, aad));
function openBlob(key, blob, aad, step) {
  if (blob.length < 12 + 16) throw new Reject("length", step, `${blob.length} bytes: shorter than nonce and tag`);
  const pt = aesGcmOpen(key, blob.slice(0, 12), blob.slice(12), aad);
  if (!pt) throw new Reject("aead", step, "the blob does not open");
  return pt;
}

// --- step 7: working keys ---------------------------------------------------------------------

const KEY_TYPES = ["ed25519", "x25519", "aes256gcm"];
function publicKeyOf(type, material) {
  if (type === "ed25519") return ed25519Public(material);
  if (type === "x25519") return x25519Public(material);
  return EMPTY;
}
const workingAad = (keystoreId, keyId, type, publicKey) => ctx("working-key", keystoreId, keyId, type, publicKey);

function workingRecord(keystoreId, keyId, type, sealed, publicKey) {
  const r = { keystore_id: keystoreId, key_id: keyId, key_type: type, sealed: b64urlEncode(sealed) };
  if (publicKey.length) r.public_key = b64urlEncode(publicKey);
  return r;
}

async function workingKeySeal(inp, trace) {
  const material = fromHex(inp.material);
  const pub = trace.inter("public_key", publicKeyOf(inp.key_type, material));
  const aad = trace.inter("aad", workingAad(inp.keystore_id, inp.key_id, inp.key_type, pub));
  const sealed = trace.out("sealed", sealBlob(fromHex(inp.lock_key), fromHex(inp.nonce), material, aad));
  trace.out("record", workingRecord(inp.keystore_id, inp.key_id, inp.key_type, sealed, pub));
}

async function workingKeyOpen(inp, trace) {
  const step = "7";
  const r = inp.record;
  checkMembers(r, ["keystore_id", "key_id", "key_type", "sealed"], ["public_key"], step, "record");
  checkIdentifier(r.keystore_id, step, "keystore_id");
  checkIdentifier(r.key_id, step, "key_id");
  if (!KEY_TYPES.includes(r.key_type)) throw new Reject("decode", step, `key type ${r.key_type}`);
  const asymmetric = r.key_type !== "aes256gcm";
  if (asymmetric !== ("public_key" in r)) throw new Reject("decode", step, "public_key present iff the key is asymmetric");
  const pub = asymmetric ? b64urlExact(r.public_key, 32, step, "public_key") : EMPTY;
  const sealed = b64urlDecode(r.sealed, step, "sealed");
  if (sealed.length !== 12 + 32 + 16) throw new Reject("length", step, `sealed is ${sealed.length} bytes, not 60`);
  const material = openBlob(fromHex(inp.lock_key), sealed, workingAad(r.keystore_id, r.key_id, r.key_type, pub), step);
  trace.out("material", material);
}

// --- step 1: a whole keystore, every layer -----------------------------------------------------

async function layers(inp, trace) {
  const ks = inp.keystore_id;
  const master = fromHex(inp.master_key);
  const rootAad = trace.inter("root_aad", serverLockAad(ks, "capability-root-key"));
  const rootKey = fromHex(inp.capability_root_key);
  const sealedRoot = sealBlob(master, fromHex(inp.root_nonce), rootKey, rootAad);
  const record = { keystore_id: ks, controller: inp.controller, scenario: inp.scenario, capability_root_key: b64urlEncode(sealedRoot) };
  let lockKey;
  if (inp.scenario === "server-held") {
    lockKey = fromHex(inp.user_lock_key);
    const aad = trace.inter("user_lock_aad", serverLockAad(ks, "user-lock-key"));
    record.user_lock_key = b64urlEncode(sealBlob(master, fromHex(inp.lock_nonce), lockKey, aad));
  } else {
    const secret = trace.inter("secret", combine([decodeShare(inp.account_share, "6", "account share"), decodeShare(inp.user_share, "6", "user share")], "3"));
    lockKey = trace.inter("lock_key", lockKeyOf(secret, ks));
    const check = trace.inter("lock_check", lockCheckOf(lockKey, ks));
    record.lock_check = b64urlEncode(check);
  }
  const material = fromHex(inp.material);
  const pub = trace.inter("public_key", publicKeyOf(inp.key_type, material));
  const aad = trace.inter("working_aad", workingAad(ks, inp.key_id, inp.key_type, pub));
  const sealed = sealBlob(lockKey, fromHex(inp.key_nonce), material, aad);
  trace.out("keystore_record", record);
  trace.out("working_key_record", workingRecord(ks, inp.key_id, inp.key_type, sealed, pub));
  trace.out("capability", capabilityText(ks, [], macChain(rootKey, ks, []).at(-1)));
}

// --- step 9: capabilities (LOCK-11, LOCK-12) ----------------------------------------------------

function macChain(rootKey, keystoreId, caveats) {
  const chain = [hmacSha256(rootKey, ctx("capability", keystoreId))];
  for (const c of caveats) chain.push(hmacSha256(chain.at(-1), ctx("capability-caveat", c)));
  return chain;
}
const capabilityText = (keystoreId, caveats, mac) =>
  `kfc1.${Buffer.from(JSON.stringify({ keystore_id: keystoreId, caveats, mac: b64urlEncode(mac) }), "utf8").toString("base64url")}`;

async function capability(inp, trace) {
  const chain = trace.inter("chain", macChain(fromHex(inp.root_key), inp.keystore_id, inp.caveats));
  trace.out("capability", capabilityText(inp.keystore_id, inp.caveats, chain.at(-1)));
}

// "key=K allows only operations on key K (so no read, create-key or wrap)" (step 9).
const KEY_OPERATIONS = new Set(["delete-key", "export", "sign", "verify", "encrypt", "decrypt", "unwrap"]);

/** LOCK-12: every caveat must allow the request; an unknown caveat denies. */
function caveatAllows(caveat, { operation, keyId, now }, step) {
  const eq = caveat.indexOf("=");
  const name = eq < 0 ? caveat : caveat.slice(0, eq);
  const value = eq < 0 ? null : caveat.slice(eq + 1);
  if (name === "exp" && value !== null && /^[0-9]+$/.test(value)) {
    if (now >= Number(value)) throw new Reject("expired", step, `expired at ${value}`);
    return;
  }
  if (name === "ops" && value !== null) {
    if (!value.split(",").includes(operation)) throw new Reject("authz", step, `${operation} not in ${caveat}`);
    return;
  }
  if (name === "key" && value !== null) {
    if (!KEY_OPERATIONS.has(operation) || keyId !== value) throw new Reject("authz", step, `${operation} on ${keyId} under ${caveat}`);
    return;
  }
  throw new Reject("authz", step, `caveat ${JSON.stringify(caveat)} not understood`);
}

async function authorize(inp) {
  const step = "9";
  const text = inp.capability;
  if (typeof text !== "string" || !text.startsWith("kfc1.")) throw new Reject("decode", step, "no kfc1. prefix");
  const raw = b64urlDecode(text.slice(5), step, "capability");
  let obj;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch {
    throw new Reject("decode", step, "the capability is not JSON");
  }
  checkMembers(obj, ["keystore_id", "caveats", "mac"], [], step, "capability");
  if (typeof obj.keystore_id !== "string") throw new Reject("decode", step, "keystore_id");
  if (!Array.isArray(obj.caveats) || obj.caveats.some((c) => typeof c !== "string")) throw new Reject("decode", step, "caveats");
  const mac = b64urlExact(obj.mac, 32, step, "mac");
  // The addressed keystore first (binding), then the chain (mac), then the caveats.
  if (obj.keystore_id !== inp.keystore_id) throw new Reject("binding", step, "a capability of another keystore");
  const expected = macChain(fromHex(inp.root_key), inp.keystore_id, obj.caveats).at(-1);
  if (!crypto.timingSafeEqual(expected, mac)) throw new Reject("mac", step, "the capability does not verify");
  for (const c of obj.caveats) caveatAllows(c, { operation: inp.operation, keyId: inp.key_id, now: inp.now }, step);
}

// --- step 10: ECDH-ES wrap (LOCK-17) -------------------------------------------------------------

const wrapKek = (z, epk, r) => hkdf(z, null, ctx("lock-wrap", epk, r), 32).okm;

async function wrap(inp, trace) {
  const step = "10";
  const r = fromHex(inp.recipient_public_key);
  const problem = x25519PointProblem(r);
  if (problem) throw new Reject("point", step, `recipient key: ${problem}`);
  const cek = fromHex(inp.cek);
  if (cek.length < 16 || cek.length > 64) throw new Reject("params", step, "cek outside 16..64 bytes");
  const e = fromHex(inp.ephemeral_private);
  const epk = trace.inter("epk", x25519Public(e));
  const z = x25519(e, r);
  if (!z || z.every((b) => b === 0)) throw new Reject("point", step, "an all-zero shared secret");
  trace.inter("shared", z);
  const kek = trace.inter("kek", wrapKek(z, epk, r));
  trace.out("epk", epk);
  trace.out("wrapped_key", aesGcmSeal(kek, ZERO12, cek, EMPTY));
}

async function unwrap(inp, trace) {
  const step = "10";
  const epk = fromHex(inp.epk);
  const problem = x25519PointProblem(epk);
  if (problem) throw new Reject("point", step, `epk: ${problem}`);
  const priv = fromHex(inp.recipient_private);
  const z = x25519(priv, epk);
  if (!z || z.every((b) => b === 0)) throw new Reject("point", step, "an all-zero shared secret");
  const cek = aesGcmOpen(wrapKek(z, epk, x25519Public(priv)), ZERO12, fromHex(inp.wrapped_key), EMPTY);
  if (!cek) throw new Reject("aead", step, "the wrapped key does not open");
  trace.out("cek", cek);
}

// --- trustbloc (LOCK-8) ---------------------------------------------------------------------------

/** Go base64.URLEncoding: the base64url alphabet with '=' padding, strict. */
function goUrlDecode(text, step) {
  if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) {
    throw new Reject("decode", step, "not padded base64url");
  }
  const b = new Uint8Array(Buffer.from(text, "base64url"));
  if (goUrlEncode(b) !== text) throw new Reject("decode", step, "non-canonical padded base64url");
  return b;
}
const goUrlEncode = (b) => Buffer.from(b).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");

async function trustblocOpen(inp, trace) {
  const step = "compat";
  const blob = goUrlDecode(inp.text, step);
  const pt = openBlob(fromHex(inp.key), blob, EMPTY, step);
  if (inp.layer === "lock" && pt.length !== 32) throw new Reject("length", step, `the lock layer holds ${pt.length} bytes, not a key`);
  trace.out("plaintext", pt);
}

async function trustblocSeal(inp, trace) {
  const sealed = trace.inter("sealed", sealBlob(fromHex(inp.key), fromHex(inp.nonce), fromHex(inp.plaintext), EMPTY));
  trace.out("text", goUrlEncode(sealed));
}

export default {
  "lock-layering": {
    header: { schema: "urn:keyflows:schema:vectors:lock-layering:1", flow: "lock-layering", profile: "v1" },
    operations: {
      split: {
        async run(inp, trace) {
          trace.out("shares", split(fromHex(inp.secret), inp.threshold, inp.x_coordinates, inp.coefficients, "2"));
        },
      },
      combine: {
        async run(inp, trace) {
          trace.out("secret", combine(inp.shares.map(fromHex), "3"));
        },
      },
      unlock: { run: unlock },
      "server-lock-seal": {
        async run(inp, trace) {
          const aad = trace.inter("aad", serverLockAad(inp.keystore_id, inp.purpose));
          trace.out("sealed", sealBlob(fromHex(inp.master_key), fromHex(inp.nonce), fromHex(inp.plaintext), aad));
        },
      },
      "server-lock-open": {
        async run(inp, trace) {
          trace.out("plaintext", openBlob(fromHex(inp.master_key), fromHex(inp.sealed), serverLockAad(inp.keystore_id, inp.purpose), "5"));
        },
      },
      "working-key-seal": { run: workingKeySeal },
      "working-key-open": { run: workingKeyOpen },
      layers: { run: layers },
      capability: { run: capability },
      authorize: { run: authorize },
      wrap: { run: wrap },
      unwrap: { run: unwrap },
    },
  },
  "lock-layering.trustbloc": {
    header: { schema: "urn:keyflows:schema:vectors:lock-layering.trustbloc:1", flow: "lock-layering", profile: "trustbloc" },
    operations: {
      "trustbloc-split": {
        async run(inp, trace) {
          trace.out("shares", split(fromHex(inp.secret), inp.threshold, inp.x_coordinates, inp.coefficients, "compat"));
        },
      },
      "trustbloc-lock-key": {
        async run(inp, trace) {
          const secret = trace.inter("secret", combine(inp.shares.map(fromHex), "compat"));
          trace.out("lock_key", hkdf(secret, null, EMPTY, 32).okm);
        },
      },
      "trustbloc-seal": { run: trustblocSeal },
      "trustbloc-open": { run: trustblocOpen },
    },
  },
};
