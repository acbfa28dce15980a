// Lock layering, step 12 (LOCK-30..LOCK-34), written from docs/flows/lock-layering.rst,
// "Encrypted data vault": a keystore's working-key versions kept as encrypted documents
// (DIF Confidential Storage) in a vault that cannot read them. Document ids are "z" and
// the base58btc of 16 bytes; index attributes are blinded with HMAC-SHA256 (the value
// together with its name, as JCS); the JWE is ECDH-ES+A256KW with an X25519 ephemeral key
// (Concat KDF, AES Key Wrap) and A256GCM content encryption. Every refusal is at step 12.

import crypto from "node:crypto";
import {
  Reject, aesGcmOpen, aesGcmSeal, b64urlDecode, b64urlEncode, checkMembers, concat, fromHex,
  hmacSha256, isObject, sha256, u32be, x25519, x25519PointProblem, x25519Public,
} from "../lib/core.mjs";

const STEP = "12";
const ALG = "ECDH-ES+A256KW";
const PROTECTED = b64urlEncode(Buffer.from('{"enc":"A256GCM"}', "ascii"));
const HMAC_TYPE = "Sha256HmacKey2019";
const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const MAX_SEQUENCE = 2 ** 53 - 1;
const KID = /^[\x21-\x7e]{1,256}$/;
const ascii = (s) => new Uint8Array(Buffer.from(s, "ascii"));
const utf8 = (s) => new Uint8Array(Buffer.from(s, "utf8"));

// --- identifiers (V1) --------------------------------------------------------------------

function base58Encode(bytes) {
  let n = bytes.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
  let out = "";
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out;
    n /= 58n;
  }
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  return "1".repeat(zeros) + out;
}
function base58Decode(text) {
  let n = 0n;
  for (const ch of text) {
    const i = B58.indexOf(ch);
    if (i < 0) throw new Reject("decode", STEP, "an id is not base58btc");
    n = n * 58n + BigInt(i);
  }
  const body = [];
  while (n > 0n) {
    body.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  let ones = 0;
  while (ones < text.length && text[ones] === "1") ones++;
  return new Uint8Array([...new Array(ones).fill(0), ...body]);
}
/** "z" || base58btc of exactly 16 bytes, in its one canonical form. */
function checkId(v) {
  // at most 22 base58btc characters encode 16 bytes (58^22 > 2^128): bounded before decoding
  if (typeof v !== "string" || !v.startsWith("z") || v.length > 23) throw new Reject("decode", STEP, "an id is z || base58btc");
  const raw = base58Decode(v.slice(1));
  if (raw.length !== 16 || `z${base58Encode(raw)}` !== v) throw new Reject("decode", STEP, "an id is the base58btc of 16 bytes");
  return v;
}
function checkKid(v) {
  if (typeof v !== "string" || !KID.test(v)) throw new Reject("decode", STEP, "a key id is 1..256 printable ASCII characters");
  return v;
}
const recipientKid = (ks) => `urn:keyflows:keystore:${ks}:edv-recipient`;
const hmacKid = (ks) => `urn:keyflows:keystore:${ks}:edv-mac`;

// --- blinding (V2) -------------------------------------------------------------------------

// RFC 8785 serializes a string as ECMAScript's JSON.stringify does.
const jcsMember = (name, value) => utf8(`{${JSON.stringify(name)}:${JSON.stringify(value)}}`);
const blindName = (key, name) => b64urlEncode(hmacSha256(key, utf8(name)));
const blindValue = (key, name, value) => b64urlEncode(hmacSha256(key, jcsMember(name, value)));

function keyIndex(macKey, ks, keyId, version) {
  return {
    hmac: { id: hmacKid(ks), type: HMAC_TYPE },
    sequence: 0,
    attributes: [
      { name: blindName(macKey, "content.key"), value: blindValue(macKey, "content.key", `${keyId}/${version}`), unique: true },
      { name: blindName(macKey, "content.key_id"), value: blindValue(macKey, "content.key_id", keyId) },
    ],
  };
}

// --- the JWE (V3) --------------------------------------------------------------------------

/** NIST SP 800-56A Concat KDF with SHA-256 as RFC 7518 section 4.6.2 fills it in. */
function concatKdf(z, algorithmId, apu, apv, keyBits) {
  const lp = (b) => concat(u32be(b.length), b);
  const otherInfo = concat(lp(ascii(algorithmId)), lp(apu), lp(apv), u32be(keyBits));
  const out = [];
  for (let counter = 1; out.length * 32 * 8 < keyBits; counter++) out.push(sha256(u32be(counter), z, otherInfo));
  return concat(...out).slice(0, keyBits / 8);
}
const RFC3394_IV = Buffer.from("a6a6a6a6a6a6a6a6", "hex");
function keyWrap(kek, key) {
  const c = crypto.createCipheriv("id-aes256-wrap", kek, RFC3394_IV);
  return new Uint8Array(Buffer.concat([c.update(key), c.final()]));
}
function keyUnwrap(kek, wrapped) {
  try {
    const d = crypto.createDecipheriv("id-aes256-wrap", kek, RFC3394_IV);
    return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
  } catch {
    throw new Reject("aead", STEP, "the encrypted key does not unwrap");
  }
}

/** Python's json.dumps(sort_keys, compact, ensure_ascii): what the chapter calls canonical
 * JSON for the structured document (every character above 0x7e escaped). */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${canonical(k)}:${canonical(v[k])}`).join(",")}}`;
  if (typeof v === "string") return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return JSON.stringify(v);
}

