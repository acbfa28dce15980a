// Multi-recipient envelope (ENV-1..ENV-18): seal, the server's checks and fan-out, the
// recipient's open, and the MAC-key disclosure (ACK).

import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlDecode, b64urlEncode, b64urlExact, checkIdentifier,
  checkMembers, equalBytes, fromHex, hkdfExpand, hkdfExtract, hmacSha256,
  labelledContext, sha256, toHex, x25519, x25519PointProblem, x25519Public,
} from "../lib/core.mjs";
import crypto from "node:crypto";

const ZERO12 = new Uint8Array(12);
const ENTRY_MEMBERS = ["user_id", "device_id", "ephemeral_key", "wrapped_key", "mac"];

// --- the byte strings of steps 3-7 -------------------------------------------------------

const payloadAad = (messageId, sender) => labelledContext("envelope-payload", messageId, sender);
const wrapAad = (messageId, sender, userId, deviceId, eph) =>
  labelledContext("envelope-wrap", messageId, sender, userId, deviceId, eph);
const macInput = (messageId, sender, userId, deviceId, eph, wrapped, nonce, digest) =>
  labelledContext("envelope-mac", messageId, sender, userId, deviceId, eph, wrapped, nonce, digest);

/** ENV-6: k_enc and k_mac from the shared secret. */
function recipientKeys(shared, messageId, eph, devicePublic) {
  const prk = hkdfExtract(null, shared);
  const encInfo = labelledContext("envelope-encryption-key", messageId, eph, devicePublic);
  const macInfo = labelledContext("envelope-mac-key", messageId, eph, devicePublic);
  return { prk, encInfo, macInfo, kEnc: hkdfExpand(prk, encInfo, 32), kMac: hkdfExpand(prk, macInfo, 32) };
}

function checkPoint(pub, step, what) {
  const problem = x25519PointProblem(pub);
  if (problem) throw new Reject("point", step, `${what}: ${problem}`);
}

const macEqual = (a, b) => a.length === b.length && crypto.timingSafeEqual(a, b);

// --- decoding (ENV-9: lengths; API-1: base64url) --------------------------------------------

function decodePayload(p, step) {
  checkMembers(p, ["nonce", "ciphertext"], [], step, "payload");
  const nonce = b64urlExact(p.nonce, 12, step, "payload nonce");
  const ciphertext = b64urlDecode(p.ciphertext, step, "payload ciphertext");
  if (ciphertext.length < 16) throw new Reject("length", step, "the ciphertext is shorter than a GCM tag");
  return { nonce, ciphertext };
}

function decodeEntry(e, step) {
  checkMembers(e, ENTRY_MEMBERS, [], step, "entry");
  return {
    userId: checkIdentifier(e.user_id, step, "user_id"),
    deviceId: checkIdentifier(e.device_id, step, "device_id"),
    eph: b64urlExact(e.ephemeral_key, 32, step, "ephemeral_key"),
    wrapped: b64urlExact(e.wrapped_key, 48, step, "wrapped_key"),
    mac: b64urlExact(e.mac, 32, step, "mac"),
  };
}

function decodeDelivery(d, step, { stored = false } = {}) {
  checkMembers(d, ["message_id", "sender", "payload", "recipient"], stored ? ["mac_key", "received_at", "expires_at"] : [], step, "delivery");
  return {
    messageId: b64urlExact(d.message_id, 16, step, "message_id"),
    sender: checkIdentifier(d.sender, step, "sender"),
    payload: decodePayload(d.payload, step),
    entry: decodeEntry(d.recipient, step),
    macKey: stored && "mac_key" in d ? b64urlExact(d.mac_key, 32, step, "mac_key") : null,
  };
}

// --- steps 3-7: seal ------------------------------------------------------------------------

