// Hashchain entries (docs/flows/hashchain.rst; HC-1..HC-29) and the mute compatibility
// profile (HC-30..HC-34).

import crypto from "node:crypto";
import {
  Drbg, Reject, aesGcmOpen, aesGcmSeal, b64urlEncode, b64urlExact,
  checkMembers, concat, ed25519Public, ed25519Sign, ed25519Verify, equalBytes, fromHex,
  hkdf, isInteger, isObject, labelledContext, sha256, sha512, toHex, u32be, u64be, utf8,
  x25519PointProblem,
} from "../lib/core.mjs";

const ENTRY_LEN = 161;
const ZERO32 = new Uint8Array(32);
const ZERO12 = new Uint8Array(12);
const T_UID = 1, T_PUBLICATION = 2, T_SERVER_KEY = 3;
const DAY = 86400;

const ctx = labelledContext;
const byte = (n) => new Uint8Array([n]);
/** HKDF-SHA256(IKM, salt = empty, info = ctx(label, fields...), 32) (KD-7). */
const labelledHkdf = (ikm, label, ...fields) => hkdf(ikm, null, ctx(label, ...fields), 32).okm;

// --- step 2: record entries --------------------------------------------------------------

const hashId = (subject, type, nonce) => labelledHkdf(utf8(subject), "hashchain-hash-id", byte(type), nonce);
const idKey = (subject, type, nonce) => labelledHkdf(utf8(subject), "hashchain-id-key", byte(type), nonce);
const recordIndexOf = (recordHash) => sha256(ctx("hashchain-record-index", recordHash));
const sealedHashAad = (type, recordIndex) => ctx("hashchain-sealed-hash", byte(type), recordIndex);

function buildRecordEntry(type, subject, recordHash, nonce, prevHash, trace) {
  const hid = hashId(subject, type, nonce);
  const key = idKey(subject, type, nonce);
  const index = recordIndexOf(recordHash);
  const aad = sealedHashAad(type, index);
  const sealed = aesGcmSeal(key, ZERO12, recordHash, aad);
  if (trace) {
    trace.inter("hash_id", hid);
    trace.inter("id_key", key);
    trace.inter("record_index", index);
    trace.inter("sealed_hash_aad", aad);
    trace.inter("sealed_hash", sealed);
  }
  return concat(byte(type), nonce, hid, sealed, index, prevHash);
}

// --- step 4: keyserver-key entries -------------------------------------------------------

const serverKeyMessage = (origin, position, key, prevHash) =>
  ctx("hashchain-server-key", origin, u64be(position), key, prevHash);

function buildServerKeyEntry(origin, position, newSeed, signerSeed, nonce, prevHash, trace) {
  const key = ed25519Public(newSeed);
  const message = serverKeyMessage(origin, position, key, prevHash);
  const signature = ed25519Sign(signerSeed, message);
  if (trace) {
    trace.inter("new_key", key);
    trace.inter("message", message);
    trace.inter("signature", signature);
  }
  return concat(byte(T_SERVER_KEY), nonce, key, signature, new Uint8Array(16), prevHash);
}

// --- step 5: heads ------------------------------------------------------------------------

const headMessage = (origin, position, hash, timestamp) =>
  ctx("hashchain-head", origin, u64be(position), hash, u64be(timestamp));

function signHead(seed, origin, position, hash, timestamp) {
  return {
    origin, position, hash: b64urlEncode(hash), timestamp,
    signature: b64urlEncode(ed25519Sign(seed, headMessage(origin, position, hash, timestamp))),
  };
}

function decodeHead(head, step = "5") {
  checkMembers(head, ["origin", "position", "hash", "timestamp", "signature"], [], step, "head");
  if (typeof head.origin !== "string") throw new Reject("decode", step, "head origin is not a string");
  for (const k of ["position", "timestamp"]) {
    if (!isInteger(head[k]) || head[k] < 0) throw new Reject("decode", step, `head ${k} is not a non-negative integer`);
  }
  return {
    origin: head.origin, position: head.position, timestamp: head.timestamp,
    hash: b64urlExact(head.hash, 32, step, "head hash"),
    signature: b64urlExact(head.signature, 64, step, "head signature"),
  };
}

/** HC-8: a head of the expected origin whose signature verifies under `key`. */
function checkHeadSignature(h, origin, key) {
  if (h.origin !== origin) throw new Reject("binding", "5", `head of origin ${h.origin}, expected ${origin}`);
  if (!key || !ed25519Verify(key, headMessage(h.origin, h.position, h.hash, h.timestamp), h.signature)) {
    throw new Reject("signature", "5", "the head signature does not verify under the key in force");
  }
}

// --- step 6: the chain verifier (a state machine; keeps no per-entry state) -----------------