function keyContent(ks, keyId, keyType, version, publicKey, sealed) {
  return { keystore_id: ks, key_id: keyId, key_type: keyType, version, public_key: b64urlEncode(publicKey), sealed: b64urlEncode(sealed) };
}

// --- parsing a document (V4) ---------------------------------------------------------------

function sequenceOf(v) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > MAX_SEQUENCE) throw new Reject("decode", STEP, "a sequence is an integer 0..2^53-1");
  return v;
}
function exact(v, n, what) {
  const b = b64urlDecode(v, STEP, what);
  if (n !== null && b.length !== n) throw new Reject("length", STEP, `${what} is ${b.length} bytes, not ${n}`);
  return b;
}
function parseAttribute(a) {
  checkMembers(a, ["name", "value"], ["unique"], STEP, "attribute");
  if ("unique" in a && a.unique !== true && a.unique !== false) throw new Reject("decode", STEP, "unique is a boolean");
  exact(a.name, 32, "a blinded name");
  exact(a.value, 32, "a blinded value");
  return a;
}
function parseIndexEntry(e) {
  checkMembers(e, ["hmac", "sequence", "attributes"], [], STEP, "index entry");
  checkMembers(e.hmac, ["id", "type"], [], STEP, "hmac");
  if (e.hmac.type !== HMAC_TYPE) throw new Reject("decode", STEP, `hmac.type is ${HMAC_TYPE}`);
  if (!Array.isArray(e.attributes) || e.attributes.length < 1 || e.attributes.length > 16) throw new Reject("decode", STEP, "1..16 attributes");
  const attributes = e.attributes.map(parseAttribute);
  if (new Set(attributes.map((a) => a.name)).size !== attributes.length) throw new Reject("decode", STEP, "an attribute name twice");
  checkKid(e.hmac.id);
  return { hmacId: e.hmac.id, sequence: sequenceOf(e.sequence), attributes };
}
function parseJwe(j) {
  checkMembers(j, ["protected", "recipients", "iv", "ciphertext", "tag"], [], STEP, "jwe");
  if (j.protected !== PROTECTED) throw new Reject("decode", STEP, "the protected header");
  if (!Array.isArray(j.recipients) || j.recipients.length !== 1) throw new Reject("decode", STEP, "one recipient");
  const r = j.recipients[0];
  checkMembers(r, ["header", "encrypted_key"], [], STEP, "recipient");
  const h = r.header;
  checkMembers(h, ["alg", "kid", "epk", "apu", "apv"], [], STEP, "header");
  if (h.alg !== ALG) throw new Reject("decode", STEP, `alg is ${ALG}`);
  const kid = checkKid(h.kid);
  checkMembers(h.epk, ["kty", "crv", "x"], [], STEP, "epk");
  if (h.epk.kty !== "OKP" || h.epk.crv !== "X25519") throw new Reject("decode", STEP, "epk is an OKP X25519 key");
  const epk = exact(h.epk.x, 32, "epk");
  if (h.apu !== h.epk.x || h.apv !== b64urlEncode(ascii(kid))) throw new Reject("binding", STEP, "apu is the epk and apv the kid");
  return {
    kid, epk, encryptedKey: exact(r.encrypted_key, 40, "encrypted_key"), iv: exact(j.iv, 12, "iv"),
    ciphertext: exact(j.ciphertext, null, "ciphertext"), tag: exact(j.tag, 16, "tag"),
  };
}
function parseDocument(d) {
  checkMembers(d, ["id", "sequence", "indexed", "jwe"], [], STEP, "document");
  const sequence = sequenceOf(d.sequence);
  if (!Array.isArray(d.indexed) || d.indexed.length !== 1) throw new Reject("decode", STEP, "one index entry");
  const entry = parseIndexEntry(d.indexed[0]);
  if (entry.sequence !== sequence) throw new Reject("decode", STEP, "the entry's sequence is the document's");
  return { id: checkId(d.id), sequence, indexed: [entry], jwe: parseJwe(d.jwe) };
}

