// Envelope (ENV-1..ENV-28), written from docs/flows/envelope.rst: signed device lists,
// the two suites (HPKE Auth with DHKEM(X25519); HPKE PSK with MLKEM768-X25519 and a PSK
// from the static-static X25519), the committed content key, the STREAM payload, the
// server's ordered checks, the payload upload rule and the ACK.

import crypto from "node:crypto";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

import {
  Drbg, Reject, aesGcmOpen, aesGcmSeal, b64urlEncode, b64urlExact, checkIdentifier,
  checkMembers, concat, ed25519Strict, equalBytes, fromHex, hkdf, hkdfExpand,
  hkdfExtract, isInteger, labelledContext, sha256, u32be, u64be, x25519, x25519PointProblem,
  x25519Public,
} from "../lib/core.mjs";
import {
  AEAD_ID, KDF_ID, KEM_ID, authDecap, authEncap, hpkeSuiteId, keyScheduleMode,
} from "../lib/hpke.mjs";

const SUITES = ["x25519", "mlkem768x25519"];
const HYBRID_KEM_ID = 0x647a;
const ENC_LEN = { x25519: 32, mlkem768x25519: 1120 };
const MODE = { x25519: 0x02, mlkem768x25519: 0x01 };
const SUITE_ID = {
  x25519: hpkeSuiteId(KEM_ID, KDF_ID, AEAD_ID),
  mlkem768x25519: hpkeSuiteId(HYBRID_KEM_ID, KDF_ID, AEAD_ID),
};
const XWING_LABEL = fromHex("5c2e2f2f5e5c"); // "\.//^\"
const CHUNK = 65536, TAG = 16, CHUNK_CT = CHUNK + TAG;
const HEADER = ["suite", "message_id", "client_id", "sender", "sender_key_version", "payload_length", "commitment"];
const EMPTY = new Uint8Array(0);

// --- STREAM lengths (ENV-23) ---------------------------------------------------------------

const chunkCount = (n) => Math.max(1, Math.ceil(n / CHUNK));
const ciphertextLength = (n) => n + TAG * chunkCount(n);
/** The plaintext length of a STREAM payload, or null when no STREAM has this length. */
function plaintextLength(c) {
  if (c < TAG) return null;
  const full = Math.floor(c / CHUNK_CT), rest = c % CHUNK_CT;
  if (rest === 0) return full * CHUNK;
  if (rest < TAG || (rest === TAG && full > 0)) return null;
  return full * CHUNK + rest - TAG;
}
/** u88be(index) || last (ENV-23). */
function chunkNonce(index, last) {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(3, BigInt(index), false);
  n[11] = last ? 1 : 0;
  return n;
}
const chunkNonces = (plainLen) => Array.from({ length: chunkCount(plainLen) },
  (_, i) => chunkNonce(i, i === chunkCount(plainLen) - 1));

function streamSeal(key, plaintext) {
  const count = chunkCount(plaintext.length), parts = [];
  for (let i = 0; i < count; i++) {
    parts.push(aesGcmSeal(key, chunkNonce(i, i === count - 1), plaintext.subarray(i * CHUNK, (i + 1) * CHUNK), EMPTY));
  }
  return concat(...parts);
}

/** Steps 4, 10 (ENV-20, ENV-24): the payload against its declared length, then chunk by
 * chunk; a chunk is final exactly when it ends at the declared length. */
function streamOpen(key, declared, payload, step) {
  if (plaintextLength(declared) === null) throw new Reject("length", step, `${declared} is no STREAM length`);
  if (payload.length > declared) throw new Reject("length", step, "the payload runs past its declared length");
  const out = [];
  let offset = 0, index = 0;
  while (offset < declared) {
    const size = Math.min(CHUNK_CT, declared - offset);
    if (payload.length < offset + size) throw new Reject("length", step, "the payload ends before its declared length");
    const last = offset + size === declared;
    const plain = aesGcmOpen(key, chunkNonce(index, last), payload.subarray(offset, offset + size), EMPTY);
    if (!plain) throw new Reject("aead", step, `chunk ${index} does not authenticate${last ? " as the final one" : ""}`);
    out.push(plain);
    offset += size;
    index += 1;
  }
  return concat(...out);
}