class ChainVerifier {
  constructor(origin, { pinnedKey = null, trusted = null } = {}) {
    this.origin = origin;
    this.pinnedKey = pinnedKey;
    if (trusted) {
      this.next = trusted.position + 1;
      this.prev = trusted.hash;
      this.keys = [[trusted.serverKeyPosition, trusted.serverKey]];
    } else {
      this.next = 0;
      this.prev = ZERO32;
      this.keys = [];
    }
  }
  /** HC-7: the key introduced by the last keyserver-key entry at or before `position`. */
  keyAt(position) {
    let key = null;
    for (const [p, k] of this.keys) if (p <= position) key = k;
    return key;
  }
  feed(entry) {
    // Step 1 (HC-1): layout.
    if (entry.length !== ENTRY_LEN) throw new Reject("length", "1", `entry ${this.next} is ${entry.length} bytes, not 161`);
    const type = entry[0];
    if (type !== T_UID && type !== T_PUBLICATION && type !== T_SERVER_KEY) {
      throw new Reject("decode", "1", `entry ${this.next} has unknown type ${type}`);
    }
    if (type === T_SERVER_KEY && entry.slice(113, 129).some((b) => b !== 0)) {
      throw new Reject("decode", "1", `entry ${this.next}: reserved bytes are not zero`);
    }
    // Step 3 (HC-5): the link.
    const prevHash = entry.slice(129, 161);
    if (!equalBytes(prevHash, this.prev)) throw new Reject("link", "3", `entry ${this.next}: prev_hash does not match`);
    // Step 4 (HC-6, HC-7): keyserver keys.
    if (this.next === 0 && type !== T_SERVER_KEY) {
      throw new Reject("decode", "4", "entry 0 is not a keyserver-key entry");
    }
    if (type === T_SERVER_KEY) {
      const key = entry.slice(17, 49);
      const signature = entry.slice(49, 113);
      let signer;
      if (this.next === 0) {
        if (this.pinnedKey && !equalBytes(key, this.pinnedKey)) {
          throw new Reject("binding", "4", "entry 0 introduces another key than the pinned one");
        }
        signer = key;
      } else {
        signer = this.keyAt(this.next - 1);
      }
      if (!signer || !ed25519Verify(signer, serverKeyMessage(this.origin, this.next, key, prevHash), signature)) {
        throw new Reject("signature", "4", `keyserver-key entry ${this.next} is not signed by the key in force`);
      }
      this.keys.push([this.next, key]);
    }
    const hash = sha256(entry);
    this.prev = hash;
    this.next += 1;
    return hash;
  }
  /** Step 5 (HC-8..HC-11) against the verified end of the chain. */
  checkHead(h, { now, maxAge, trustedPosition }) {
    if (h.origin !== this.origin) throw new Reject("binding", "5", `head of origin ${h.origin}`);
    if (trustedPosition !== null && h.position < trustedPosition) {
      throw new Reject("replay", "5", `head at ${h.position} behind the trusted head at ${trustedPosition}`);
    }
    checkHeadSignature(h, this.origin, this.keyAt(h.position));
    const last = this.next - 1;
    if (h.position !== last) throw new Reject("link", "5", `the chain ends at ${last}, the head is at ${h.position}`);
    if (!equalBytes(h.hash, this.prev)) throw new Reject("link", "5", "the head's hash differs from the verified chain: a fork");
    if (now - h.timestamp > maxAge) throw new Reject("expired", "5", `the head is ${now - h.timestamp} s old`);
    if (h.timestamp - now > 300) throw new Reject("expired", "5", `the head is dated ${h.timestamp - now} s in the future`);
  }
}

// --- UIDs (steps 7, 8) --------------------------------------------------------------------

/** HC-34: the identity mapping (shared with the mute profile). Throws on a refused
 * identity; returns the mapped form. Go semantics: strings.TrimSpace (Unicode White_Space)
 * and the simple lowercase mapping of strings.ToLower. */
