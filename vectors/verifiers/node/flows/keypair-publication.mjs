// Keypair publication (docs/flows/keypair-publication.rst; KP-1..KP-22) and its
// fxakeys compatibility profile (KP-13).

import {
  Reject, b64urlEncode, b64urlExact, checkIdentifier, checkMembers, concat, ed25519Public,
  ed25519Sign, ed25519Strict, ed25519Verify, equalBytes, fromHex, hkdf, isInteger, isObject, labelledContext,
  aesGcmOpen, aesGcmSeal, secretboxOpen, secretboxSeal, toHex, u32be, utf8,
  x25519PointProblem, x25519Public,
} from "../lib/core.mjs";
import { applicationKey, checkPasswordInputs, passwordKey } from "./key-derivation.mjs";
import { xeddsaSign, xeddsaVerify } from "../lib/xeddsa.mjs";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { mlkemModulusOk } from "./envelope.mjs";

const RECORD_MEMBERS = ["user_id", "client_id", "key_version", "public_keys", "change",
  "binding_signature", "x25519_signature"];
const CHANGE_TYPES = ["initial", "rotation", "reset"];
const EPK_MEMBERS = ["aead", "kek", "nonce", "commitment", "ciphertext"];

// --- the byte strings of the chapter ("Byte strings built by the steps") -----------------

/** KP-3: the KEK's method, and for method password the KDF, salt and costs, are bound. */
const kekFields = (kek) => (kek.method === "password"
  ? [kek.method, "argon2id", kek.salt, u32be(kek.t), u32be(kek.m), u32be(kek.p)]
  : [kek.method]);
/** The public keys as they enter every signed context: the ML-KEM-768 key last, when the
 * record has one (null otherwise). */
const keyFields = (x, ed, m) => (m ? [x, ed, m] : [x, ed]);
const aadOf = (userId, clientId, keyVersion, kek, x, ed, m = null) =>
  labelledContext("keypair-record", userId, clientId, u32be(keyVersion), ...kekFields(kek),
    ...keyFields(x, ed, m));
/** KP-21: the AEAD key and the key commitment, both HKDF-SHA256 of the KEK over (nonce, AAD). */
const recordKeys = (kek, nonce, aad) => ({
  aeadKey: hkdf(kek, null, labelledContext("keypair-record-key", nonce, aad), 32).okm,
  commitment: hkdf(kek, null, labelledContext("keypair-record-commitment", nonce, aad), 32).okm,
});
const messageOf = (userId, clientId, keyVersion, x, ed, changeType, m = null) =>
  labelledContext("public-keys", userId, clientId, u32be(keyVersion), ...keyFields(x, ed, m), changeType);
const possessionOf = (userId, clientId, keyVersion, x, ed, changeType, m = null) =>
  labelledContext("x25519-possession", userId, clientId, u32be(keyVersion), ...keyFields(x, ed, m),
    changeType);
const rotationOf = (userId, clientId, prev, keyVersion, x, ed, m = null) =>
  labelledContext("keypair-rotation", userId, clientId, u32be(prev.keyVersion),
    ...keyFields(prev.x, prev.ed, prev.m ?? null), u32be(keyVersion), ...keyFields(x, ed, m));
const deletionOf = (userId, clientId, keyVersion, x, ed, m = null) =>
  labelledContext("keypair-deletion", userId, clientId, u32be(keyVersion), ...keyFields(x, ed, m));

/** The change member (step 11, KP-15). */
function decodeChange(change, step) {
  if (!isObject(change) || !("type" in change)) throw new Reject("decode", step, "change is not an object with a type");
  if (change.type === "rotation") {
    checkMembers(change, ["type", "signature"], [], step, "change");
    return { type: "rotation", signature: b64urlExact(change.signature, 64, step, "change.signature") };
  }
  if (change.type === "initial" || change.type === "reset") {
    checkMembers(change, ["type"], [], step, "change");
    return { type: change.type };
  }
  throw new Reject("decode", step, `change.type ${JSON.stringify(change.type)} is not one of ${CHANGE_TYPES}`);
}

// --- decoding a record or a public view (step 5: every party that receives one) ----------