// --- the content key (ENV-4, ENV-8) --------------------------------------------------------

function contentKeys(k, messageId) {
  const prk = hkdfExtract(messageId, k);
  return {
    prk,
    payloadKey: hkdfExpand(prk, labelledContext("envelope-payload-key"), 32),
    commitment: hkdfExpand(prk, labelledContext("envelope-commitment"), 32),
  };
}

// --- the entry's key schedule (ENV-5, ENV-6, ENV-25) ---------------------------------------

const entryInfo = (h) => labelledContext("envelope-entry", h.suite, h.messageId, h.clientId,
  h.sender, u32be(h.senderKeyVersion), u64be(h.payloadLength), h.commitment);
const entryAad = (userId, deviceId) => labelledContext("envelope-recipient", userId, deviceId);
const pskId = (h) => labelledContext("envelope-sender", h.clientId, h.sender, u32be(h.senderKeyVersion));
const senderPsk = (dh, senderPub, devicePub) =>
  hkdf(dh, null, labelledContext("envelope-sender-psk", senderPub, devicePub), 32).okm;
/** The X-Wing combiner of MLKEM768-X25519 (draft-ietf-hpke-pq). */
export const combine = (ssPq, ssT, ctT, ekT) =>
  new Uint8Array(crypto.createHash("sha3-256").update(concat(ssPq, ssT, ctT, ekT, XWING_LABEL)).digest());
const X25519_BASE = concat(new Uint8Array([9]), new Uint8Array(31));

function scheduleValues(ks) {
  return { psk_id_hash: ks.pskIdHash, info_hash: ks.infoHash, key_schedule_context: ks.keyScheduleContext,
    secret: ks.secret, key: ks.key, base_nonce: ks.baseNonce };
}

// --- decoding (ENV-9, API-1) ---------------------------------------------------------------

function counter(v, lo, hi, step, what) {
  if (!isInteger(v)) throw new Reject("decode", step, `${what} is not an integer`);
  if (v < lo || v > hi) throw new Reject("decode", step, `${what} is out of range`);
  return v;
}

function decodeHeader(obj, step, supported = SUITES) {
  if (typeof obj.suite !== "string") throw new Reject("decode", step, "suite is not a string");
  if (!supported.includes(obj.suite)) throw new Reject("params", step, `suite ${obj.suite} is not supported`);
  const h = {
    suite: obj.suite,
    messageId: b64urlExact(obj.message_id, 16, step, "message_id"),
    clientId: checkIdentifier(obj.client_id, step, "client_id"),
    sender: checkIdentifier(obj.sender, step, "sender"),
    senderKeyVersion: counter(obj.sender_key_version, 1, 2 ** 32 - 1, step, "sender_key_version"),
    payloadLength: counter(obj.payload_length, 0, Number.MAX_SAFE_INTEGER, step, "payload_length"),
  };
  if (plaintextLength(h.payloadLength) === null) throw new Reject("length", step, "payload_length is no STREAM length");
  h.commitment = b64urlExact(obj.commitment, 32, step, "commitment");
  return h;
}

function decodeEntry(obj, suite, step) {
  checkMembers(obj, ["user_id", "device_id", "enc", "wrapped_key"], [], step, "entry");
  const e = {
    userId: checkIdentifier(obj.user_id, step, "user_id"),
    deviceId: checkIdentifier(obj.device_id, step, "device_id"),
    enc: b64urlExact(obj.enc, ENC_LEN[suite], step, "enc"),
    wrapped: b64urlExact(obj.wrapped_key, 48, step, "wrapped_key"),
  };
  const problem = x25519PointProblem(e.enc.subarray(e.enc.length - 32)); // ENV-5
  if (problem) throw new Reject("point", step, `the X25519 part of enc: ${problem}`);
  return e;
}

function decodeDelivery(obj, step) {
  checkMembers(obj, [...HEADER, "recipient"], ["received_at", "expires_at"], step, "delivery");
  const h = decodeHeader(obj, step);
  return { h, e: decodeEntry(obj.recipient, h.suite, step) };
}