const GO_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);
function goTrimSpace(s) {
  const cps = [...s];
  let a = 0, b = cps.length;
  while (a < b && GO_SPACE.has(cps[a].codePointAt(0))) a++;
  while (b > a && GO_SPACE.has(cps[b - 1].codePointAt(0))) b--;
  return cps.slice(a, b).join("");
}
function goToLower(s) {
  // Per code point simple case mapping: U+0130 is the one letter whose full lowercase
  // (JavaScript's) differs from its simple one ("i" + U+0307 vs "i").
  return [...s].map((c) => (c === "\u0130" ? "i" : c.toLowerCase())).join("");
}
export function mapIdentity(identity, step) {
  const fail = (why) => { throw new Reject("decode", step, `identity ${JSON.stringify(identity)}: ${why}`); };
  if (typeof identity !== "string") fail("not a string");
  if (utf8(identity).length > 254) fail("longer than 254 bytes");
  const parts = identity.split("@");
  if (parts.length !== 2) fail("not localpart@domain");
  let local = goToLower(goTrimSpace(parts[0]));
  const domain = goToLower(parts[1]);
  local = local.replace(/0/g, "o").replace(/1/g, "l").replace(/j/g, "i");
  const n = [...local].length;
  if (n < 3 || n > 64) fail("the local part is not 3..64 characters");
  if (!/^[a-z2-9.-]*$/.test(local)) fail("a character outside a-z 2-9 - .");
  if (/^[-.]|[-.]$/.test(local)) fail("the local part starts or ends with - or .");
  if (/--|-\.|\.-|\.\./.test(local)) fail("the local part contains --, -., .- or ..");
  return `${local}@${domain}`;
}

/** HC-14: an identity in mapped form, of a served domain. */
function checkIdentity(identity, domains) {
  const mapped = mapIdentity(identity, "7");
  if (mapped !== identity) throw new Reject("decode", "7", `identity ${JSON.stringify(identity)} is not in mapped form (${mapped})`);
  const domain = identity.split("@")[1];
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/.test(domain)) {
    throw new Reject("decode", "7", `domain ${domain} is not a lowercase DNS name`);
  }
  if (!domains.includes(domain)) throw new Reject("binding", "7", `domain ${domain} is not served`);
}

/** The UID wire format ("Wire formats"); decode and length failures at step 8. */
function decodeUid(uid, step = "8") {
  checkMembers(uid, ["identity", "msg_count", "not_before", "not_after", "sigkey", "sigescrow",
    "public_keys", "last_entry", "signatures"], ["previous"], step, "uid");
  if (typeof uid.identity !== "string") throw new Reject("decode", step, "identity is not a string");
  if (!isInteger(uid.msg_count) || uid.msg_count < 0 || uid.msg_count > 0xffffffff) throw new Reject("decode", step, "msg_count");
  for (const k of ["not_before", "not_after"]) {
    if (!isInteger(uid[k]) || uid[k] < 0) throw new Reject("decode", step, `${k} is not a non-negative integer`);
  }
  const sigkey = b64urlExact(uid.sigkey, 32, step, "sigkey");
  const sigescrow = b64urlExact(uid.sigescrow, 32, step, "sigescrow");
  checkMembers(uid.public_keys, ["x25519"], [], step, "public_keys");
  const x25519 = b64urlExact(uid.public_keys.x25519, 32, step, "public_keys.x25519");
  checkMembers(uid.last_entry, ["position", "hash"], [], step, "last_entry");
  if (!isInteger(uid.last_entry.position) || uid.last_entry.position < 0) throw new Reject("decode", step, "last_entry.position");
  const lastHash = b64urlExact(uid.last_entry.hash, 32, step, "last_entry.hash");
  const previous = "previous" in uid ? b64urlExact(uid.previous, 32, step, "previous") : null;
  checkMembers(uid.signatures, ["sigkey"], ["sigescrow", "previous"], step, "signatures");
  const sigs = { sigkey: b64urlExact(uid.signatures.sigkey, 64, step, "signatures.sigkey"), sigescrow: null, previous: null };
  if ("sigescrow" in uid.signatures) sigs.sigescrow = b64urlExact(uid.signatures.sigescrow, 64, step, "signatures.sigescrow");
  if ("previous" in uid.signatures) {
    const p = checkMembers(uid.signatures.previous, ["key", "signature"], [], step, "signatures.previous");
    if (p.key !== "sigkey" && p.key !== "sigescrow") throw new Reject("decode", step, `signatures.previous.key ${JSON.stringify(p.key)}`);
    sigs.previous = { key: p.key, signature: b64urlExact(p.signature, 64, step, "signatures.previous.signature") };
  }
  const u = { identity: uid.identity, msgCount: uid.msg_count, notBefore: uid.not_before, notAfter: uid.not_after,
    sigkey, sigescrow, x25519, lastPosition: uid.last_entry.position, lastHash, previous, sigs };
  u.content = ctx("hashchain-uid", u.identity, u32be(u.msgCount), u64be(u.notBefore), u64be(u.notAfter),
    sigkey, sigescrow, x25519, u64be(u.lastPosition), lastHash, previous ?? new Uint8Array(0));
  u.recordHash = sha256(ctx("hashchain-record-hash", byte(T_UID), u.content, sigs.sigkey,
    sigs.sigescrow ?? new Uint8Array(0), sigs.previous ? sigs.previous.key : "", sigs.previous ? sigs.previous.signature : new Uint8Array(0)));
  return u;
}

const uidSignatureMessage = (role, content) => ctx("hashchain-uid-signature", role, content);