async function seal(inp, trace) {
  const messageId = fromHex(inp.message_id);
  const k = fromHex(inp.content_key);
  const nonce = fromHex(inp.payload_nonce);
  const sender = checkIdentifier(inp.sender, "3", "sender");
  const aad = trace.inter("payload_aad", payloadAad(messageId, sender));
  const ciphertext = trace.inter("ciphertext", aesGcmSeal(k, nonce, fromHex(inp.message), aad));
  const digest = trace.inter("ciphertext_digest", sha256(ciphertext));
  if (inp.ephemeral_privates.length !== inp.recipients.length) throw new Error("one ephemeral key per recipient");
  const recips = [];
  const entries = inp.recipients.map((r, i) => {
    const devicePublic = fromHex(r.device_public);
    checkPoint(devicePublic, "1", "device key");
    const e = fromHex(inp.ephemeral_privates[i]);
    const eph = x25519Public(e);
    const shared = x25519(e, devicePublic);
    const keys = recipientKeys(shared, messageId, eph, devicePublic);
    const wAad = wrapAad(messageId, sender, r.user_id, r.device_id, eph);
    const wrapped = aesGcmSeal(keys.kEnc, ZERO12, k, wAad);
    const mIn = macInput(messageId, sender, r.user_id, r.device_id, eph, wrapped, nonce, digest);
    const mac = hmacSha256(keys.kMac, mIn);
    recips.push({
      ephemeral_public: eph, shared_secret: shared, prk: keys.prk, encryption_key_info: keys.encInfo,
      mac_key_info: keys.macInfo, encryption_key: keys.kEnc, mac_key: keys.kMac, wrap_aad: wAad,
      wrapped_key: wrapped, mac_input: mIn, mac,
    });
    return { user_id: r.user_id, device_id: r.device_id, ephemeral_key: b64urlEncode(eph),
      wrapped_key: b64urlEncode(wrapped), mac: b64urlEncode(mac) };
  });
  trace.inter("recipients", recips);
  trace.out("envelope", {
    message_id: b64urlEncode(messageId), sender,
    payload: { nonce: b64urlEncode(nonce), ciphertext: b64urlEncode(ciphertext) },
    recipients: entries,
  });
}

// --- step 8: the server accepts and fans out ------------------------------------------------

async function validateSubmission(inp, trace) {
  const step = "8";
  const env = checkMembers(inp.envelope, ["message_id", "sender", "payload", "recipients"], [], step, "envelope");
  const messageId = b64urlExact(env.message_id, 16, step, "message_id");
  const sender = checkIdentifier(env.sender, step, "sender");
  const payload = decodePayload(env.payload, step);
  if (!Array.isArray(env.recipients)) throw new Reject("decode", step, "recipients is not an array");
  const entries = env.recipients.map((e) => decodeEntry(e, step));
  // ENV-9: at least one recipient (params); no (user, device) twice, no repeated
  // ephemeral key (decode).
  if (entries.length === 0) throw new Reject("params", step, "no recipient");
  const seen = new Set(), ephs = new Set();
  for (const e of entries) {
    const key = JSON.stringify([e.userId, e.deviceId]);
    if (seen.has(key)) throw new Reject("decode", step, `${e.userId}/${e.deviceId} named twice`);
    seen.add(key);
    const eh = toHex(e.eph);
    if (ephs.has(eh)) throw new Reject("decode", step, "a repeated ephemeral key");
    ephs.add(eh);
  }
  // ENV-17: the advertised limits.
  if (entries.length > inp.limits.max_recipients) throw new Reject("params", step, "more recipients than max_recipients");
  if (payload.ciphertext.length > inp.limits.max_message_bytes) throw new Reject("params", step, "the ciphertext is longer than max_message_bytes");
  // ENV-5: every party rejects a bad ephemeral key.
  for (const e of entries) checkPoint(e.eph, step, "ephemeral key");
  // ENV-10: sender, registered devices, once per message id.
  if (sender !== inp.authenticated_user) throw new Reject("binding", step, "the sender is not the authenticated user");
  const registered = new Set(inp.registered_devices.map((d) => JSON.stringify(d)));
  for (const e of entries) {
    if (!registered.has(JSON.stringify([e.userId, e.deviceId]))) throw new Reject("binding", step, `${e.userId}/${e.deviceId} is not registered`);
  }
  if (inp.used_message_ids.includes(toHex(messageId))) throw new Reject("replay", step, "the message id was used before");
  // ENV-11: one delivery per device, with that device's entry only.
  trace.out("deliveries", env.recipients.map((entry) => ({
    message_id: env.message_id, sender: env.sender, payload: env.payload, recipient: entry,
  })));
}