/** The wire format of "The record" table; a malformed value is a decode failure, a
 * correctly encoded value of the wrong length a length failure (API-1), Argon2id costs
 * outside the consumer bounds a params failure (KD-5). */
function decodeRecord(rec, { publicView }) {
  const step = "5";
  const what = publicView ? "public view" : "record";
  checkMembers(rec, publicView ? RECORD_MEMBERS : [...RECORD_MEMBERS, "encrypted_private_keys"], [], step, what);
  const userId = checkIdentifier(rec.user_id, step, "user_id");
  const clientId = checkIdentifier(rec.client_id, step, "client_id");
  const kv = rec.key_version;
  if (!isInteger(kv) || kv < 1 || kv > 0xffffffff) {
    throw new Reject("decode", step, `key_version ${JSON.stringify(kv)} is not an integer 1..2^32-1`);
  }
  checkMembers(rec.public_keys, ["x25519", "ed25519"], ["mlkem768"], step, "public_keys");
  const x = b64urlExact(rec.public_keys.x25519, 32, step, "public_keys.x25519");
  const ed = b64urlExact(rec.public_keys.ed25519, 32, step, "public_keys.ed25519");
  // The optional ML-KEM-768 key of the hybrid suites (1184 bytes).
  const m = "mlkem768" in rec.public_keys
    ? b64urlExact(rec.public_keys.mlkem768, 1184, step, "public_keys.mlkem768") : null;
  const change = decodeChange(rec.change, step);
  const signature = b64urlExact(rec.binding_signature, 64, step, "binding_signature");
  const xSignature = b64urlExact(rec.x25519_signature, 64, step, "x25519_signature");
  const out = { userId, clientId, keyVersion: kv, x, ed, m, change, signature, xSignature };
  if (publicView) return out;

  const epk = checkMembers(rec.encrypted_private_keys, EPK_MEMBERS, [], step, "encrypted_private_keys");
  if (epk.aead !== "A256GCM") throw new Reject("decode", step, `aead ${JSON.stringify(epk.aead)} is not A256GCM`);
  if (!isObject(epk.kek)) throw new Reject("decode", step, "kek is not an object");
  let kek;
  if (epk.kek.method === "application-key") {
    checkMembers(epk.kek, ["method"], [], step, "kek");
    kek = { method: "application-key" };
  } else if (epk.kek.method === "password") {
    checkMembers(epk.kek, ["method", "kdf", "salt", "t", "m", "p"], [], step, "kek");
    if (epk.kek.kdf !== "argon2id") throw new Reject("decode", step, `kdf ${JSON.stringify(epk.kek.kdf)} is not argon2id`);
    const salt = b64urlExact(epk.kek.salt, 16, step, "kek.salt");
    const { t, m, p } = epk.kek;
    // KD-5: integers within the consumer bounds (else params), before Argon2id runs.
    checkPasswordInputs({ password: "-", salt, t, m, p }, step);
    kek = { method: "password", salt, t, m, p };
  } else {
    throw new Reject("decode", step, `kek method ${JSON.stringify(epk.kek.method)} unknown`);
  }
  out.kek = kek;
  out.nonce = b64urlExact(epk.nonce, 12, step, "nonce");
  out.commitment = b64urlExact(epk.commitment, 32, step, "commitment");
  // 80 bytes, 144 with the ML-KEM seed: the length the public keys imply (KP-3).
  out.ciphertext = b64urlExact(epk.ciphertext, m ? 144 : 80, step, "ciphertext");
  return out;
}

/** Step 5, in the order the chapter gives (step 5 a-d): the X25519 key (KP-5), then the
 * context the party expects, before any cryptography (KP-7 for user and application,
 * reported at step 6; KP-6 for the version), then the binding signature (KP-6) over the
 * record's context. Returns the signed message. */
