// Key derivation (docs/flows/key-derivation.rst; KD-1..KD-9).

import {
  Reject, argon2id, ascii, checkIdentifier, fromHex, hkdfExpand, hkdfExtract,
  hmacSha256, labelledContext, utf8,
} from "../lib/core.mjs";

/** Step 1 (KD-1): kB is exactly 32 bytes. */
export function checkKb(kb, step = "1") {
  if (kb.length !== 32) throw new Reject("length", step, `kB is ${kb.length} bytes, not 32`);
  return kb;
}

/** Step 2 (KD-3): kBr = HKDF-SHA256(kB, empty salt, ctx("application-key", client_id), 32). */
export function applicationKey(kb, clientId, trace, names = { info: "info", prk: "prk" }) {
  const info = labelledContext("application-key", clientId);
  const prk = hkdfExtract(null, kb);
  if (trace) { trace.inter(names.info, info); if (names.prk) trace.inter(names.prk, prk); }
  return hkdfExpand(prk, info, 32);
}

/** Step 3 (KD-9): the PRECIS OpaqueString profile (RFC 8265 section 4.2) as far as the
 * vectors exercise it: non-ASCII spaces to U+0020, NFC; controls, default-ignorable,
 * unassigned and surrogate code points and an empty result refused. */
const DISALLOWED = /[\p{Cc}\p{Default_Ignorable_Code_Point}\p{Cn}\p{Cs}]/u;
export function opaqueString(password, step = "3") {
  if (typeof password !== "string" || password.length === 0) {
    throw new Reject("params", step, "the password is empty");
  }
  const mapped = password.replace(/(?! )\p{Zs}/gu, " ").normalize("NFC");
  if (mapped.length === 0) throw new Reject("params", step, "the password is empty after PRECIS");
  if (DISALLOWED.test(mapped)) throw new Reject("params", step, "a code point OpaqueString disallows");
  return utf8(mapped);
}

/** Step 3 (KD-4, KD-5: one range for producer and consumer): checked before Argon2id. */
export function checkPasswordInputs({ password, salt, t, m, p }, step = "3") {
  if (salt.length !== 16) throw new Reject("length", step, `salt is ${salt.length} bytes, not 16`);
  for (const [k, v] of Object.entries({ t, m, p })) {
    if (typeof v !== "number" || !Number.isInteger(v)) throw new Reject("params", step, `${k} is not an integer`);
  }
  if (!(t >= 2 && t <= 16)) throw new Reject("params", step, `t = ${t} outside 2..16`);
  if (!(p >= 1 && p <= 16)) throw new Reject("params", step, `p = ${p} outside 1..16`);
  if (!(m >= Math.max(19456, 8 * p) && m <= 4194304)) throw new Reject("params", step, `m = ${m} outside max(19456, 8p)..4194304`);
  if (typeof password !== "string" || password.length === 0) {
    // KD-6: a non-empty password; refused at step 3 with class params.
    throw new Reject("params", step, "the password is empty");
  }
}

/** Steps 3-4 (KD-6, KD-9): pwk = HKDF(Argon2id(OpaqueString(password), salt, t, m, p, 32),
 * empty salt, ctx("password-key", user_id, client_id), 32). */
export async function passwordKey({ password, salt, t, m, p }, userId, clientId, trace,
  names = { stretched: "stretched", info: "info", prk: "prk" }) {
  const normalized = opaqueString(password);
  if (trace && names.normalized) trace.inter(names.normalized, normalized);
  const stretched = await argon2id(normalized, salt, t, m, p, 32);
  const info = labelledContext("password-key", userId, clientId);
  const prk = hkdfExtract(null, stretched);
  if (trace) {
    trace.inter(names.stretched, stretched);
    trace.inter(names.info, info);
    if (names.prk) trace.inter(names.prk, prk);
  }
  return hkdfExpand(prk, info, 32);
}

/** KD-8, profile fxakeys: HKDF(kB, salt = "0" * len(kB), info = client_id, 32); kB of
 * any non-empty length. */
function fxakeysApplicationKey(kb, clientId, trace) {
  if (kb.length === 0) throw new Reject("length", "compat", "kB is empty");
  const salt = ascii("0".repeat(kb.length));
  const info = utf8(clientId);
  trace.inter("salt", salt);
  trace.inter("info", info);
  // HMAC pads a key shorter than the block with zeros, so an empty salt is the same key
  // as the 32 zero bytes; KD-8 defines the salt, and HMAC takes it as it is.
  const prk = hmacSha256(salt, kb);
  trace.inter("prk", prk);
  return hkdfExpand(prk, info, 32);
}

export default {
  "key-derivation": {
    header: {
      schema: "urn:keyflows:schema:vectors:key-derivation:1",
      flow: "key-derivation",
      profile: "v1",
    },
    operations: {
      "application-key": {
        async run(inp, trace) {
          checkKb(fromHex(inp.kb));
          checkIdentifier(inp.client_id, "1", "client_id");
          trace.out("kbr", applicationKey(fromHex(inp.kb), inp.client_id, trace));
        },
      },
      "password-key": {
        async run(inp, trace) {
          checkIdentifier(inp.user_id, "1", "user_id");
          checkIdentifier(inp.client_id, "1", "client_id");
          const params = { ...inp, salt: fromHex(inp.salt) };
          checkPasswordInputs(params);
          opaqueString(inp.password);
          trace.out("pwk", await passwordKey(params, inp.user_id, inp.client_id, trace,
            { normalized: "normalized", stretched: "stretched", info: "info", prk: "prk" }));
        },
      },
    },
  },
  "key-derivation.fxakeys": {
    header: {
      schema: "urn:keyflows:schema:vectors:key-derivation.fxakeys:1",
      flow: "key-derivation",
      profile: "fxakeys",
    },
    operations: {
      "fxakeys-application-key": {
        async run(inp, trace) {
          trace.out("kbr", fxakeysApplicationKey(fromHex(inp.kb), inp.client_id, trace));
        },
      },
    },
  },
};