/** HC-18: a non-empty validity of at most 366 days, containing `now`. */
function checkValidity(notBefore, notAfter, now, maxDays, step) {
  if (!(notAfter > notBefore) || notAfter - notBefore > maxDays * DAY) {
    throw new Reject("params", step, `validity ${notAfter - notBefore} s is empty or longer than ${maxDays} days`);
  }
  if (now < notBefore || now >= notAfter) throw new Reject("expired", step, `not valid at ${now}`);
}

function uidIntermediates(u, trace) {
  trace.inter("content", u.content);
  trace.inter("sigkey_message", uidSignatureMessage("sigkey", u.content));
  trace.inter("sigescrow_message", uidSignatureMessage("sigescrow", u.content));
  trace.inter("record_hash", u.recordHash);
  trace.inter("record_index", recordIndexOf(u.recordHash));
}

function checkUidCommon(u, inp) {
  checkIdentity(u.identity, inp.domains);
  checkValidity(u.notBefore, u.notAfter, inp.now, 366, "8");
  const problem = x25519PointProblem(u.x25519);
  if (problem) throw new Reject("point", "8", `X25519 key: ${problem}`);
}

function verifySig(key, role, content, signature, what) {
  if (!signature || !ed25519Verify(key, uidSignatureMessage(role, content), signature)) {
    throw new Reject("signature", "8", `${what} signature is missing or does not verify`);
  }
}

async function verifyUidCreate(inp, trace) {
  const u = decodeUid(inp.uid);
  if (inp.producer) {
    const p = inp.producer;
    trace.expect("producer: sigkey", equalBytes(ed25519Public(fromHex(p.sigkey_seed)), u.sigkey));
    trace.expect("producer: sigescrow", equalBytes(ed25519Public(fromHex(p.sigescrow_seed)), u.sigescrow));
    const xPub = crypto.createPublicKey(crypto.createPrivateKey({
      key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), Buffer.from(fromHex(p.x25519_private))]),
      format: "der", type: "pkcs8" })).export({ format: "jwk" }).x;
    trace.expect("producer: x25519", xPub === inp.uid.public_keys.x25519);
    trace.expect("producer: signatures.sigkey", equalBytes(ed25519Sign(fromHex(p.sigkey_seed), uidSignatureMessage("sigkey", u.content)), u.sigs.sigkey));
    if (u.sigs.sigescrow) {
      trace.expect("producer: signatures.sigescrow", equalBytes(ed25519Sign(fromHex(p.sigescrow_seed), uidSignatureMessage("sigescrow", u.content)), u.sigs.sigescrow));
    }
  }
  checkIdentity(u.identity, inp.domains);
  if (u.msgCount !== 0 || u.previous || u.sigs.previous) {
    throw new Reject("binding", "8", "a creation has msg_count 0 and no previous");
  }
  checkUidCommon(u, inp);
  if (equalBytes(u.sigkey, u.sigescrow)) throw new Reject("binding", "8", "SIGKEY and SIGESCROW are one key");
  verifySig(u.sigkey, "sigkey", u.content, u.sigs.sigkey, "the SIGKEY");
  verifySig(u.sigescrow, "sigescrow", u.content, u.sigs.sigescrow, "the SIGESCROW");
  uidIntermediates(u, trace);
  trace.out("record_hash", u.recordHash);
}

async function verifyUidUpdate(inp, trace) {
  const u = decodeUid(inp.uid);
  const prev = decodeUid(inp.previous);
  checkIdentity(u.identity, inp.domains);
  if (u.identity !== prev.identity) throw new Reject("binding", "8", "an update changes the identity");
  if (u.msgCount !== prev.msgCount + 1) throw new Reject("replay", "8", `msg_count ${u.msgCount} after ${prev.msgCount}`);
  if (!u.previous || !equalBytes(u.previous, prev.recordHash)) throw new Reject("link", "8", "previous is not the current UID's record hash");
  checkUidCommon(u, inp);
  if (equalBytes(u.sigkey, u.sigescrow)) throw new Reject("binding", "8", "SIGKEY and SIGESCROW are one key");
  verifySig(u.sigkey, "sigkey", u.content, u.sigs.sigkey, "the SIGKEY");
  const by = u.sigs.previous;
  if (!by) throw new Reject("signature", "8", "the update is not signed by the current UID");
  const escrowChanged = !equalBytes(u.sigescrow, prev.sigescrow);
  if (escrowChanged && by.key !== "sigescrow") {
    throw new Reject("authz", "8", "a new SIGESCROW authorised by another key than the current SIGESCROW");
  }
  verifySig(by.key === "sigkey" ? prev.sigkey : prev.sigescrow, `previous-${by.key}`, u.content, by.signature, `the previous ${by.key}`);
  if (escrowChanged) verifySig(u.sigescrow, "sigescrow", u.content, u.sigs.sigescrow, "the new SIGESCROW");
  uidIntermediates(u, trace);
  trace.inter("previous_message", uidSignatureMessage(`previous-${by.key}`, u.content));
  trace.out("record_hash", u.recordHash);
}