function checkEnvelope(obj, step, supported) {
  checkMembers(obj, [...HEADER, "recipients"], [], step, "envelope");
  const h = decodeHeader(obj, step, supported);
  if (!Array.isArray(obj.recipients)) throw new Reject("decode", step, "recipients is not a list");
  if (obj.recipients.length === 0) throw new Reject("params", step, "no recipient");
  const entries = obj.recipients.map((r) => decodeEntry(r, h.suite, step));
  const addresses = new Set(), encs = new Set();
  for (const e of entries) {
    const address = `${e.userId}/${e.deviceId}`, enc = Buffer.from(e.enc).toString("hex");
    if (addresses.has(address)) throw new Reject("decode", step, `${address} listed twice`);
    if (encs.has(enc)) throw new Reject("decode", step, "an enc is repeated");
    addresses.add(address);
    encs.add(enc);
  }
  return { h, entries };
}

/** FIPS 203 section 7.2 modulus check: every 12-bit coefficient of t-hat below q. */
export function mlkemModulusOk(ek) {
  for (let i = 0; i + 3 <= 1152; i += 3) {
    const a = ek[i] | ((ek[i + 1] & 0x0f) << 8), b = (ek[i + 1] >> 4) | (ek[i + 2] << 4);
    if (a >= 3329 || b >= 3329) return false;
  }
  return true;
}

// --- seal (steps 3-6) ----------------------------------------------------------------------

async function seal(inp, trace) {
  const suite = inp.suite;
  const sender = inp.sender;
  const skS = fromHex(sender.x25519_private), pkS = x25519Public(skS);
  const r = inp.randomness;
  const messageId = fromHex(r.message_id), k = fromHex(r.content_key);
  const message = fromHex(inp.message);
  const ck = contentKeys(k, messageId);
  trace.inter("prk", ck.prk);
  trace.inter("payload_key", ck.payloadKey);
  trace.inter("commitment", ck.commitment);
  const h = { suite, messageId, clientId: sender.client_id, sender: sender.user_id,
    senderKeyVersion: sender.key_version, payloadLength: ciphertextLength(message.length),
    commitment: ck.commitment };
  const info = trace.inter("info", entryInfo(h));
  const recipients = [], entries = [];
  inp.recipients.forEach((d, i) => {
    const pkX = fromHex(d.x25519), aad = entryAad(d.user_id, d.device_id);
    const v = { aad };
    let shared, psk = EMPTY, id = EMPTY;
    if (suite === "x25519") {
      const ae = authEncap(pkX, fromHex(r.recipients[i].ikm_e), skS);
      Object.assign(v, { static_dh: ae.dh.subarray(32), psk, psk_id: id, ephemeral_private: ae.ephemeralPrivate,
        enc: ae.enc, dh: ae.dh, kem_context: ae.kemContext, shared_secret: ae.sharedSecret });
      shared = ae.sharedSecret;
    } else {
      const m = fromHex(r.recipients[i].mlkem_m), eph = fromHex(r.recipients[i].ephemeral);
      const { cipherText, sharedSecret } = ml_kem768.encapsulate(fromHex(d.mlkem768), m);
      const ctT = x25519(eph, X25519_BASE), ssT = x25519(eph, pkX);
      shared = combine(sharedSecret, ssT, ctT, pkX);
      const staticDh = x25519(skS, pkX);
      psk = senderPsk(staticDh, pkS, pkX);
      id = pskId(h);
      Object.assign(v, { static_dh: staticDh, psk, psk_id: id, ephemeral_private: eph, ss_pq: sharedSecret,
        ct_pq: cipherText, ss_t: ssT, ct_t: ctT, enc: concat(cipherText, ctT), shared_secret: shared });
    }
    const ks = keyScheduleMode(MODE[suite], SUITE_ID[suite], shared, info, psk, id);
    Object.assign(v, scheduleValues(ks));
    v.wrapped_key = aesGcmSeal(ks.key, ks.baseNonce, k, aad);
    recipients.push(v);
    entries.push({ user_id: d.user_id, device_id: d.device_id, enc: b64urlEncode(v.enc), wrapped_key: b64urlEncode(v.wrapped_key) });
  });
  trace.inter("recipients", recipients);
  trace.inter("chunk_nonces", chunkNonces(message.length));
  trace.out("envelope", { suite, message_id: b64urlEncode(messageId), client_id: h.clientId, sender: h.sender,
    sender_key_version: h.senderKeyVersion, payload_length: h.payloadLength, commitment: b64urlEncode(ck.commitment),
    recipients: entries });
  trace.out("payload", streamSeal(ck.payloadKey, message));
}