function checkPublicKeys(r, expected, trace, { recordMessage = true } = {}) {
  const problem = x25519PointProblem(r.x);
  if (problem) throw new Reject("point", "5", `X25519 public key: ${problem}`);
  if (r.m && !mlkemModulusOk(r.m)) throw new Reject("point", "5", "the ML-KEM-768 key fails the modulus check");
  if (r.userId !== expected.userId || r.clientId !== expected.clientId) {
    throw new Reject("binding", "6", `record of ${r.userId}/${r.clientId}, expected ${expected.userId}/${expected.clientId}`);
  }
  if (expected.keyVersion !== null && expected.keyVersion !== r.keyVersion) {
    throw new Reject("binding", "5", `key_version ${r.keyVersion}, expected ${expected.keyVersion}`);
  }
  const message = messageOf(r.userId, r.clientId, r.keyVersion, r.x, r.ed, r.change.type, r.m);
  if (recordMessage) trace.inter("signed_message", message);
  const verdict = ed25519Strict(r.ed, message, r.signature);
  if (verdict !== "valid") {
    throw new Reject(verdict, "5", `the binding signature does not verify (strict Ed25519: ${verdict})`);
  }
  // Step 10 (KP-14): the X25519 key's own XEdDSA signature, after the binding signature.
  const possession = possessionOf(r.userId, r.clientId, r.keyVersion, r.x, r.ed, r.change.type, r.m);
  if (recordMessage) trace.inter("possession_message", possession);
  if (!xeddsaVerify(r.x, possession, r.xSignature)) {
    throw new Reject("signature", "5", "the x25519_signature does not verify");
  }
}

function validated(r, trace) {
  trace.out("key_version", r.keyVersion);
  trace.out("x25519_public", r.x);
  trace.out("ed25519_public", r.ed);
  if (r.m) trace.out("mlkem768_public", r.m);
}

// --- step 2: the key-encryption key ----------------------------------------------------

async function deriveKek(kek, secret, userId, clientId, trace, names) {
  if (secret.method === "kek") return fromHex(secret.kek); // a KEK the owner kept
  if (secret.method !== kek.method) {
    throw new Error(`the owner's secret is for method ${secret.method}, the record uses ${kek.method}`);
  }
  if (kek.method === "application-key") {
    return applicationKey(fromHex(secret.kb), clientId, trace, names);
  }
  checkPasswordInputs({ password: secret.password, salt: kek.salt, t: kek.t, m: kek.m, p: kek.p }, "2");
  return passwordKey({ password: secret.password, salt: kek.salt, t: kek.t, m: kek.m, p: kek.p },
    userId, clientId, trace, names);
}

// --- operations ----------------------------------------------------------------------------

