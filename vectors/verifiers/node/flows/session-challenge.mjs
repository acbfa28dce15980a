// Session challenge (SC-1..SC-19): HPKE-sealed tokens bound to an origin, the client's
// checks, the server's state machine over answers, sessions (what they allow, when they
// end) and the attempt limit.

import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlEncode, b64urlExact, checkIdentifier, checkMembers,
  concat, equalBytes, fromHex, isInteger, labelledContext, sha256, u32be, u64be, x25519,
  x25519PointProblem, x25519Public,
} from "../lib/core.mjs";
import {
  AEAD_ID, KDF_ID, KEM_ID, hpkeSuiteId, keyScheduleMode, openBase, sealBase,
} from "../lib/hpke.mjs";
import { combine } from "./envelope.mjs";

/** SC-50: the hybrid suite, KEM MLKEM768-X25519. */
const HYBRID_KEM_ID = 0x647a;
const HYBRID_SUITE_ID = hpkeSuiteId(HYBRID_KEM_ID, KDF_ID, AEAD_ID);
const X25519_BASE = concat(new Uint8Array([9]), new Uint8Array(31));

const EMPTY = new Uint8Array(0);
const TOKEN_LEN = 32;
const U64_MAX = 18446744073709551615n;

/** SC-4: the HPKE info. */
const infoOf = (origin, challengeId, userId, clientId, keyVersion, expiresAt) =>
  labelledContext("session-challenge", origin, challengeId, userId, clientId, u32be(keyVersion), u64be(expiresAt));