// --- step 9: replies and sealed UIDs --------------------------------------------------------

async function verifyUidReply(inp, trace) {
  const step = "9";
  const u = decodeUid(inp.uid);
  const r = checkMembers(inp.reply, ["position", "entry", "record_hash", "signature"], [], step, "reply");
  if (!isInteger(r.position) || r.position < 0) throw new Reject("decode", step, "reply position");
  const entry = b64urlExact(r.entry, ENTRY_LEN, step, "reply entry");
  const recordHash = b64urlExact(r.record_hash, 32, step, "reply record_hash");
  const signature = b64urlExact(r.signature, 64, step, "reply signature");
  // HC-21, in its order: the reply is for this UID, then the signature, then the entry.
  if (!equalBytes(recordHash, u.recordHash)) throw new Reject("binding", step, "the reply is for another UID");
  const message = trace.inter("message", ctx("hashchain-uid-reply", inp.origin, u64be(r.position), entry, recordHash));
  if (!ed25519Verify(fromHex(inp.server_key), message, signature)) {
    throw new Reject("signature", step, "the reply signature does not verify under the tracked key");
  }
  if (entry[0] !== T_UID) throw new Reject("binding", step, "the entry is not a UID entry");
  const nonce = entry.slice(1, 17);
  const hid = entry.slice(17, 49);
  const index = entry.slice(97, 129);
  if (!equalBytes(hid, hashId(u.identity, T_UID, nonce))) throw new Reject("binding", step, "the entry names another identity");
  if (!equalBytes(index, recordIndexOf(u.recordHash))) throw new Reject("binding", step, "the entry's record index is another UID's");
  const opened = aesGcmOpen(idKey(u.identity, T_UID, nonce), ZERO12, entry.slice(49, 97), sealedHashAad(T_UID, index));
  if (!opened || !equalBytes(opened, u.recordHash)) throw new Reject("binding", step, "the sealed hash is not the UID's record hash");
  trace.out("hash_id", hid);
  trace.out("record_index", index);
}

const uidSealKey = (recordHash) => labelledHkdf(recordHash, "hashchain-uid-seal-key");