// --- open (step 10) ------------------------------------------------------------------------

async function open(inp, trace) {
  const step = "10";
  const { h, e } = decodeDelivery(inp.delivery, step);
  if (inp.acknowledged.some((id) => equalBytes(fromHex(id), h.messageId))) {
    throw new Reject("replay", step, "this message id was acknowledged before"); // ENV-18
  }
  if (e.userId !== inp.user_id || e.deviceId !== inp.device_id) {
    throw new Reject("binding", step, "the entry is addressed to another device"); // ENV-13
  }
  const sk = inp.sender_key;
  if (sk.user_id !== h.sender || sk.client_id !== h.clientId || sk.key_version !== h.senderKeyVersion) {
    throw new Reject("binding", step, "the resolved sender key is not the one the header names"); // ENV-28
  }
  const pkS = fromHex(sk.x25519);
  const skR = fromHex(inp.device_private.x25519);
  const info = trace.inter("info", entryInfo(h));
  const aad = trace.inter("aad", entryAad(inp.user_id, inp.device_id));
  let shared, psk = EMPTY, id = EMPTY, staticDh;
  if (h.suite === "x25519") {
    const problem = x25519PointProblem(pkS);
    if (problem) throw new Reject("point", step, `the sender key: ${problem}`);
    const ad = authDecap(e.enc, skR, pkS);
    if (!ad) throw new Reject("point", step, "an all-zero DH");
    staticDh = ad.dh.subarray(32);
    shared = ad.sharedSecret;
  } else {
    const problem = x25519PointProblem(pkS);
    if (problem) throw new Reject("point", step, `the sender key: ${problem}`);
    staticDh = x25519(skR, pkS);
    psk = senderPsk(staticDh, pkS, x25519Public(skR));
    id = pskId(h);
    const { secretKey } = ml_kem768.keygen(fromHex(inp.device_private.mlkem_seed));
    const ctPq = e.enc.subarray(0, 1088), ctT = e.enc.subarray(1088);
    const ssPq = ml_kem768.decapsulate(ctPq, secretKey);
    const ssT = x25519(skR, ctT);
    if (!ssT) throw new Reject("point", step, "an all-zero DH with ct_T");
    shared = combine(ssPq, ssT, ctT, x25519Public(skR));
  }
  trace.inter("static_dh", staticDh);
  trace.inter("psk", psk);
  trace.inter("psk_id", id);
  trace.inter("shared_secret", shared);
  const ks = keyScheduleMode(MODE[h.suite], SUITE_ID[h.suite], shared, info, psk, id);
  for (const [name, value] of Object.entries(scheduleValues(ks))) trace.inter(name, value);
  const k = aesGcmOpen(ks.key, ks.baseNonce, e.wrapped, aad);
  if (!k) throw new Reject("aead", step, "the wrapped key does not open"); // ENV-7
  trace.inter("content_key", k);
  const ck = contentKeys(k, h.messageId);
  trace.inter("prk", ck.prk);
  trace.inter("payload_key", ck.payloadKey);
  trace.inter("commitment", ck.commitment);
  if (!crypto.timingSafeEqual(ck.commitment, h.commitment)) {
    throw new Reject("mac", step, "the content key does not match the commitment"); // ENV-8
  }
  trace.out("plaintext", streamOpen(ck.payloadKey, h.payloadLength, fromHex(inp.payload), step));
}

// --- stream (steps 4, 10) ------------------------------------------------------------------

