// Lock layering, steps 9 and 11 (LOCK-11..LOCK-13, LOCK-23..LOCK-29), written from
// docs/flows/lock-layering.rst: capabilities as HMAC chains whose caveats narrow,
// expire, bind to a holder key and delegate; revocation ids; holder signatures on
// requests (RFC 9421); unlock grants. Every refusal is at step 9, grants at step 11.

import crypto from "node:crypto";
import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlDecode, b64urlEncode, b64urlExact, checkIdentifier,
  checkMembers, concat, ed25519Public, ed25519Sign, ed25519Verify, fromHex, hmacSha256,
  labelledContext, sha256, u64be,
} from "../lib/core.mjs";
import {
  checkContentDigest, contentDigest, fieldValues, parseInnerList, parseSignature,
  parseSignatureInput, signatureBase, signatureParams,
} from "../lib/http-signatures.mjs";

const ctx = labelledContext;
const STEP = "9";
const OPERATIONS = ["read", "create-key", "delete-key", "export", "sign", "verify", "encrypt",
  "decrypt", "wrap", "unwrap", "computemac", "verifymac", "rotate", "revoke", "grant"];
// "key=K allows only operations on key K": the key-scoped operations.
const KEY_OPERATIONS = new Set(["delete-key", "export", "sign", "verify", "encrypt", "decrypt",
  "unwrap", "computemac", "verifymac", "rotate"]);

// --- the chain ------------------------------------------------------------------------------

export function macChain(rootKey, keystoreId, caveats) {
  const chain = [hmacSha256(rootKey, ctx("capability", keystoreId))];
  for (const c of caveats) chain.push(hmacSha256(chain.at(-1), ctx("capability-caveat", c)));
  return chain;
}
export const capabilityText = (keystoreId, caveats, mac) =>
  `kfc1.${Buffer.from(JSON.stringify({ keystore_id: keystoreId, caveats, mac: b64urlEncode(mac) }), "utf8").toString("base64url")}`;

function decodeCapability(text) {
  if (typeof text !== "string" || !text.startsWith("kfc1.")) throw new Reject("decode", STEP, "no kfc1. prefix");
  if (text.length > 4096) throw new Reject("length", STEP, "longer than 4096 characters");
  const raw = b64urlDecode(text.slice(5), STEP, "capability");
  let obj;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch {
    throw new Reject("decode", STEP, "the capability is not JSON");
  }
  checkMembers(obj, ["keystore_id", "caveats", "mac"], [], STEP, "capability");
  checkIdentifier(obj.keystore_id, STEP, "keystore_id");
  if (!Array.isArray(obj.caveats) || obj.caveats.length > 16) throw new Reject("decode", STEP, "caveats");
  for (const c of obj.caveats) {
    if (typeof c !== "string" || c.length > 256 || !/^[a-z]+=[\x21-\x7e]+$/.test(c)) throw new Reject("decode", STEP, `caveat ${JSON.stringify(c)}`);
  }
  return { keystoreId: obj.keystore_id, caveats: obj.caveats, mac: b64urlExact(obj.mac, 32, STEP, "mac") };
}

/** The addressed keystore first (binding), then the chain (mac); returns every link. */
function verifyChain(cap, rootKey, keystoreId) {
  if (cap.keystoreId !== keystoreId) throw new Reject("binding", STEP, "a capability of another keystore");
  const chain = macChain(rootKey, keystoreId, cap.caveats);
  if (!crypto.timingSafeEqual(chain.at(-1), cap.mac)) throw new Reject("mac", STEP, "the capability does not verify");
  return chain;
}

// --- caveats ------------------------------------------------------------------------------

function caveatBytes(text, n, what) {
  let b;
  try { b = b64urlDecode(text, STEP, what); } catch { throw new Reject("authz", STEP, `${what} is not base64url`); }
  if (b.length !== n) throw new Reject("authz", STEP, `${what} is not ${n} bytes`);
  return b;
}