/** Canonical UID JSON: members sorted, no whitespace. */
function canonicalJson(v) {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

async function openSealedUid(inp, trace) {
  const step = "9";
  const recordHash = fromHex(inp.record_hash);
  const key = trace.inter("key", uidSealKey(recordHash));
  const sealed = fromHex(inp.sealed_uid);
  const plaintext = aesGcmOpen(key, ZERO12, sealed, ctx("hashchain-uid-seal", recordIndexOf(recordHash)));
  if (!plaintext) throw new Reject("aead", step, "the sealed UID does not open");
  trace.inter("plaintext", plaintext);
  let uid;
  try {
    uid = JSON.parse(Buffer.from(plaintext).toString("utf8"));
  } catch {
    throw new Reject("decode", step, "the sealed UID is not JSON");
  }
  const u = decodeUid(uid, step);
  if (!equalBytes(u.recordHash, recordHash)) throw new Reject("binding", step, "the opened UID does not hash to the record hash");
  trace.expect("the plaintext is the canonical JSON of the UID", canonicalJson(uid) === Buffer.from(plaintext).toString("utf8"));
  trace.out("uid", uid);
}

// --- step 10: KeyInits and flushes ---------------------------------------------------------

async function verifyKeyinit(inp, trace) {
  const step = "10";
  const k = checkMembers(inp.keyinit, ["identity", "sigkey", "key_id", "not_before", "not_after", "x25519", "signature"], [], step, "keyinit");
  if (typeof k.identity !== "string") throw new Reject("decode", step, "identity");
  for (const f of ["not_before", "not_after"]) if (!isInteger(k[f]) || k[f] < 0) throw new Reject("decode", step, f);
  const sigkey = b64urlExact(k.sigkey, 32, step, "sigkey");
  const keyId = b64urlExact(k.key_id, 16, step, "key_id");
  const x25519 = b64urlExact(k.x25519, 32, step, "x25519");
  const signature = b64urlExact(k.signature, 64, step, "signature");
  if (k.identity !== inp.identity) throw new Reject("binding", step, `a KeyInit of ${k.identity}, expected ${inp.identity}`);
  if (!equalBytes(sigkey, fromHex(inp.current_sigkey))) throw new Reject("authz", step, "not the identity's current SIGKEY");
  if (!(k.not_after > k.not_before) || k.not_after - k.not_before > 90 * DAY) {
    throw new Reject("params", step, "the lifetime is empty or longer than 90 days");
  }
  const problem = x25519PointProblem(x25519);
  if (problem) throw new Reject("point", step, `one-time key: ${problem}`);
  const message = trace.inter("message", ctx("hashchain-keyinit", k.identity, sigkey, keyId,
    u64be(k.not_before), u64be(k.not_after), x25519));
  if (!ed25519Verify(sigkey, message, signature)) throw new Reject("signature", step, "the KeyInit signature does not verify");
  if (inp.now < k.not_before || inp.now >= k.not_after) throw new Reject("expired", step, `not valid at ${inp.now}`);
}

async function verifyFlush(inp, trace) {
  const step = "10";
  const r = checkMembers(inp.request, ["identity", "timestamp", "nonce", "signature"], [], step, "flush");
  if (typeof r.identity !== "string") throw new Reject("decode", step, "identity");
  if (!isInteger(r.timestamp) || r.timestamp < 0) throw new Reject("decode", step, "timestamp");
  const nonce = b64urlExact(r.nonce, 16, step, "nonce");
  const signature = b64urlExact(r.signature, 64, step, "signature");
  if (r.identity !== inp.identity) throw new Reject("binding", step, "a flush of another identity");
  const message = trace.inter("message", ctx("hashchain-keyinit-flush", inp.origin, r.identity, u64be(r.timestamp), nonce));
  if (!ed25519Verify(fromHex(inp.current_sigkey), message, signature)) {
    throw new Reject("signature", step, "the flush is not signed by the current SIGKEY");
  }
  if (Math.abs(inp.now - r.timestamp) > 300) throw new Reject("expired", step, "more than 300 s from the server's time");
  if (inp.nonce_seen) throw new Reject("replay", step, "the nonce was used before");
}

// --- chains ------------------------------------------------------------------------------------

/** What a producer makes from the `producer` section of a verify-chain case. */
function produceChain(origin, p) {
  const seeds = [[0, fromHex(p.server_seed)]];
  const entries = [buildServerKeyEntry(origin, 0, fromHex(p.server_seed), fromHex(p.server_seed), fromHex(p.nonce0), ZERO32)];
  let prev = sha256(entries[0]);
  const records = [...p.records];
  while (records.length || (p.rotation && entries.length === p.rotation.position)) {
    const position = entries.length;
    let e;
    if (p.rotation && position === p.rotation.position) {
      e = buildServerKeyEntry(origin, position, fromHex(p.rotation.new_seed), seeds.at(-1)[1], fromHex(p.rotation.nonce), prev);
      seeds.push([position, fromHex(p.rotation.new_seed)]);
    } else {
      const r = records.shift();
      e = buildRecordEntry(r.entry_type, r.subject, fromHex(r.record_hash), fromHex(r.nonce), prev, null);
    }
    entries.push(e);
    prev = sha256(e);
  }
  const last = entries.length - 1;
  const head = signHead(seeds.at(-1)[1], origin, last, prev, p.head_timestamp);
  return { entries, head };
}

async function verifyChain(inp, trace) {
  if (inp.producer) {
    const made = produceChain(inp.origin, inp.producer);
    trace.expect("producer: entries", canonicalJson(made.entries.map(toHex)) === canonicalJson(inp.entries));
    trace.expect("producer: head", canonicalJson(made.head) === canonicalJson(inp.head));
  }
  const trusted = inp.trusted && {
    position: inp.trusted.position, hash: fromHex(inp.trusted.hash),
    serverKey: fromHex(inp.trusted.server_key), serverKeyPosition: inp.trusted.server_key_position,
  };
  const v = new ChainVerifier(inp.origin, { pinnedKey: inp.pinned_key ? fromHex(inp.pinned_key) : null, trusted });
  const hashes = inp.entries.map((e) => v.feed(fromHex(e)));
  const head = decodeHead(inp.head);
  v.checkHead(head, { now: inp.now, maxAge: inp.max_age, trustedPosition: trusted ? trusted.position : null });
  trace.inter("entry_hashes", hashes);
  trace.out("position", head.position);
  trace.out("hash", head.hash);
  trace.out("server_key", v.keyAt(head.position));
}

async function detectFork(inp) {
  const a = decodeHead(inp.head_a);
  const b = decodeHead(inp.head_b);
  checkHeadSignature(a, inp.origin, fromHex(inp.key_a));
  checkHeadSignature(b, inp.origin, fromHex(inp.key_b));
  if (a.position === b.position && !equalBytes(a.hash, b.hash)) {
    throw new Reject("link", "5", "two signed heads for one position with different hashes: a fork");
  }
}

/** Step 7 (HC-13): test every entry of the type, open the matches. */
async function lookup(inp, trace) {
  const hashIds = [];
  const matches = [];
  inp.entries.forEach((hex, position) => {
    const e = fromHex(hex);
    if (e[0] !== inp.entry_type) { hashIds.push(null); return; }
    const nonce = e.slice(1, 17);
    const hid = hashId(inp.identity, inp.entry_type, nonce);
    hashIds.push(hid);
    if (!equalBytes(hid, e.slice(17, 49))) return;
    const index = e.slice(97, 129);
    const recordHash = aesGcmOpen(idKey(inp.identity, inp.entry_type, nonce), ZERO12, e.slice(49, 97), sealedHashAad(inp.entry_type, index));
    if (!recordHash) throw new Reject("aead", "7", `the sealed hash of entry ${position} does not open`);
    if (!equalBytes(recordIndexOf(recordHash), index)) throw new Reject("binding", "2", `entry ${position}: record_index mismatch`);
    matches.push({ position, record_index: index, record_hash: recordHash });
  });
  trace.inter("hash_ids", hashIds);
  trace.out("matches", matches);
}

async function accumulated(inp, trace) {
  const d = new Drbg(inp.label);
  const serverSeed = d.take(32);
  const nonce0 = d.take(16);
  const digest = crypto.createHash("sha256");
  let entry = buildServerKeyEntry(inp.origin, 0, serverSeed, serverSeed, nonce0, ZERO32);
  digest.update(entry);
  let prev = sha256(entry);
  for (let i = 1; i < inp.count; i++) {
    const type = i % 8 === 0 ? T_PUBLICATION : T_UID;
    const subject = `user${i}@example.org`;
    const recordHash = d.take(32);
    const nonce = d.take(16);
    entry = buildRecordEntry(type, subject, recordHash, nonce, prev, null);
    digest.update(entry);
    prev = sha256(entry);
  }
  trace.out("entries_digest", new Uint8Array(digest.digest()));
  trace.out("head", signHead(serverSeed, inp.origin, inp.count - 1, prev, inp.head_timestamp));
  trace.out("server_key", ed25519Public(serverSeed));
}

// --- mute (HC-30..HC-34) -------------------------------------------------------------------

const MUTE_LEN = 153;

/** HC-30: CKDF. */
function ckdf(nonce) {
  const a = sha512(nonce);
  const a1 = concat(a.slice(0, 32), a.slice(0, 32));
  const a2 = concat(a.slice(32), a.slice(32));
  const x = (b, c) => b.map((v) => v ^ c);
  const k1 = sha512(x(a1, 0x5c), sha512(x(a2, 0x36)));
  const k2 = sha512(x(a2, 0x5c), sha512(x(a1, 0x36)));
  return { a, k1, k2 };
}

function aesCbc(key, iv, data, decrypt) {
  const c = (decrypt ? crypto.createDecipheriv : crypto.createCipheriv)("aes-256-cbc", key, iv);
  c.setAutoPadding(false);
  return concat(c.update(data), c.final());
}

function muteBuild(identity, uidMessage, nonce, iv, previousHash, trace) {
  const { k1, k2 } = ckdf(nonce);
  const hid = sha256(k1, utf8(identity));
  const idk = sha256(k2, utf8(identity));
  const uidHash = sha256(utf8(uidMessage));
  const uidIndex = sha256(uidHash);
  const crUid = concat(iv, aesCbc(idk, iv, uidHash, false));
  const body = concat(byte(1), nonce, hid, crUid, uidIndex);
  const hash = sha256(body, previousHash);
  if (trace) {
    trace.inter("k1", k1); trace.inter("k2", k2); trace.inter("hash_id", hid); trace.inter("id_key", idk);
    trace.inter("uid_hash", uidHash); trace.inter("uid_index", uidIndex); trace.inter("cr_uid", crUid);
    trace.inter("body", body);
  }
  return concat(hash, body);
}

/** HC-33: exactly 204 characters of standard padded base64, decoding to 153 bytes. */
function muteDecode(text) {
  const step = "compat";
  if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Reject("decode", step, "not standard padded base64");
  }
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  if (Buffer.from(bytes).toString("base64") !== text) throw new Reject("decode", step, "non-canonical base64");
  if (bytes.length !== MUTE_LEN) throw new Reject("length", step, `${bytes.length} bytes, not 153`);
  if (bytes[32] !== 1) throw new Reject("decode", step, `TYPE ${bytes[32]} is not 0x01`);
  return {
    bytes, hash: bytes.slice(0, 32), type: bytes[32], nonce: bytes.slice(33, 41), hashId: bytes.slice(41, 73),
    crUid: bytes.slice(73, 121), uidIndex: bytes.slice(121, 153), body: bytes.slice(32),
  };
}