function buildPayload(inp) {
  const plaintext = new Drbg(inp.plaintext_drbg).take(inp.plaintext_length);
  const keys = { payload: fromHex(inp.payload_key), other: fromHex(inp.other_payload_key) };
  return concat(...inp.chunks.map((r) => ("bytes" in r ? fromHex(r.bytes)
    : aesGcmSeal(keys[r.key], chunkNonce(r.index, r.last), plaintext.subarray(r.offset, r.offset + r.length), EMPTY))));
}

async function stream(inp, trace) {
  const payload = buildPayload(inp);
  const plaintext = streamOpen(fromHex(inp.payload_key), inp.payload_length, payload, "10");
  trace.inter("chunk_nonces", chunkNonces(plaintext.length));
  trace.out("payload_sha256", sha256(payload));
  trace.out("plaintext_sha256", sha256(plaintext));
  if (payload.length <= 64) trace.out("payload", payload);
}

// --- the server (steps 8, 11) --------------------------------------------------------------

async function acceptEnvelope(inp, trace) {
  const step = "8";
  const limits = inp.limits;
  const { h, entries } = checkEnvelope(inp.envelope, step, limits.suites);
  if (entries.length > limits.max_recipients) throw new Reject("params", step, "more recipients than max_recipients");
  if (h.payloadLength > limits.max_payload_bytes) throw new Reject("params", step, "payload_length above max_payload_bytes");
  if (h.sender !== inp.authenticated_user) throw new Reject("binding", step, "the sender is not the authenticated user");
  if (h.clientId !== inp.client_id) throw new Reject("binding", step, "another application");
  const dir = inp.directory;
  const published = dir.published_key_versions.find(([u, c]) => u === h.sender && c === h.clientId);
  if (!published || published[2] !== h.senderKeyVersion) throw new Reject("binding", step, "not the sender's current key");
  for (const e of entries) {
    if (!dir.devices.some(([u, c, d]) => u === e.userId && c === h.clientId && d === e.deviceId)) {
      throw new Reject("binding", step, `${e.userId}/${e.deviceId} is not on its owner's list`);
    }
  }
  if (dir.used_message_ids.some((id) => equalBytes(fromHex(id), h.messageId))) {
    throw new Reject("replay", step, "the message id was used");
  }
  const header = Object.fromEntries(HEADER.map((k) => [k, inp.envelope[k]]));
  trace.out("deliveries", inp.envelope.recipients.map((recipient) => ({ ...header, recipient })));
}

async function uploadPayload(inp, trace) {
  if (inp.received !== inp.payload_length) {
    throw new Reject("length", "8", `${inp.received} bytes, the envelope declared ${inp.payload_length}`); // ENV-26
  }
  trace.out("accepted", true);
}

async function acknowledge(inp, trace) {
  const first = !inp.already_acknowledged;
  trace.out("changed", first);
  trace.out("delete_payload", first ? inp.unacknowledged_devices <= 1 : inp.unacknowledged_devices === 0);
}

// --- device lists (steps 1, 2) -------------------------------------------------------------

function decodeList(obj, step) {
  checkMembers(obj, ["user_id", "client_id", "key_version", "version", "devices", "signature"], [], step, "device list");
  const l = {
    userId: checkIdentifier(obj.user_id, step, "user_id"),
    clientId: checkIdentifier(obj.client_id, step, "client_id"),
    keyVersion: counter(obj.key_version, 1, 2 ** 32 - 1, step, "key_version"),
    version: counter(obj.version, 1, Number.MAX_SAFE_INTEGER, step, "version"),
  };
  if (!Array.isArray(obj.devices)) throw new Reject("decode", step, "devices is not a list");
  l.devices = obj.devices.map((d) => {
    checkMembers(d, ["device_id", "x25519", "mlkem768"], [], step, "device");
    const dev = { deviceId: checkIdentifier(d.device_id, step, "device_id"),
      x25519: b64urlExact(d.x25519, 32, step, "x25519"), mlkem768: b64urlExact(d.mlkem768, 1184, step, "mlkem768") };
    const problem = x25519PointProblem(dev.x25519);
    if (problem) throw new Reject("point", step, `x25519: ${problem}`); // ENV-2
    if (!mlkemModulusOk(dev.mlkem768)) throw new Reject("point", step, "mlkem768 fails the modulus check");
    return dev;
  });
  for (let i = 1; i < l.devices.length; i++) {
    if (!(l.devices[i - 1].deviceId < l.devices[i].deviceId)) throw new Reject("decode", step, "devices out of order"); // ENV-1
  }
  l.signature = b64urlExact(obj.signature, 64, step, "signature");
  return l;
}