async function seal(inp, trace) {
  const userId = checkIdentifier(inp.user_id, "1", "user_id");
  const clientId = checkIdentifier(inp.client_id, "1", "client_id");
  const kv = inp.key_version;
  // Step 1 (KP-1): the two key pairs.
  const xPriv = fromHex(inp.x25519_private);
  const edSeed = fromHex(inp.ed25519_seed);
  const x = trace.inter("x25519_public", x25519Public(xPriv));
  const ed = trace.inter("ed25519_public", ed25519Public(edSeed));
  // The optional ML-KEM-768 key: FIPS 203 KeyGen_internal(d, z) of the 64-byte seed.
  const mSeed = inp.mlkem_seed ? fromHex(inp.mlkem_seed) : null;
  const m = mSeed ? trace.inter("mlkem768_public", ml_kem768.keygen(mSeed).publicKey) : null;
  // Step 2 (KP-2): the KEK.
  let kek, wireKek, kekSpec;
  const names = { info: "kek_info", prk: null, stretched: "stretched" };
  if (inp.kek.method === "application-key") {
    trace.inter("stretched", null);
    kek = applicationKey(fromHex(inp.kek.kb), clientId, trace, names);
    wireKek = { method: "application-key" };
    kekSpec = wireKek;
  } else {
    const params = { password: inp.kek.password, salt: fromHex(inp.kek.salt), t: inp.kek.t, m: inp.kek.m, p: inp.kek.p };
    checkPasswordInputs(params, "2");
    kek = await passwordKey(params, userId, clientId, trace, names);
    wireKek = { method: "password", kdf: "argon2id", salt: b64urlEncode(params.salt), t: params.t, m: params.m, p: params.p };
    kekSpec = { method: "password", salt: params.salt, t: params.t, m: params.m, p: params.p };
  }
  trace.inter("kek", kek);
  // Step 3 (KP-3, KP-21): AES-256-GCM over x25519_private || ed25519_seed under the AEAD
  // key the KEK gives, beside the key commitment.
  const plaintext = trace.inter("plaintext", mSeed ? concat(xPriv, edSeed, mSeed) : concat(xPriv, edSeed));
  const aad = trace.inter("aad", aadOf(userId, clientId, kv, kekSpec, x, ed, m));
  const nonce = fromHex(inp.nonce);
  const keys = recordKeys(kek, nonce, aad);
  trace.inter("aead_key", keys.aeadKey);
  trace.inter("commitment", keys.commitment);
  const ciphertext = trace.inter("ciphertext", aesGcmSeal(keys.aeadKey, nonce, plaintext, aad));
  // Step 4 (KP-4): the binding signature.
  const changeType = inp.change_type;
  const message = trace.inter("signed_message", messageOf(userId, clientId, kv, x, ed, changeType, m));
  const signature = trace.inter("signature", ed25519Sign(edSeed, message));
  // Step 10 (KP-14): the XEdDSA signature by the X25519 key, with the case's Z.
  const possession = trace.inter("possession_message", possessionOf(userId, clientId, kv, x, ed, changeType, m));
  const xSignature = trace.inter("x25519_signature", xeddsaSign(xPriv, possession, fromHex(inp.z)));
  // Step 11 (KP-17): a rotation is signed by the previous Ed25519 key over both key sets.
  let change = { type: changeType };
  if (changeType === "rotation") {
    const prevSeed = fromHex(inp.previous_ed25519_seed);
    const prevM = inp.previous_mlkem_seed ? ml_kem768.keygen(fromHex(inp.previous_mlkem_seed)).publicKey : null;
    const prev = { keyVersion: kv - 1, x: x25519Public(fromHex(inp.previous_x25519_private)), ed: ed25519Public(prevSeed), m: prevM };
    const rotation = trace.inter("rotation_message", rotationOf(userId, clientId, prev, kv, x, ed, m));
    const rotationSignature = trace.inter("rotation_signature", ed25519Sign(prevSeed, rotation));
    change = { type: "rotation", signature: b64urlEncode(rotationSignature) };
  } else {
    trace.inter("rotation_message", null);
    trace.inter("rotation_signature", null);
  }
  const publicView = {
    user_id: userId,
    client_id: clientId,
    key_version: kv,
    public_keys: m ? { x25519: b64urlEncode(x), ed25519: b64urlEncode(ed), mlkem768: b64urlEncode(m) }
      : { x25519: b64urlEncode(x), ed25519: b64urlEncode(ed) },
    change,
    binding_signature: b64urlEncode(signature),
    x25519_signature: b64urlEncode(xSignature),
  };
  trace.out("record", {
    ...publicView,
    encrypted_private_keys: {
      aead: "A256GCM", kek: wireKek, nonce: b64urlEncode(nonce),
      commitment: b64urlEncode(keys.commitment), ciphertext: b64urlEncode(ciphertext),
    },
  });
  trace.out("public_view", publicView);
}

/** Steps 5-6 on the key server (PUT .../keypair): the expected user and application are
 * the path; the version is the record's own (KP-8 compares it with the stored one). */
async function validatePublication(inp, trace) {
  const r = decodeRecord(inp.record, { publicView: false });
  checkPublicKeys(r, { userId: inp.user_id, clientId: inp.client_id, keyVersion: null }, trace);
  validated(r, trace);
}

/** Steps 5 and 8 at a discoverer (GET .../public-keys). */
async function validatePublicView(inp, trace) {
  const r = decodeRecord(inp.public_view, { publicView: true });
  checkPublicKeys(r, { userId: inp.user_id, clientId: inp.client_id, keyVersion: null }, trace);
  validated(r, trace);
}

/** What the owner's KEK gives for a decoded record: the AEAD key, the commitment (KP-21)
 * and, as a demonstration only, what a bare AES-GCM open returns (null: the tag fails). */