async function muteVerifyChain(inp, trace) {
  let prev = ZERO32;
  const hashes = [];
  for (const text of inp.texts) {
    const e = muteDecode(text);
    if (!equalBytes(sha256(e.body, prev), e.hash)) throw new Reject("link", "compat", `entry ${hashes.length}: HASH does not match`);
    prev = e.hash;
    hashes.push(e.hash);
  }
  trace.inter("hashes", hashes);
  trace.out("last_hash", prev);
}

async function muteLookup(inp, trace) {
  const matches = [];
  inp.texts.forEach((text, position) => {
    const e = muteDecode(text);
    const { k1, k2 } = ckdf(e.nonce);
    if (!equalBytes(sha256(k1, utf8(inp.mapped_identity)), e.hashId)) return;
    const uidHash = aesCbc(sha256(k2, utf8(inp.mapped_identity)), e.crUid.slice(0, 16), e.crUid.slice(16), true);
    trace.expect(`entry ${position}: UIDIndex = SHA-256(UIDHash)`, equalBytes(sha256(uidHash), e.uidIndex));
    matches.push({ position, uid_index: e.uidIndex, uid_hash: uidHash });
  });
  trace.out("matches", matches);
}

async function muteAccumulated(inp, trace) {
  const d = new Drbg(inp.label);
  const digest = crypto.createHash("sha256");
  let prev = ZERO32;
  for (let i = 0; i < inp.count; i++) {
    const identity = `user${i}@mute.berlin`;
    const uidMessage = `{"n":${i}}`;
    const nonce = d.take(8);
    const iv = d.take(16);
    const entry = muteBuild(identity, uidMessage, nonce, iv, prev, null);
    digest.update(entry);
    prev = entry.slice(0, 32);
  }
  trace.out("entries_digest", new Uint8Array(digest.digest()));
  trace.out("last_hash", prev);
}