/** The meaning of a caveat; anything not understood denies (authz). */
function parseCaveat(caveat) {
  const m = /^([a-z]+)=([\x21-\x7e]+)$/.exec(caveat);
  if (!m) throw new Reject("authz", STEP, "malformed caveat");
  const [, name, value] = m;
  if (name === "ops") {
    const ops = value.split(",");
    if (ops.some((o) => !OPERATIONS.includes(o)) || new Set(ops).size !== ops.length) throw new Reject("authz", STEP, `ops ${value}`);
    return { name, ops };
  }
  if (name === "key") {
    if (!/^[A-Za-z0-9._~-]{1,64}$/.test(value)) throw new Reject("authz", STEP, "key caveat is not a key id");
    return { name, keyId: value };
  }
  if (name === "exp") {
    if (!/^(0|[1-9][0-9]{0,18})$/.test(value) || BigInt(value) > 2n ** 63n - 1n) throw new Reject("authz", STEP, "exp is not a canonical decimal");
    return { name, notAfter: Number(value) };
  }
  if (name === "holder") return { name, key: caveatBytes(value, 32, "holder key") };
  if (name === "delegate") {
    const dot = value.indexOf(".");
    const sig = caveatBytes(dot < 0 ? "" : value.slice(dot + 1), 64, "delegate signature");
    if (dot < 0) throw new Reject("authz", STEP, "delegate is key.signature");
    return { name, key: caveatBytes(value.slice(0, dot), 32, "delegate key"), sig };
  }
  throw new Reject("authz", STEP, `caveat ${name} not understood`);
}

const notAfter = (cap) => {
  const times = cap.caveats.filter((c) => c.startsWith("exp=")).map((c) => parseCaveat(c).notAfter);
  return times.length ? Math.min(...times) : null;
};

/** LOCK-12, LOCK-23: an exp must exist and not have passed (checked first), then every
 * caveat must allow the operation on the key. */
function authorizeCaveats(cap, operation, keyId, now) {
  const expiry = notAfter(cap);
  if (expiry === null) throw new Reject("authz", STEP, "no exp caveat");
  if (now >= expiry) throw new Reject("expired", STEP, `expired at ${expiry}`);
  for (const c of cap.caveats) {
    const p = parseCaveat(c);
    if (p.name === "ops" && !p.ops.includes(operation)) throw new Reject("authz", STEP, `${operation} not granted`);
    if (p.name === "key" && (!KEY_OPERATIONS.has(operation) || keyId !== p.keyId)) throw new Reject("authz", STEP, `${operation} on ${keyId} under ${c}`);
  }
}

const delegationMessage = (keystoreId, link, key) => ctx("capability-delegation", keystoreId, link, key);

/** LOCK-25, LOCK-27: who must sign (null for a bearer capability). */
function holderOf(cap, links) {
  let holder = null;
  cap.caveats.forEach((c, i) => {
    const p = parseCaveat(c);
    if (p.name === "holder") {
      if (holder) throw new Reject("authz", STEP, "a second holder caveat");
      holder = p.key;
    } else if (p.name === "delegate") {
      if (!holder) throw new Reject("authz", STEP, "a delegation without a holder");
      if (!ed25519Verify(holder, delegationMessage(cap.keystoreId, links[i], p.key), p.sig)) {
        throw new Reject("signature", STEP, "the holder did not sign the delegation");
      }
      holder = p.key;
    }
  });
  return holder;
}

const revocationIds = (keystoreId, links) => links.slice(1).map((l) => sha256(ctx("capability-revocation", keystoreId, l)));

// --- the holder's request signature (LOCK-25, LOCK-26) ------------------------------------------

const REQUIRED = ["@method", "@authority", "@path", "@query", "authorization"];
const PARAMS = new Set(["created", "expires", "nonce", "keyid", "alg", "tag"]);

function requestOf(plain) {
  return { method: plain.method, scheme: plain.scheme, authority: plain.authority, path: plain.path,
    query: plain.query, headers: plain.headers, body: fromHex(plain.body) };
}