/** The recipient: its key id first (binding), then the epk (point), the wrapped key and
 * the content (aead), the plaintext {id, content} naming this document (decode, binding). */
function decryptDocument(doc, recipientPrivate, kid) {
  if (doc.jwe.kid !== kid) throw new Reject("binding", STEP, "the document is encrypted to another key");
  const problem = x25519PointProblem(doc.jwe.epk);
  if (problem) throw new Reject("point", STEP, `epk: ${problem}`);
  const z = x25519(recipientPrivate, doc.jwe.epk);
  if (z === null || z.every((b) => b === 0)) throw new Reject("point", STEP, "Z is zero");
  const cek = keyUnwrap(concatKdf(z, ALG, doc.jwe.epk, ascii(kid), 256), doc.jwe.encryptedKey);
  const plaintext = aesGcmOpen(cek, doc.jwe.iv, concat(doc.jwe.ciphertext, doc.jwe.tag), ascii(PROTECTED));
  if (plaintext === null) throw new Reject("aead", STEP, "the content does not open");
  let structured;
  try {
    structured = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plaintext));
  } catch {
    throw new Reject("decode", STEP, "the plaintext is not JSON");
  }
  checkMembers(structured, ["id", "content"], [], STEP, "structured document");
  if (!isObject(structured.content)) throw new Reject("decode", STEP, "content is an object");
  if (structured.id !== doc.id) throw new Reject("binding", STEP, "the plaintext names another document");
  return structured.content;
}

// --- queries (V6) ----------------------------------------------------------------------------

function parseQuery(q) {
  checkMembers(q, ["index"], ["equals", "has", "returnFullDocuments"], STEP, "query");
  if (("equals" in q) === ("has" in q)) throw new Reject("decode", STEP, "equals or has");
  const nonEmptyObject = (g) => isObject(g) && Object.keys(g).length > 0 && Object.values(g).every((v) => typeof v === "string");
  if ("equals" in q && !(Array.isArray(q.equals) && q.equals.length && q.equals.every(nonEmptyObject))) throw new Reject("decode", STEP, "equals");
  if ("has" in q && !(Array.isArray(q.has) && q.has.length && q.has.every((n) => typeof n === "string"))) throw new Reject("decode", STEP, "has");
  return { index: checkKid(q.index), equals: q.equals ?? null, has: q.has ?? null };
}
/** The document's entry of the queried index holds every pair of one `equals` group, or
 * every name of `has`. */
