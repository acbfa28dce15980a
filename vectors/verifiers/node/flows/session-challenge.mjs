// Session challenge (SC-1..SC-14): HPKE-sealed tokens, the client's checks, the server's
// state machine over answers, sessions and the attempt limit.

import {
  Reject, b64urlEncode, b64urlExact, checkIdentifier, checkMembers, equalBytes, fromHex,
  isInteger, labelledContext, sha256, u32be, u64be, x25519PointProblem,
} from "../lib/core.mjs";
import { AEAD_ID, KDF_ID, KEM_ID, openBase, sealBase } from "../lib/hpke.mjs";

const EMPTY = new Uint8Array(0);
const TOKEN_LEN = 32;
const U64_MAX = 18446744073709551615n;

/** SC-4: the HPKE info. */
const infoOf = (challengeId, userId, clientId, keyVersion, expiresAt) =>
  labelledContext("session-challenge", challengeId, userId, clientId, u32be(keyVersion), u64be(expiresAt));

const isU64 = (v) => isInteger(v) && v >= 0 && BigInt(v) <= U64_MAX;

// --- steps 3-5: the server issues a challenge ---------------------------------------------

async function issueChallenge(inp, trace) {
  const lifetime = inp.challenge_lifetime;
  if (!isInteger(lifetime) || lifetime < 1 || lifetime > 300) throw new Reject("params", "4", "challenge lifetime outside 1..300");
  const challengeId = fromHex(inp.random.challenge_id);
  const token = fromHex(inp.random.token);
  const expiresAt = inp.now + lifetime;
  const info = trace.inter("info", infoOf(challengeId, inp.user_id, inp.client_id, inp.key_version, expiresAt));
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
    challenge_id: b64urlEncode(challengeId), user_id: inp.user_id, client_id: inp.client_id,
    key_version: inp.key_version, expires_at: expiresAt,
    suite: { kem_id: KEM_ID, kdf_id: KDF_ID, aead_id: AEAD_ID },
    enc: b64urlEncode(s.enc), ciphertext: b64urlEncode(s.ciphertext),
  });
  trace.out("stored", {
    challenge_id: challengeId, user_id: inp.user_id, client_id: inp.client_id, key_version: inp.key_version,
    issued_at: inp.now, expires_at: expiresAt, token, state: "issued",
  });
}

// --- step 6: the client opens it -----------------------------------------------------------

async function openChallenge(inp, trace) {
  const step = "6";
  const c = checkMembers(inp.challenge, ["challenge_id", "user_id", "client_id", "key_version", "expires_at",
    "suite", "enc", "ciphertext"], [], step, "challenge");
  const challengeId = b64urlExact(c.challenge_id, 16, step, "challenge_id");
  checkIdentifier(c.user_id, step, "user_id");
  checkIdentifier(c.client_id, step, "client_id");
  if (!isInteger(c.key_version) || c.key_version < 1 || c.key_version > 0xffffffff) throw new Reject("decode", step, "key_version");
  if (!isU64(c.expires_at)) throw new Reject("decode", step, "expires_at");
  const suite = checkMembers(c.suite, ["kem_id", "kdf_id", "aead_id"], [], step, "suite");
  for (const k of ["kem_id", "kdf_id", "aead_id"]) if (!isInteger(suite[k])) throw new Reject("decode", step, `suite.${k}`);
  const enc = b64urlExact(c.enc, 32, step, "enc");
  const ciphertext = b64urlExact(c.ciphertext, TOKEN_LEN + 16, step, "ciphertext");
  // SC-5: the suite, then the context, before any cryptography.
  if (suite.kem_id !== KEM_ID || suite.kdf_id !== KDF_ID || suite.aead_id !== AEAD_ID) {
    throw new Reject("params", step, "another HPKE suite");
  }
  if (c.user_id !== inp.user_id || c.client_id !== inp.client_id || c.key_version !== inp.key_version) {
    throw new Reject("binding", step, "a challenge for another user, application or key version");
  }
  // SC-6: enc, before the DH.
  const problem = x25519PointProblem(enc);
  if (problem) throw new Reject("point", step, `enc: ${problem}`);
  // SC-7: OpenBase with the info recomputed from the challenge's own fields.
  const info = trace.inter("info", infoOf(challengeId, c.user_id, c.client_id, c.key_version, c.expires_at));
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
  trace.out("session", { session_token: b64urlEncode(token), token_type: "Bearer", user_id: s.user_id, client_id: s.client_id, expires_at: expiresAt });
  trace.out("stored_session", { digest, user_id: s.user_id, client_id: s.client_id, expires_at: expiresAt });
}

async function checkSession(inp, trace) {
  const s = inp.stored_session;
  const digest = trace.inter("digest", sessionDigest(fromHex(inp.session_token)));
  if (!equalBytes(digest, fromHex(s.digest))) throw new Reject("authz", "10", "unknown session token");
  if (s.user_id !== inp.user_id || s.client_id !== inp.client_id) throw new Reject("authz", "10", "another user's or application's resource");
  if (inp.now >= s.expires_at) throw new Reject("expired", "10", "the session expired");
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
      "answer-challenge": { run: answerChallenge },
      "issue-session": { run: issueSession },
      "check-session": { run: checkSession },
      "check-attempt-limit": { run: checkAttemptLimit },
    },
  },
};