function checkRequestSignature(req, holder, now) {
  const inputs = fieldValues(req, "signature-input");
  const signatures = fieldValues(req, "signature");
  if (!inputs.length || !signatures.length) throw new Reject("authz", STEP, "the request is not signed");
  const entry = parseSignatureInput(inputs, STEP).get("kfc");
  const sig = parseSignature(signatures, STEP).get("kfc");
  if (!entry || !sig) throw new Reject("authz", STEP, "no signature labelled kfc");
  const required = req.body.length ? [...REQUIRED, "content-digest"] : REQUIRED;
  for (const c of required) if (!entry.components.includes(c)) throw new Reject("authz", STEP, `${c} not covered`);
  const param = (k) => entry.params.find(([x]) => x === k)?.[1];
  if (entry.params.some(([k]) => !PARAMS.has(k))) throw new Reject("authz", STEP, "an unknown parameter");
  if (param("tag") !== "keyflows-capability" || (param("alg") !== undefined && param("alg") !== "ed25519")) {
    throw new Reject("authz", STEP, "tag or alg");
  }
  const created = param("created");
  if (typeof created !== "number") throw new Reject("authz", STEP, "no created");
  if (created < now - 300 || created > now + 60) throw new Reject("expired", STEP, "created outside the window");
  const expires = param("expires");
  if (expires !== undefined && (typeof expires !== "number" || now >= expires)) throw new Reject("expired", STEP, "expired");
  const nonce = param("nonce");
  if (typeof nonce !== "string" || !/^[A-Za-z0-9_-]{22,64}$/.test(nonce)) throw new Reject("authz", STEP, "nonce");
  if (param("keyid") !== b64urlEncode(holder)) throw new Reject("binding", STEP, "keyid is not the holder");
  if (entry.components.includes("content-digest")) checkContentDigest(fieldValues(req, "content-digest"), req.body, STEP);
  const base = new TextEncoder().encode(signatureBase(req, entry, STEP));
  if (!ed25519Verify(holder, base, sig)) throw new Reject("signature", STEP, "the signature does not verify");
  return { nonceId: sha256(ctx("request-nonce", holder, nonce)), keepUntil: created + 300 };
}

function checkCapability(inp, request) {
  const cap = decodeCapability(inp.capability);
  const links = verifyChain(cap, fromHex(inp.root_key), inp.keystore_id);
  authorizeCaveats(cap, inp.operation, inp.key_id, inp.now);
  const holder = holderOf(cap, links);
  let claim = null;
  if (holder) {
    if (!request) throw new Reject("authz", STEP, "a bound capability without a signed request");
    claim = checkRequestSignature(request, holder, inp.now);
  }
  return { cap, links, holder, claim };
}

// --- step 11: unlock grants (LOCK-28) --------------------------------------------------------

const grantAad = (keystoreId, depth, link, until) => ctx("unlock-grant", keystoreId, new Uint8Array([depth]), link, u64be(until));

function openGrant(grantKey, text, keystoreId, links, now) {
  const refuse = (why) => new Reject("share", "11", why);
  if (typeof text !== "string" || !text.startsWith("kfg1.")) throw refuse("not kfg1");
  let raw;
  try { raw = b64urlDecode(text.slice(5), "11", "grant"); } catch { throw refuse("not base64url"); }
  if (raw.length !== 69) throw refuse("not 69 bytes");
  const depth = raw[0];
  const until = Number(new DataView(raw.buffer, raw.byteOffset + 1, 8).getBigUint64(0, false));
  if (now >= until) throw refuse("expired");
  if (depth < 1 || depth >= links.length) throw refuse("for another capability");
  const lockKey = aesGcmOpen(grantKey, raw.slice(9, 21), raw.slice(21), grantAad(keystoreId, depth, links[depth], until));
  if (!lockKey) throw refuse("does not open");
  return lockKey;
}

// --- operations ----------------------------------------------------------------------------------

