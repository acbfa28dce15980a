// Lock layering (LOCK-1..LOCK-29): Shamir over GF(2^8), unlock with shares, the server
// lock, versioned working keys, whole keystores, HPKE wrap, sign, computemac, verifymac;
// the capabilities of steps 9 and 11 are in lock-layering-capability.mjs, the encrypted
// data vault of step 12 in lock-layering-edv.mjs; and the trustbloc compatibility profile
// (LOCK-8).

import crypto from "node:crypto";
import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlDecode, b64urlEncode, b64urlExact, checkIdentifier,
  checkMembers, concat, ed25519Public, ed25519Sign, ed25519Verify, fromHex, hkdf, hmacSha256,
  isInteger, labelledContext, u32be, x25519PointProblem, x25519Public,
} from "../lib/core.mjs";
import { openBase, sealBase } from "../lib/hpke.mjs";
import { capabilityOperations, capabilityText, macChain } from "./lock-layering-capability.mjs";
import { edvOperations } from "./lock-layering-edv.mjs";

const ctx = labelledContext;
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
function split(secret, threshold, xs, coefficients, step, leadingNonZero = true) {
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
    if (leadingNonZero && c[c.length - 1] === 0) fail("a zero leading coefficient");
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

// Two HKDF outputs of the combined secret, each under its own label (LOCK-4, LOCK-6): the
// lock key seals working keys and nothing else; the lock check is stored.
const lockKeyInfo = (keystoreId) => ctx("lock-key", keystoreId);
const lockCheckInfo = (keystoreId) => ctx("lock-check", keystoreId);
const lockKeyOf = (secret, keystoreId) => hkdf(secret, null, lockKeyInfo(keystoreId), 32).okm;
const lockCheckOf = (secret, keystoreId) => hkdf(secret, null, lockCheckInfo(keystoreId), 32).okm;

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
  const check = lockCheckOf(secret, inp.keystore_id);
  const stored = fromHex(inp.lock_check);
  if (stored.length !== check.length || !crypto.timingSafeEqual(stored, check)) {
    throw new Reject("share", step, "the lock check does not match");
  }
  trace.inter("secret", secret);
  trace.inter("lock_check_info", lockCheckInfo(inp.keystore_id));
  trace.inter("lock_key_info", lockKeyInfo(inp.keystore_id));
  trace.out("lock_key", lockKeyOf(secret, inp.keystore_id));
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

// --- step 7: working keys, one sealed record per version (LOCK-7, LOCK-22) ----------------------

const KEY_TYPES = ["ed25519", "x25519", "aes256gcm", "hmac-sha256"];
const ASYMMETRIC = new Set(["ed25519", "x25519"]);
function publicKeyOf(type, material) {
  if (type === "ed25519") return ed25519Public(material);
  if (type === "x25519") return x25519Public(material);
  return EMPTY;
}
const workingAad = (keystoreId, keyId, version, type, publicKey) =>
  ctx("working-key", keystoreId, keyId, u32be(version), type, publicKey);

function versionRecord(type, version, publicKey, sealed) {
  const r = { version };
  if (ASYMMETRIC.has(type)) r.public_key = b64urlEncode(publicKey);
  r.sealed = b64urlEncode(sealed);
  return r;
}

async function workingKeySeal(inp, trace) {
  const material = fromHex(inp.material);
  const pub = trace.inter("public_key", publicKeyOf(inp.key_type, material));
  const aad = trace.inter("aad", workingAad(inp.keystore_id, inp.key_id, inp.version, inp.key_type, pub));
  const sealed = trace.out("sealed", sealBlob(fromHex(inp.lock_key), fromHex(inp.nonce), material, aad));
  trace.out("version_record", versionRecord(inp.key_type, inp.version, pub, sealed));
}

const isVersion = (v) => isInteger(v) && v >= 1 && v <= 32;

async function workingKeyOpen(inp, trace) {
  const step = "7";
  const r = inp.record;
  checkMembers(r, ["keystore_id", "key_id", "key_type", "versions"], [], step, "record");
  if (!KEY_TYPES.includes(r.key_type)) throw new Reject("decode", step, `key type ${r.key_type}`);
  checkIdentifier(r.keystore_id, step, "keystore_id");
  checkIdentifier(r.key_id, step, "key_id");
  if (!Array.isArray(r.versions) || r.versions.length < 1 || r.versions.length > 32) {
    throw new Reject("decode", step, "versions is a list of 1..32");
  }
  const asymmetric = ASYMMETRIC.has(r.key_type);
  const versions = r.versions.map((v) => {
    checkMembers(v, asymmetric ? ["version", "public_key", "sealed"] : ["version", "sealed"], [], step, "version");
    if (!isVersion(v.version)) throw new Reject("decode", step, "version is not 1..32");
    const pub = asymmetric ? b64urlExact(v.public_key, 32, step, "public_key") : EMPTY;
    const sealed = b64urlDecode(v.sealed, step, "sealed");
    if (sealed.length !== 60) throw new Reject("length", step, `sealed is ${sealed.length} bytes, not 60`);
    return { version: v.version, pub, sealed };
  });
  if (versions.some((v, i) => v.version !== i + 1)) throw new Reject("decode", step, "versions are not 1, 2, ... in order");
  const entry = versions.find((v) => v.version === inp.version);
  if (!entry) throw new Reject("params", step, `no version ${inp.version}`);
  const aad = workingAad(r.keystore_id, r.key_id, entry.version, r.key_type, entry.pub);
  trace.out("material", openBlob(fromHex(inp.lock_key), entry.sealed, aad, step));
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
    record.lock_check = b64urlEncode(trace.inter("lock_check", lockCheckOf(secret, ks)));
    const grantAad = trace.inter("grant_aad", serverLockAad(ks, "unlock-grant-key"));
    record.unlock_grant_key = b64urlEncode(sealBlob(master, fromHex(inp.grant_nonce), fromHex(inp.unlock_grant_key), grantAad));
  }
  const material = fromHex(inp.material);
  const pub = trace.inter("public_key", publicKeyOf(inp.key_type, material));
  const aad = trace.inter("working_aad", workingAad(ks, inp.key_id, 1, inp.key_type, pub));
  const sealed = sealBlob(lockKey, fromHex(inp.key_nonce), material, aad);
  trace.out("keystore_record", record);
  trace.out("working_key_record", { keystore_id: ks, key_id: inp.key_id, key_type: inp.key_type, versions: [versionRecord(inp.key_type, 1, pub, sealed)] });
  // The root capability: its one caveat, the expiry (LOCK-23).
  const caveats = [`exp=${inp.root_not_after}`];
  trace.out("capability", capabilityText(ks, caveats, macChain(rootKey, ks, caveats).at(-1)));
}