export default {
  hashchain: {
    header: { schema: "urn:keyflows:schema:vectors:hashchain:1", flow: "hashchain", profile: "v1" },
    operations: {
      "build-record-entry": {
        async run(inp, trace) {
          const e = buildRecordEntry(inp.entry_type, inp.subject, fromHex(inp.record_hash), fromHex(inp.nonce), fromHex(inp.prev_hash), trace);
          trace.out("entry", e);
          trace.out("entry_hash", sha256(e));
        },
      },
      "build-server-key-entry": {
        async run(inp, trace) {
          const e = buildServerKeyEntry(inp.origin, inp.position, fromHex(inp.new_key_seed), fromHex(inp.signer_seed),
            fromHex(inp.nonce), fromHex(inp.prev_hash), trace);
          trace.out("entry", e);
          trace.out("entry_hash", sha256(e));
        },
      },
      "verify-chain": { run: verifyChain },
      "detect-fork": { run: detectFork },
      lookup: { run: lookup },
      "verify-uid-create": { run: verifyUidCreate },
      "verify-uid-update": { run: verifyUidUpdate },
      "verify-uid-reply": { run: verifyUidReply },
      "open-sealed-uid": { run: openSealedUid },
      "verify-keyinit": { run: verifyKeyinit },
      "verify-flush": { run: verifyFlush },
      "accumulated-chain": { run: accumulated },
    },
  },
  "hashchain.mute": {
    header: { schema: "urn:keyflows:schema:vectors:hashchain.mute:1", flow: "hashchain", profile: "mute" },
    operations: {
      ckdf: {
        async run(inp, trace) {
          const { a, k1, k2 } = ckdf(fromHex(inp.nonce));
          trace.inter("a", a);
          trace.out("k1", k1);
          trace.out("k2", k2);
        },
      },
      "build-entry": {
        async run(inp, trace) {
          const entry = muteBuild(inp.mapped_identity, inp.uid_message, fromHex(inp.nonce), fromHex(inp.iv), fromHex(inp.previous_hash), trace);
          trace.out("entry", entry);
          trace.out("text", Buffer.from(entry).toString("base64"));
          trace.out("hash", entry.slice(0, 32));
        },
      },
      "parse-entry": {
        async run(inp, trace) {
          const e = muteDecode(inp.text);
          trace.out("hash", e.hash);
          trace.out("type", e.type);
          trace.out("nonce", e.nonce);
          trace.out("hash_id", e.hashId);
          trace.out("cr_uid", e.crUid);
          trace.out("uid_index", e.uidIndex);
        },
      },
      "verify-chain": { run: muteVerifyChain },
      lookup: { run: muteLookup },
      "map-identity": {
        async run(inp, trace) {
          trace.out("mapped", mapIdentity(inp.identity, "compat"));
        },
      },
      "accumulated-chain": { run: muteAccumulated },
    },
  },
};