function opening(r, kek, trace) {
  const aad = aadOf(r.userId, r.clientId, r.keyVersion, r.kek, r.x, r.ed, r.m);
  const keys = recordKeys(kek, r.nonce, aad);
  trace.inter("aead_key", keys.aeadKey);
  trace.inter("commitment", keys.commitment);
  trace.inter("gcm_plaintext", aesGcmOpen(keys.aeadKey, r.nonce, r.ciphertext, aad));
  return { aad, keys };
}

/** Step 9 (owner's client): verify the binding (step 5), derive the KEK (step 2), check
 * the key commitment (KP-21), decrypt, compare the private keys with the public keys (KP-11). */
async function open(inp, trace) {
  const r = decodeRecord(inp.record, { publicView: false });
  const expected = { userId: inp.user_id, clientId: inp.client_id, keyVersion: inp.key_version ?? null };
  checkPublicKeys(r, expected, trace, { recordMessage: false });
  const kek = trace.inter("kek", await deriveKek(r.kek, inp.secret, r.userId, r.clientId, null));
  const { aad, keys } = opening(r, kek, trace);
  if (!equalBytes(keys.commitment, r.commitment)) { // a verifier: no secret to protect
    throw new Reject("aead", "9", "the key commitment does not match the KEK");
  }
  const plaintext = aesGcmOpen(keys.aeadKey, r.nonce, r.ciphertext, aad);
  if (!plaintext) throw new Reject("aead", "9", "AES-256-GCM authentication failed");
  const xPriv = plaintext.slice(0, 32);
  const edSeed = plaintext.slice(32, 64);
  const mSeed = r.m ? plaintext.slice(64, 128) : null;
  if (!equalBytes(x25519Public(xPriv), r.x) || !equalBytes(ed25519Public(edSeed), r.ed)
      || (mSeed && !equalBytes(ml_kem768.keygen(mSeed).publicKey, r.m))) {
    throw new Reject("binding", "9", "the decrypted private keys do not produce the published public keys");
  }
  trace.out("x25519_private", xPriv);
  trace.out("ed25519_seed", edSeed);
  if (mSeed) trace.out("mlkem_seed", mSeed);
}

/** The KEK of an open case that was rejected before step 2: from the owner's secret and
 * the record's kek member, for the expected user and application. */
async function openLate(inp, trace) {
  const r = decodeRecord(inp.record, { publicView: false });
  const kek = trace.inter("kek", await deriveKek(r.kek, inp.secret, inp.user_id, inp.client_id, null));
  opening(r, kek, trace);
}

/** A trace that keeps raw values, for an operation run inside another. */
const scratch = () => ({
  intermediates: {}, outputs: {},
  inter(name, value) { this.intermediates[name] = value; return value; },
  out(name, value) { this.outputs[name] = value; return value; },
});

/** Step 12 (KP-22): after a kB rotation, open the record with the old kB (step 9) and seal
 * the same keys as the next version under the new kB, a rotation signed by those keys. */
async function rewrap(inp, trace) {
  const r = decodeRecord(inp.record, { publicView: false });
  if (r.kek.method !== "application-key") throw new Error("only application-key records depend on kB");
  const oldKek = trace.inter("old_kek", applicationKey(fromHex(inp.old_kb), inp.client_id, null));
  const opened = scratch();
  await open({ record: inp.record, user_id: inp.user_id, client_id: inp.client_id,
    key_version: null, secret: { method: "kek", kek: toHex(oldKek) } }, opened);
  const xPriv = toHex(opened.outputs.x25519_private);
  const edSeed = toHex(opened.outputs.ed25519_seed);
  const mSeed = opened.outputs.mlkem_seed ? toHex(opened.outputs.mlkem_seed) : undefined;
  const sealed = scratch();
  await seal({
    user_id: inp.user_id, client_id: inp.client_id, key_version: r.keyVersion + 1,
    x25519_private: xPriv, ed25519_seed: edSeed, mlkem_seed: mSeed,
    kek: { method: "application-key", kb: inp.new_kb },
    nonce: inp.nonce, z: inp.z, change_type: "rotation",
    previous_x25519_private: xPriv, previous_ed25519_seed: edSeed, previous_mlkem_seed: mSeed,
  }, sealed);
  trace.inter("new_kek", sealed.intermediates.kek);
  for (const k of ["aad", "aead_key", "commitment", "ciphertext", "rotation_message", "rotation_signature"]) {
    trace.inter(k, sealed.intermediates[k]);
  }
  trace.out("record", sealed.outputs.record);
}

