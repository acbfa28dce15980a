// The mute compatibility profile of the hashchain flow (docs/flows/hashchain.rst,
// "Compatibility profile mute"; HC-30..HC-34): the original's linear chain, byte for byte.

import crypto from "node:crypto";
import { Drbg, Reject, concat, equalBytes, fromHex, sha256, sha512, utf8 } from "../lib/core.mjs";

const ZERO32 = new Uint8Array(32);
const byte = (n) => new Uint8Array([n]);

// --- HC-34: the identity mapping (also v1's mapped form) -------------------------------------

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