// --- step 10: HPKE wrap (LOCK-17) -----------------------------------------------------------------

const WRAP_INFO = ctx("lock-wrap");

async function wrap(inp, trace) {
  const step = "10";
  const r = fromHex(inp.recipient_public_key);
  const problem = x25519PointProblem(r);
  if (problem) throw new Reject("point", step, `recipient key: ${problem}`);
  const cek = fromHex(inp.cek);
  if (cek.length < 16 || cek.length > 64) throw new Reject("length", step, "cek outside 16..64 bytes");
  const sealed = sealBase(r, WRAP_INFO, EMPTY, cek, fromHex(inp.ikm_e));
  if (sealed.dh.every((b) => b === 0)) throw new Reject("point", step, "an all-zero DH output");
  trace.inter("ephemeral_private", sealed.ephemeralPrivate);
  trace.inter("enc", sealed.enc);
  trace.inter("dh", sealed.dh);
  trace.inter("shared_secret", sealed.sharedSecret);
  trace.inter("key", sealed.key);
  trace.inter("base_nonce", sealed.baseNonce);
  trace.inter("info", WRAP_INFO);
  trace.out("enc", sealed.enc);
  trace.out("wrapped_key", sealed.ciphertext);
}

async function unwrap(inp, trace) {
  const step = "10";
  const wrapped = fromHex(inp.wrapped_key);
  if (wrapped.length < 32 || wrapped.length > 80) throw new Reject("length", step, `a wrapped key of ${wrapped.length} bytes`);
  const enc = fromHex(inp.enc);
  const problem = x25519PointProblem(enc);
  if (problem) throw new Reject("point", step, `enc: ${problem}`);
  const opened = openBase(enc, fromHex(inp.recipient_private), WRAP_INFO, EMPTY, wrapped);
  if (!opened.dh || opened.dh.every((b) => b === 0)) throw new Reject("point", step, "an all-zero DH output");
  if (!opened.plaintext) throw new Reject("aead", step, "the wrapped key does not open");
  trace.out("cek", opened.plaintext);
}

// --- step 10: sign (LOCK-15, LOCK-20), computemac and verifymac (LOCK-21) -------------------

const SIGNED_PREFIX = concat(new TextEncoder().encode("keyflows-v1"), new Uint8Array([0]));

async function sign(inp, trace) {
  const message = fromHex(inp.message);
  const seed = fromHex(inp.seed);
  if (message.length >= SIGNED_PREFIX.length && SIGNED_PREFIX.every((b, i) => message[i] === b)) {
    throw new Reject("params", "10", "the message begins like a keyflows signed statement");
  }
  const pub = trace.inter("public_key", ed25519Public(seed));
  const signature = trace.out("signature", ed25519Sign(seed, message));
  trace.expect("the signature verifies", ed25519Verify(pub, message, signature));
}

async function computemac(inp, trace) {
  trace.out("mac", hmacSha256(fromHex(inp.key), fromHex(inp.message)));
}

async function verifymac(inp, trace) {
  const mac = fromHex(inp.mac);
  if (mac.length !== 32) throw new Reject("length", "10", `a mac of ${mac.length} bytes`);
  const want = hmacSha256(fromHex(inp.key), fromHex(inp.message));
  trace.out("valid", crypto.timingSafeEqual(want, mac));
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
      wrap: { run: wrap },
      unwrap: { run: unwrap },
      sign: { run: sign },
      computemac: { run: computemac },
      verifymac: { run: verifymac },
      ...capabilityOperations,
      ...edvOperations,
    },
  },
  "lock-layering.trustbloc": {
    header: { schema: "urn:keyflows:schema:vectors:lock-layering.trustbloc:1", flow: "lock-layering", profile: "trustbloc" },
    operations: {
      "trustbloc-split": {
        async run(inp, trace) {
          // The pinned Vault release drew the coefficients once: a zero leading one stays.
          trace.out("shares", split(fromHex(inp.secret), inp.threshold, inp.x_coordinates, inp.coefficients, "compat", false));
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