/** Step 6 (KP-8): a strictly greater key_version than the stored (or last deleted) one. */
async function checkReplacement(inp) {
  if (inp.stored_version !== null && !(inp.new_version > inp.stored_version)) {
    throw new Reject("replay", "6", `key_version ${inp.new_version} is not greater than ${inp.stored_version}`);
  }
}

// --- step 11: continuity (KP-15 .. KP-20) -------------------------------------------------

const entryOf = (e) => ({ keyVersion: e.key_version, x: fromHex(e.x25519), ed: fromHex(e.ed25519) });

/** KP-17: the rotation's hand-over, signed by the key of the version before. */
function checkRotation(r, prev, trace) {
  if (r.change.type !== "rotation") throw new Reject("link", "11", `a ${r.change.type} is not a rotation`);
  if (prev.keyVersion + 1 !== r.keyVersion) throw new Reject("link", "11", `${r.keyVersion} does not follow ${prev.keyVersion}`);
  const message = rotationOf(r.userId, r.clientId, prev, r.keyVersion, r.x, r.ed);
  if (trace) trace.inter("rotation_message", message);
  if (!ed25519Verify(prev.ed, message, r.change.signature)) {
    throw new Reject("signature", "11", "the rotation is not signed by the replaced key");
  }
}

function verifiedView(view, userId, clientId) {
  const r = decodeRecord(view, { publicView: true });
  checkPublicKeys(r, { userId, clientId, keyVersion: null }, null, { recordMessage: false });
  return r;
}

/** The key directory's value bytes of a verified public view (hashchain HC-82): its
 * binding message, binding signature, possession signature and rotation signature. */
export function publicViewBytes(view, userId, clientId) {
  const r = verifiedView(view, userId, clientId);
  return concat(messageOf(r.userId, r.clientId, r.keyVersion, r.x, r.ed, r.change.type, r.m), r.signature,
    r.xSignature, r.change.signature ?? new Uint8Array(0));
}

/** Step 11 on the key server: the record against the stored state, in the chapter's order:
 * replay (KP-8), the next version (KP-16), the change type (KP-15, KP-18), the rotation's
 * signature (KP-17). */
async function checkChange(inp, trace) {
  const r = verifiedView(inp.record, inp.user_id, inp.client_id);
  const live = inp.state.live ? entryOf(inp.state.live) : null;
  const floor = Math.max(live ? live.keyVersion : 0, inp.state.deleted_version ?? 0);
  if (floor > 0 && r.keyVersion <= floor) throw new Reject("replay", "6", `key_version ${r.keyVersion} is not above ${floor}`);
  if (r.keyVersion !== floor + 1) throw new Reject("link", "11", `key_version ${r.keyVersion} is not ${floor + 1}`);
  const type = r.change.type;
  if (floor === 0) {
    if (type !== "initial") throw new Reject("link", "11", `a first record is initial, not ${type}`);
    return;
  }
  if (type === "initial") throw new Reject("link", "11", "a record with a history is not initial");
  if (!live) {
    if (type !== "reset") throw new Reject("link", "11", "after a deletion only a reset");
    return;
  }
  if (type === "rotation") checkRotation(r, live, trace);
}

/** Step 11 (KP-19): the deletion names the live version and is signed by its key. */
async function checkDeletion(inp, trace) {
  const live = entryOf(inp.live);
  const del = checkMembers(inp.deletion, ["key_version", "signature"], [], "11", "deletion");
  if (!isInteger(del.key_version) || del.key_version < 1 || del.key_version > 0xffffffff) {
    throw new Reject("decode", "11", "deletion.key_version is not an integer 1..2^32-1");
  }
  const signature = b64urlExact(del.signature, 64, "11", "deletion.signature");
  if (del.key_version !== live.keyVersion) throw new Reject("replay", "11", `the deletion names ${del.key_version}, live is ${live.keyVersion}`);
  const message = trace.inter("deletion_message", deletionOf(inp.user_id, inp.client_id, live.keyVersion, live.x, live.ed));
  if (!ed25519Verify(live.ed, message, signature)) throw new Reject("signature", "11", "the deletion is not signed by the live key");
}