function matches(doc, query) {
  const entry = doc.indexed.find((e) => e.hmacId === query.index);
  if (!entry) return false;
  const pairs = new Set(entry.attributes.map((a) => `${a.name}\0${a.value}`));
  const names = new Set(entry.attributes.map((a) => a.name));
  if (query.equals) return query.equals.some((g) => Object.entries(g).every(([n, v]) => pairs.has(`${n}\0${v}`)));
  return query.has.every((n) => names.has(n));
}

// --- operations ------------------------------------------------------------------------------

export const edvOperations = {
  "edv-blind": {
    async run(inp, trace) {
      const key = fromHex(inp.mac_key);
      trace.inter("jcs", jcsMember(inp.name, inp.value));
      trace.out("name", blindName(key, inp.name));
      trace.out("value", blindValue(key, inp.name, inp.value));
    },
  },
  "edv-document": {
    async run(inp, trace) {
      const ks = inp.keystore_id;
      const kid = trace.inter("recipient_kid", recipientKid(ks));
      const recipient = fromHex(inp.recipient_public_key);
      const problem = x25519PointProblem(recipient);
      if (problem) throw new Reject("point", STEP, `recipient key: ${problem}`);
      const eph = fromHex(inp.ephemeral_private);
      const epk = trace.inter("epk", x25519Public(eph));
      const z = trace.inter("shared", x25519(eph, recipient));
      const kek = trace.inter("kek", concatKdf(z, ALG, epk, ascii(kid), 256));
      const id = checkId(inp.doc_id);
      const content = keyContent(ks, inp.key_id, inp.key_type, inp.version, fromHex(inp.public_key), fromHex(inp.sealed));
      const plaintext = trace.inter("plaintext", ascii(canonical({ id, content })));
      trace.inter("protected", PROTECTED);
      const iv = fromHex(inp.iv);
      const sealed = aesGcmSeal(fromHex(inp.cek), iv, plaintext, ascii(PROTECTED));
      const x = b64urlEncode(epk);
      const document = {
        id, sequence: 0, indexed: [keyIndex(fromHex(inp.mac_key), ks, inp.key_id, inp.version)],
        jwe: {
          protected: PROTECTED,
          recipients: [{ header: { alg: ALG, kid, epk: { kty: "OKP", crv: "X25519", x }, apu: x, apv: b64urlEncode(ascii(kid)) }, encrypted_key: b64urlEncode(keyWrap(kek, fromHex(inp.cek))) }],
          iv: b64urlEncode(iv), ciphertext: b64urlEncode(sealed.slice(0, -16)), tag: b64urlEncode(sealed.slice(-16)),
        },
      };
      trace.expect("the document parses back", parseDocument(document).id === id);
      trace.out("document", document);
    },
  },
  "edv-document-open": {
    async run(inp, trace) {
      const doc = parseDocument(inp.document);
      const content = decryptDocument(doc, fromHex(inp.recipient_private), recipientKid(inp.keystore_id));
      checkMembers(content, ["keystore_id", "key_id", "key_type", "version", "public_key", "sealed"], [], STEP, "working-key content");
      const want = keyContent(inp.keystore_id, inp.key_id, inp.key_type, inp.version, fromHex(inp.public_key), new Uint8Array());
      for (const name of ["keystore_id", "key_id", "key_type", "version", "public_key"]) {
        if (content[name] !== want[name]) throw new Reject("binding", STEP, `the document is for another ${name}`);
      }
      trace.out("sealed", b64urlDecode(content.sealed, STEP, "sealed"));
    },
  },
  "edv-query": {
    async run(inp, trace) {
      const query = parseQuery(inp.query);
      const docs = inp.documents.map(parseDocument);
      trace.out("matches", docs.filter((d) => matches(d, query)).map((d) => d.id));
    },
  },
};