function tbs(l) {
  const fields = [l.userId, l.clientId, u32be(l.keyVersion), u64be(l.version), u32be(l.devices.length)];
  for (const d of l.devices) fields.push(d.deviceId, d.x25519, d.mlkem768);
  return labelledContext("envelope-device-list", ...fields);
}

function checkSignature(l, owner, step) {
  if (l.userId !== owner.user_id || l.clientId !== owner.client_id) throw new Reject("binding", step, "another user's list");
  if (l.keyVersion !== owner.key_version) throw new Reject("binding", step, "signed by another key_version"); // ENV-21
  const verdict = ed25519Strict(fromHex(owner.ed25519), tbs(l), l.signature);
  if (verdict !== "valid") throw new Reject(verdict === "point" ? "point" : "signature", step, "the signature does not verify");
}

const devicePlain = (userId, d) => ({ user_id: userId, device_id: d.deviceId, x25519: d.x25519, mlkem768: d.mlkem768 });

async function verifyDeviceList(inp, trace) {
  const step = "2";
  const l = decodeList(inp.device_list, step);
  checkSignature(l, inp.owner, step);
  if (l.version < inp.seen_version) throw new Reject("replay", step, "older than a version already seen"); // ENV-22
  const message = trace.inter("tbs", tbs(l));
  trace.out("devices", l.devices.map((d) => devicePlain(l.userId, d)));
  trace.out("signed_bytes", concat(message, l.signature));
}

async function updateDeviceList(inp, trace) {
  const step = "1";
  const l = decodeList(inp.proposed, step);
  if (l.devices.length > inp.max_devices) throw new Reject("params", step, "more devices than allowed");
  if (inp.owner === null) throw new Reject("binding", step, "no published keypair"); // ENV-21
  checkSignature(l, inp.owner, step);
  const current = inp.current === null ? null : decodeList(inp.current, step);
  const same = current !== null && JSON.stringify(inp.current) === JSON.stringify(inp.proposed);
  if (same) {
    trace.out("outcome", "unchanged");
    trace.out("added", []);
    trace.out("removed", []);
    return;
  }
  const stored = current === null ? 0 : current.version;
  if (l.version <= stored) throw new Reject("replay", step, "not above the stored version");
  if (l.version !== stored + 1) throw new Reject("link", step, "a version gap");
  const before = new Map((current?.devices ?? []).map((d) => [d.deviceId, d]));
  for (const d of l.devices) {
    const kept = before.get(d.deviceId);
    if (kept && !(equalBytes(kept.x25519, d.x25519) && equalBytes(kept.mlkem768, d.mlkem768))) {
      throw new Reject("binding", step, `${d.deviceId} changes its keys`);
    }
  }
  const after = new Set(l.devices.map((d) => d.deviceId));
  trace.out("outcome", current === null ? "created" : "updated");
  trace.out("added", [...after].filter((d) => !before.has(d)).sort());
  trace.out("removed", [...before.keys()].filter((d) => !after.has(d)).sort());
}

export default {
  envelope: {
    header: { schema: "urn:keyflows:schema:vectors:envelope:1", flow: "envelope", profile: "v1" },
    operations: {
      seal: { run: seal },
      open: { run: open },
      stream: { run: stream },
      "accept-envelope": { run: acceptEnvelope },
      "upload-payload": { run: uploadPayload },
      acknowledge: { run: acknowledge },
      "verify-device-list": { run: verifyDeviceList },
      "update-device-list": { run: updateDeviceList },
    },
  },
};