export const capabilityOperations = {
  capability: {
    async run(inp, trace) {
      const rootCaveats = [`exp=${inp.not_after}`];
      if (inp.holder !== null) rootCaveats.push(`holder=${b64urlEncode(fromHex(inp.holder))}`);
      trace.inter("root_caveats", rootCaveats);
      const caveats = [...rootCaveats, ...inp.caveats];
      const chain = trace.inter("chain", macChain(fromHex(inp.root_key), inp.keystore_id, caveats));
      trace.out("capability", capabilityText(inp.keystore_id, caveats, chain.at(-1)));
    },
  },
  authorize: {
    async run(inp, trace) {
      const { links } = checkCapability(inp, null);
      trace.out("revocation_ids", revocationIds(inp.keystore_id, links));
    },
  },
  revocation: {
    async run(inp, trace) {
      const cap = decodeCapability(inp.capability);
      const ids = revocationIds(inp.keystore_id, verifyChain(cap, fromHex(inp.root_key), inp.keystore_id));
      const revoked = new Set(inp.revoked);
      if (ids.some((i) => revoked.has(Buffer.from(i).toString("hex")))) throw new Reject("authz", STEP, "a link is revoked");
      trace.out("revocation_ids", ids);
    },
  },
  delegate: {
    async run(inp, trace) {
      const cap = decodeCapability(inp.capability);
      verifyChain(cap, fromHex(inp.root_key), inp.keystore_id);
      const delegate = fromHex(inp.delegate_public_key);
      trace.inter("link", cap.mac);
      const message = trace.inter("message", delegationMessage(inp.keystore_id, cap.mac, delegate));
      const caveat = trace.out("caveat", `delegate=${b64urlEncode(delegate)}.${b64urlEncode(ed25519Sign(fromHex(inp.holder_seed), message))}`);
      const caveats = [...cap.caveats, caveat];
      trace.out("capability", capabilityText(inp.keystore_id, caveats, hmacSha256(cap.mac, ctx("capability-caveat", caveat))));
    },
  },
  holder: {
    async run(inp, trace) {
      const cap = decodeCapability(inp.capability);
      trace.out("holder", holderOf(cap, verifyChain(cap, fromHex(inp.root_key), inp.keystore_id)));
    },
  },
  "http-signature": {
    async run(inp, trace) {
      const req = requestOf(inp.request);
      const entry = parseInnerList(inp.signature_params, STEP);
      const base = trace.inter("signature_base", signatureBase(req, entry, STEP));
      const sig = ed25519Sign(fromHex(inp.seed), new TextEncoder().encode(base));
      trace.expect("the signature verifies", ed25519Verify(ed25519Public(fromHex(inp.seed)), new TextEncoder().encode(base), sig));
      if (req.body.length && entry.components.includes("content-digest")) {
        trace.expect("the request's Content-Digest is the body's", fieldValues(req, "content-digest")[0] === contentDigest(req.body));
      }
      trace.out("signature_input", `${inp.label}=${signatureParams(entry)}`);
      trace.out("signature", `${inp.label}=:${Buffer.from(sig).toString("base64")}:`);
    },
  },
  "signed-request": {
    async run(inp, trace) {
      const { holder, claim } = checkCapability(inp, requestOf(inp.request));
      trace.out("holder", holder);
      trace.out("nonce_id", claim.nonceId);
      trace.out("keep_until", claim.keepUntil);
    },
  },
  "unlock-grant": {
    async run(inp, trace) {
      const cap = decodeCapability(inp.capability);
      verifyChain(cap, fromHex(inp.root_key), inp.keystore_id);
      const depth = trace.inter("depth", cap.caveats.length);
      const until = notAfter(cap);
      if (until === null || inp.now >= until) throw new Reject("expired", "11", "the capability has expired");
      trace.inter("not_after", until);
      const aad = trace.inter("aad", grantAad(inp.keystore_id, depth, cap.mac, until));
      const nonce = fromHex(inp.nonce);
      const sealed = concat(nonce, aesGcmSeal(fromHex(inp.grant_key), nonce, fromHex(inp.lock_key), aad));
      trace.out("grant", `kfg1.${b64urlEncode(concat(new Uint8Array([depth]), u64be(until), sealed))}`);
    },
  },
  "unlock-grant-open": {
    async run(inp, trace) {
      const cap = decodeCapability(inp.capability);
      const links = verifyChain(cap, fromHex(inp.root_key), inp.keystore_id);
      trace.out("lock_key", openGrant(fromHex(inp.grant_key), inp.grant, inp.keystore_id, links, inp.now));
    },
  },
};