/** Step 11 (KP-20): from a pinned version through each later public view; resets are
 * reported, never silently accepted. */
async function followHistory(inp, trace) {
  let prev = entryOf(inp.pinned);
  const resets = [];
  let latest = null;
  for (const view of inp.later) {
    const r = verifiedView(view, inp.user_id, inp.client_id);
    if (r.keyVersion !== prev.keyVersion + 1) throw new Reject("link", "11", `${r.keyVersion} does not follow ${prev.keyVersion}`);
    if (r.change.type === "rotation") checkRotation(r, prev, null);
    else if (r.change.type === "reset") resets.push(r.keyVersion);
    else throw new Reject("link", "11", "an initial record cannot follow another version");
    prev = { keyVersion: r.keyVersion, x: r.x, ed: r.ed };
    latest = r;
  }
  if (!latest) throw new Reject("link", "11", "no record follows the pinned version");
  trace.out("latest_version", latest.keyVersion);
  trace.out("resets", resets);
}

// --- fxakeys (KP-13) -----------------------------------------------------------------------

const FX_NONCE = 24;
const FX_BOX = 16 + 64;

/** encPrivKey = hex(nonce || SecretBox(kBr, nonce, hex(x25519_private))). */
async function fxSeal(inp, trace) {
  const kbr = fromHex(inp.kbr);
  const nonce = fromHex(inp.nonce);
  const xPriv = fromHex(inp.x25519_private);
  trace.inter("x25519_public", x25519Public(xPriv));
  const text = trace.inter("plaintext", toHex(xPriv));
  const box = trace.inter("box", secretboxSeal(kbr, nonce, utf8(text)));
  trace.out("enc_priv_key", toHex(concat(nonce, box)));
}

async function fxOpen(inp, trace) {
  const s = inp.enc_priv_key;
  // encPrivKey is lowercase hex text: anything else is a decode failure; the decoded
  // bytes must be nonce (24) || box (16 + 64).
  if (typeof s !== "string" || !/^[0-9a-f]*$/.test(s) || s.length % 2) {
    throw new Reject("decode", "compat", "encPrivKey is not lowercase hex of whole bytes");
  }
  const raw = fromHex(s);
  if (raw.length !== FX_NONCE + FX_BOX) throw new Reject("length", "compat", `encPrivKey is ${raw.length} bytes, not ${FX_NONCE + FX_BOX}`);
  const text = secretboxOpen(fromHex(inp.kbr), raw.slice(0, FX_NONCE), raw.slice(FX_NONCE));
  if (!text) throw new Reject("aead", "compat", "SecretBox authentication failed");
  const str = Buffer.from(text).toString("latin1");
  if (!/^[0-9a-f]{64}$/.test(str)) throw new Reject("decode", "compat", "the plaintext is not 64 lowercase hex characters");
  trace.out("x25519_private", fromHex(str));
}

export default {
  "keypair-publication": {
    header: {
      schema: "urn:keyflows:schema:vectors:keypair-publication:1",
      flow: "keypair-publication",
      profile: "v1",
    },
    operations: {
      seal: { run: seal },
      "validate-publication": { run: validatePublication },
      "validate-public-view": { run: validatePublicView },
      open: { run: open, late: openLate },
      "check-replacement": { run: checkReplacement },
      "check-change": { run: checkChange },
      "check-deletion": { run: checkDeletion },
      "follow-history": { run: followHistory },
      rewrap: { run: rewrap },
    },
  },
  "keypair-publication.fxakeys": {
    header: {
      schema: "urn:keyflows:schema:vectors:keypair-publication.fxakeys:1",
      flow: "keypair-publication",
      profile: "fxakeys",
    },
    operations: {
      "fxakeys-enc-priv-key": { run: fxSeal },
      "fxakeys-open-enc-priv-key": { run: fxOpen },
    },
  },
};