// --- step 10: the recipient opens ------------------------------------------------------------

async function open(inp, trace) {
  const step = "10";
  const d = decodeDelivery(inp.delivery, step);
  // ENV-18: a message id this device already acknowledged is refused before opening.
  if ((inp.acknowledged ?? []).includes(toHex(d.messageId))) {
    throw new Reject("replay", step, "the device already acknowledged this message id");
  }
  const e = d.entry;
  // ENV-13, in its order: the address, then keys, unwrap, MAC, decrypt.
  if (e.userId !== inp.user_id || e.deviceId !== inp.device_id) {
    throw new Reject("binding", step, `an entry for ${e.userId}/${e.deviceId}`);
  }
  checkPoint(e.eph, step, "ephemeral key");
  const priv = fromHex(inp.device_private);
  const devicePublic = trace.inter("device_public", x25519Public(priv));
  const shared = x25519(priv, e.eph);
  if (!shared || shared.every((b) => b === 0)) throw new Reject("point", step, "an all-zero shared secret");
  trace.inter("shared_secret", shared);
  const keys = recipientKeys(shared, d.messageId, e.eph, devicePublic);
  trace.inter("encryption_key", keys.kEnc);
  trace.inter("mac_key", keys.kMac);
  const k = aesGcmOpen(keys.kEnc, ZERO12, e.wrapped, wrapAad(d.messageId, d.sender, e.userId, e.deviceId, e.eph));
  if (!k) throw new Reject("aead", step, "the wrapped key does not authenticate");
  trace.inter("content_key", k);
  const digest = trace.inter("ciphertext_digest", sha256(d.payload.ciphertext));
  const mIn = trace.inter("mac_input", macInput(d.messageId, d.sender, e.userId, e.deviceId, e.eph, e.wrapped, d.payload.nonce, digest));
  if (!macEqual(hmacSha256(keys.kMac, mIn), e.mac)) throw new Reject("mac", step, "the MAC does not verify");
  const plaintext = aesGcmOpen(k, d.payload.nonce, d.payload.ciphertext, payloadAad(d.messageId, d.sender));
  if (!plaintext) throw new Reject("aead", step, "the payload does not authenticate");
  trace.out("plaintext", plaintext);
  trace.out("ack", { mac_key: b64urlEncode(keys.kMac) });
}

// --- step 11: the server checks a disclosed MAC key ---------------------------------------------

async function acknowledge(inp, trace) {
  const step = "11";
  const d = decodeDelivery(inp.delivery, step, { stored: true });
  const ack = checkMembers(inp.ack, ["mac_key"], [], step, "ack");
  const macKey = b64urlExact(ack.mac_key, 32, step, "mac_key");
  const e = d.entry;
  const mIn = macInput(d.messageId, d.sender, e.userId, e.deviceId, e.eph, e.wrapped, d.payload.nonce, sha256(d.payload.ciphertext));
  if (!macEqual(hmacSha256(macKey, mIn), e.mac)) throw new Reject("mac", step, "the disclosed key does not verify the stored MAC");
  const changed = d.macKey === null;
  if (!changed && !equalBytes(d.macKey, macKey)) throw new Error("two different keys verify one MAC");
  trace.out("changed", changed);
  trace.out("record", { ...inp.delivery, mac_key: ack.mac_key });
}

// --- step 1: the server checks a device registration ------------------------------------------

async function registerDevice(inp, trace) {
  const step = "1";
  checkIdentifier(inp.device_id, step, "device_id"); // ENV-1
  const body = checkMembers(inp.body, ["x25519"], [], step, "device");
  const key = b64urlExact(body.x25519, 32, step, "x25519"); // ENV-2: 32 bytes,
  checkPoint(key, step, "device key"); // canonical, not of low order
  trace.out("x25519", key);
}

export default {
  envelope: {
    header: { schema: "urn:keyflows:schema:vectors:envelope:1", flow: "envelope", profile: "v1" },
    operations: {
      seal: { run: seal },
      "validate-submission": { run: validateSubmission },
      open: { run: open },
      acknowledge: { run: acknowledge },
      "register-device": { run: registerDevice },
    },
  },
};