/** SC-17, SC-18: the ASCII serialization of an http(s) origin, default port left out. */
const ORIGIN = /^(https|http):\/\/([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::([1-9][0-9]{0,4}))?$/;
function checkOrigin(origin, step) {
  if (typeof origin !== "string" || origin.length > 255) throw new Reject("decode", step, "origin");
  const m = ORIGIN.exec(origin);
  if (!m) throw new Reject("decode", step, "origin is not scheme://host[:port]");
  if (m[3] !== undefined) {
    const port = Number(m[3]);
    if (port > 65535) throw new Reject("decode", step, "origin port");
    if (port === (m[1] === "https" ? 443 : 80)) throw new Reject("decode", step, "origin names the default port");
  }
  return origin;
}

const isU64 = (v) => isInteger(v) && v >= 0 && BigInt(v) <= U64_MAX;

// --- steps 3-5: the server issues a challenge ---------------------------------------------

async function issueChallenge(inp, trace) {
  const lifetime = inp.challenge_lifetime;
  if (!isInteger(lifetime) || lifetime < 1 || lifetime > 300) throw new Reject("params", "4", "challenge lifetime outside 1..300");
  const challengeId = fromHex(inp.random.challenge_id);
  const token = fromHex(inp.random.token);
  const expiresAt = inp.now + lifetime;
  const origin = checkOrigin(inp.origin, "4");
  const info = trace.inter("info", infoOf(origin, challengeId, inp.user_id, inp.client_id, inp.key_version, expiresAt));
  const s = sealBase(fromHex(inp.recipient_public), info, EMPTY, token, fromHex(inp.random.ikm_e));
  trace.inter("ephemeral_private", s.ephemeralPrivate);
  trace.inter("enc", s.enc);
  trace.inter("dh", s.dh);
  trace.inter("kem_context", s.kemContext);
  trace.inter("shared_secret", s.sharedSecret);
  trace.inter("psk_id_hash", s.pskIdHash);
  trace.inter("info_hash", s.infoHash);
  trace.inter("key_schedule_context", s.keyScheduleContext);
  trace.inter("secret", s.secret);
  trace.inter("key", s.key);
  trace.inter("base_nonce", s.baseNonce);
  trace.inter("ciphertext", s.ciphertext);
  trace.out("challenge", {
    origin, challenge_id: b64urlEncode(challengeId), user_id: inp.user_id, client_id: inp.client_id,
    key_version: inp.key_version, expires_at: expiresAt,
    suite: { kem_id: KEM_ID, kdf_id: KDF_ID, aead_id: AEAD_ID },
    enc: b64urlEncode(s.enc), ciphertext: b64urlEncode(s.ciphertext),
  });
  trace.out("stored", {
    origin, challenge_id: challengeId, user_id: inp.user_id, client_id: inp.client_id, key_version: inp.key_version,
    issued_at: inp.now, expires_at: expiresAt, token, state: "issued",
  });
}

// --- step 6: the client opens it -----------------------------------------------------------

async function openChallenge(inp, trace) {
  const step = "6";
  const c = checkMembers(inp.challenge, ["origin", "challenge_id", "user_id", "client_id", "key_version",
    "expires_at", "suite", "enc", "ciphertext"], [], step, "challenge");
  checkOrigin(c.origin, step);
  const challengeId = b64urlExact(c.challenge_id, 16, step, "challenge_id");
  checkIdentifier(c.user_id, step, "user_id");
  checkIdentifier(c.client_id, step, "client_id");
  if (!isInteger(c.key_version) || c.key_version < 1 || c.key_version > 0xffffffff) throw new Reject("decode", step, "key_version");
  if (!isU64(c.expires_at)) throw new Reject("decode", step, "expires_at");
  const suite = checkMembers(c.suite, ["kem_id", "kdf_id", "aead_id"], [], step, "suite");
  for (const k of ["kem_id", "kdf_id", "aead_id"]) if (!isInteger(suite[k])) throw new Reject("decode", step, `suite.${k}`);
  // SC-5 (SC-51 for a client holding an ML-KEM seed): the suite its keys call for, before
  // the lengths that depend on it and before any cryptography.
  const hybrid = inp.mlkem_seed !== undefined;
  if (suite.kem_id !== (hybrid ? HYBRID_KEM_ID : KEM_ID) || suite.kdf_id !== KDF_ID || suite.aead_id !== AEAD_ID) {
    throw new Reject("params", step, "another HPKE suite");
  }
  const enc = b64urlExact(c.enc, hybrid ? 1120 : 32, step, "enc");
  const ciphertext = b64urlExact(c.ciphertext, TOKEN_LEN + 16, step, "ciphertext");
  // SC-18: the origin the client asked, before the rest of the context.
  if (c.origin !== inp.origin) throw new Reject("binding", step, "a challenge for another origin (relayed)");
  if (c.user_id !== inp.user_id || c.client_id !== inp.client_id || c.key_version !== inp.key_version) {
    throw new Reject("binding", step, "a challenge for another user, application or key version");
  }
  // SC-6: enc (its X25519 part), before the DH.
  const problem = x25519PointProblem(enc.subarray(enc.length - 32));
  if (problem) throw new Reject("point", step, `enc: ${problem}`);
  // SC-7: OpenBase with the info recomputed from the challenge's own fields.
  const info = trace.inter("info", infoOf(c.origin, challengeId, c.user_id, c.client_id, c.key_version, c.expires_at));
  if (hybrid) return openHybrid(inp, enc, ciphertext, info, trace);
  const o = openBase(enc, fromHex(inp.x25519_private), info, EMPTY, ciphertext);
  if (!o.dh) throw new Reject("point", step, "the DH result is all zero");
  trace.inter("dh", o.dh);
  trace.inter("kem_context", o.kemContext);
  trace.inter("shared_secret", o.sharedSecret);
  trace.inter("key_schedule_context", o.keyScheduleContext);
  trace.inter("secret", o.secret);
  trace.inter("key", o.key);
  trace.inter("base_nonce", o.baseNonce);
  if (!o.plaintext) throw new Reject("aead", step, "the sealed token does not open");
  trace.out("token", o.plaintext);
  trace.out("answer", { token: b64urlEncode(o.plaintext) });
}

/** SC-51: OpenBase with KEM MLKEM768-X25519 (X-Wing combiner), both private keys. */
function openHybrid(inp, enc, ciphertext, info, trace) {
  const skX = fromHex(inp.x25519_private);
  const { secretKey } = ml_kem768.keygen(fromHex(inp.mlkem_seed));
  const ctPq = enc.subarray(0, 1088), ctT = enc.subarray(1088);
  const ssPq = trace.inter("ss_pq", ml_kem768.decapsulate(ctPq, secretKey));
  const ssT = x25519(skX, ctT);
  if (!ssT) throw new Reject("point", "6", "an all-zero DH with ct_T");
  trace.inter("ss_t", ssT);
  const shared = trace.inter("shared_secret", combine(ssPq, ssT, ctT, x25519Public(skX)));
  const ks = keyScheduleMode(0x00, HYBRID_SUITE_ID, shared, info, new Uint8Array(0), new Uint8Array(0));
  for (const [k, v] of [["key_schedule_context", ks.keyScheduleContext], ["secret", ks.secret],
    ["key", ks.key], ["base_nonce", ks.baseNonce]]) trace.inter(k, v);
  const token = aesGcmOpen(ks.key, ks.baseNonce, ciphertext, EMPTY);
  if (!token) throw new Reject("aead", "6", "the sealed token does not open");
  trace.out("token", token);
  trace.out("answer", { token: b64urlEncode(token) });
}

/** SC-50: the server seals with the hybrid suite to mlkem768 || x25519 (EncapsDerand with
 * the case's m and ephemeral scalar). */
async function issueChallengeHybrid(inp, trace) {
  const lifetime = inp.challenge_lifetime;
  if (!isInteger(lifetime) || lifetime < 1 || lifetime > 300) throw new Reject("params", "4", "challenge lifetime outside 1..300");
  const challengeId = fromHex(inp.random.challenge_id);
  const token = fromHex(inp.random.token);
  const expiresAt = inp.now + lifetime;
  const origin = checkOrigin(inp.origin, "4");
  const info = trace.inter("info", infoOf(origin, challengeId, inp.user_id, inp.client_id, inp.key_version, expiresAt));
  const pkX = fromHex(inp.recipient_public);
  const { cipherText, sharedSecret } = ml_kem768.encapsulate(fromHex(inp.recipient_mlkem768), fromHex(inp.random.mlkem_m));
  const eph = fromHex(inp.random.ephemeral_private);
  const ctT = x25519(eph, X25519_BASE), ssT = x25519(eph, pkX);
  const shared = combine(sharedSecret, ssT, ctT, pkX);
  const ks = keyScheduleMode(0x00, HYBRID_SUITE_ID, shared, info, new Uint8Array(0), new Uint8Array(0));
  const enc = concat(cipherText, ctT);
  const ciphertext = aesGcmSeal(ks.key, ks.baseNonce, token, EMPTY);
  for (const [k, v] of [["ss_pq", sharedSecret], ["ct_pq", cipherText], ["ss_t", ssT], ["ct_t", ctT],
    ["enc", enc], ["shared_secret", shared], ["psk_id_hash", ks.pskIdHash], ["info_hash", ks.infoHash],
    ["key_schedule_context", ks.keyScheduleContext], ["secret", ks.secret], ["key", ks.key],
    ["base_nonce", ks.baseNonce], ["ciphertext", ciphertext]]) trace.inter(k, v);
  trace.out("challenge", {
    origin, challenge_id: b64urlEncode(challengeId), user_id: inp.user_id, client_id: inp.client_id,
    key_version: inp.key_version, expires_at: expiresAt,
    suite: { kem_id: HYBRID_KEM_ID, kdf_id: KDF_ID, aead_id: AEAD_ID },
    enc: b64urlEncode(enc), ciphertext: b64urlEncode(ciphertext),
  });
  trace.out("stored", {
    origin, challenge_id: challengeId, user_id: inp.user_id, client_id: inp.client_id, key_version: inp.key_version,
    issued_at: inp.now, expires_at: expiresAt, token, state: "issued",
  });
}

// --- step 8: the server's state machine over answers ----------------------------------------

/** One answer: a malformed body is refused before the state machine runs (state
 * unchanged); then replay (not "issued"), expiry, the token (constant time). */
function answerOnce(stored, { now, body }) {
  const step = "8";
  let token;
  try {
    checkMembers(body, ["token"], [], step, "answer");
    token = b64urlExact(body.token, TOKEN_LEN, step, "token");
  } catch (e) {
    if (e instanceof Reject) return { state: stored.state, result: e.cls };
    throw e;
  }
  if (stored.state !== "issued") return { state: stored.state, result: "replay" };
  if (now >= stored.expires_at) return { state: "expired", result: "expired" };
  if (!equalBytes(token, fromHex(stored.token))) return { state: "burned", result: "authz" };
  return { state: "answered", result: "accepted" };
}

async function answerChallenge(inp, trace) {
  let stored = { ...inp.stored };
  const after = [];
  for (const answer of inp.answers) {
    const r = answerOnce(stored, answer);
    stored = { ...stored, state: r.state };
    after.push(r);
  }
  trace.inter("after", after);
  const last = after.at(-1);
  if (last.result !== "accepted") throw new Reject(last.result, "8", `the last answer is refused (${last.result})`);
  trace.out("stored", stored);
}

// --- steps 9, 10: sessions -------------------------------------------------------------------

const sessionDigest = (token) => sha256(labelledContext("session-token", token));

async function issueSession(inp, trace) {
  const s = inp.stored;
  if (s.state !== "answered") throw new Reject("authz", "9", "the challenge was not answered");
  if (!isInteger(inp.session_lifetime) || inp.session_lifetime < 1 || inp.session_lifetime > 86400) {
    throw new Reject("params", "9", "session lifetime outside 1..86400");
  }
  const token = fromHex(inp.random.session_token);
  const digest = trace.inter("digest", sessionDigest(token));
  const expiresAt = inp.now + inp.session_lifetime;
  trace.out("session", {
    session_token: b64urlEncode(token), token_type: "Bearer", scope: SCOPE, user_id: s.user_id,
    client_id: s.client_id, key_version: s.key_version, expires_at: expiresAt,
  });
  trace.out("stored_session", { digest, user_id: s.user_id, client_id: s.client_id, key_version: s.key_version, expires_at: expiresAt });
}

const SCOPE = "keypair:read";

/** Step 9, client side (SC-19): the session body is for the challenge it answered. */
async function acceptSession(inp, trace) {
  const step = "9";
  const b = checkMembers(inp.session, ["session_token", "token_type", "scope", "user_id", "client_id",
    "key_version", "expires_at"], [], step, "session");
  const token = b64urlExact(b.session_token, 32, step, "session_token");
  if (b.token_type !== "Bearer") throw new Reject("decode", step, "token_type");
  if (b.scope !== SCOPE) throw new Reject("decode", step, "scope");
  checkIdentifier(b.user_id, step, "user_id");
  checkIdentifier(b.client_id, step, "client_id");
  if (!isInteger(b.key_version) || b.key_version < 1 || b.key_version > 0xffffffff) throw new Reject("decode", step, "key_version");
  if (!isU64(b.expires_at)) throw new Reject("decode", step, "expires_at");
  if (b.user_id !== inp.user_id || b.client_id !== inp.client_id) throw new Reject("binding", step, "a session for another user or application");
  if (b.key_version !== inp.key_version) throw new Reject("binding", step, "a session for another key version");
  trace.out("session_token", token);
  trace.out("stored_session", { digest: sessionDigest(token), user_id: b.user_id, client_id: b.client_id, key_version: b.key_version, expires_at: b.expires_at });
}

/** Step 10: expiry, resource (SC-13), operation (SC-15), then the live key version (SC-16). */
async function checkSession(inp, trace) {
  const s = inp.stored_session;
  const digest = trace.inter("digest", sessionDigest(fromHex(inp.session_token)));
  if (!equalBytes(digest, fromHex(s.digest))) throw new Reject("authz", "10", "unknown session token");
  if (inp.now >= s.expires_at) throw new Reject("expired", "10", "the session expired");
  if (s.user_id !== inp.user_id || s.client_id !== inp.client_id) throw new Reject("authz", "10", "another user's or application's resource");
  if (inp.operation !== "get-keypair") throw new Reject("authz", "10", `a session does not allow ${inp.operation}`);
  if (inp.live_key_version === null) throw new Reject("binding", "10", "the record was deleted");
  if (inp.live_key_version !== s.key_version) throw new Reject("binding", "10", "the record has another key version");
  trace.out("authorized", true);
}

// --- step 3: the attempt limit ----------------------------------------------------------------

async function checkAttemptLimit(inp, trace) {
  const window = inp.limits.challenge_lifetime_seconds;
  const inWindow = trace.inter("in_window", inp.issued_at.filter((t) => inp.now - t < window).length);
  if (inWindow >= inp.limits.max_attempts) throw new Reject("authz", "3", `${inWindow} challenges in the window`);
  trace.out("allowed", true);
}

export default {
  "session-challenge": {
    header: { schema: "urn:keyflows:schema:vectors:session-challenge:1", flow: "session-challenge", profile: "v1" },
    operations: {
      "issue-challenge": { run: issueChallenge },
      "open-challenge": { run: openChallenge },
      "issue-challenge-hybrid": { run: issueChallengeHybrid },
      "open-challenge-hybrid": { run: openChallenge },
      "answer-challenge": { run: answerChallenge },
      "issue-session": { run: issueSession },
      "accept-session": { run: acceptSession },
      "check-session": { run: checkSession },
      "check-attempt-limit": { run: checkAttemptLimit },
    },
  },
};
