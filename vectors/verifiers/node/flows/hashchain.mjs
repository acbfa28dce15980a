// The hashchain flow, profile v1 (docs/flows/hashchain.rst; HC-1..HC-29, HC-35..HC-50): a
// transparency log of 129-byte entries, hashed as an RFC 9162 Merkle tree, with C2SP
// checkpoints, cosignatures and the tlog-witness protocol, a client that follows the log,
// fork proofs, identity history, UIDs and KeyInits. Written from the chapter's steps and
// byte layouts; the step numbers thrown are the chapter's.

import crypto from "node:crypto";
import {
  Drbg, Reject, aesGcmOpen, aesGcmSeal, b64urlExact, checkMembers, concat,
  ed25519Public, ed25519Sign, ed25519Strict, equalBytes, fromHex, hkdf, isInteger, isObject,
  labelledContext, sha256, toHex, u32be, u64be, utf8, x25519PointProblem,
} from "../lib/core.mjs";
import mute, { mapIdentity } from "./hashchain-mute.mjs";

const ENTRY_LEN = 129;
const ZERO12 = new Uint8Array(12);
const EMPTY = new Uint8Array(0);
const T_UID = 1, T_PUBLICATION = 2, T_LOG_KEY = 3, T_DIRECTORY = 4;
const DAY = 86400;
const MAX_SIZE = (1n << 63n) - 1n;
const EM_DASH = "\u2014";

const ctx = labelledContext;
const byte = (n) => new Uint8Array([n]);
const labelledHkdf = (ikm, label, ...fields) => hkdf(ikm, null, ctx(label, ...fields), 32).okm;

// --- text encodings of the C2SP formats ----------------------------------------------------------

/** Standard base64, padded and canonical (one text per value). */
function b64stdDecode(s, step, what) {
  if (typeof s !== "string" || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new Reject("decode", step, `${what} is not standard base64`);
  }
  const bytes = new Uint8Array(Buffer.from(s, "base64"));
  if (Buffer.from(bytes).toString("base64") !== s) throw new Reject("decode", step, `${what} is not canonical base64`);
  return bytes;
}
const b64std = (b) => Buffer.from(b).toString("base64");

/** A decimal without leading zeros, at most 2^63 - 1. */
function decimal(s, step, what) {
  if (!/^(0|[1-9][0-9]{0,18})$/.test(s) || BigInt(s) > MAX_SIZE) throw new Reject("decode", step, `${what} is not a decimal`);
  return Number(s);
}

// --- step 1: entries ---------------------------------------------------------------------------

function decodeEntry(e, step = "1") {
  if (e.length !== ENTRY_LEN) throw new Reject("length", step, `an entry of ${e.length} bytes`);
  const type = e[0];
  if (type < 1 || type > 4) throw new Reject("decode", step, `entry type ${type}`);
  const payload = e.slice(17);
  const reserved = type === T_LOG_KEY ? payload.slice(96) : type === T_DIRECTORY ? payload.slice(40) : EMPTY;
  if (reserved.some((b) => b !== 0)) throw new Reject("decode", step, "reserved bytes are not zero");
  return { type, nonce: e.slice(1, 17), payload };
}

// --- step 2: record entries -------------------------------------------------------------------

const hashId = (subject, type, nonce) => labelledHkdf(utf8(subject), "hashchain-hash-id", byte(type), nonce);
const idKey = (subject, type, nonce) => labelledHkdf(utf8(subject), "hashchain-id-key", byte(type), nonce);
const recordIndexOf = (recordHash) => sha256(ctx("hashchain-record-index", recordHash));
const sealedHashAad = (type, recordIndex) => ctx("hashchain-sealed-hash", byte(type), recordIndex);

function buildRecordEntry(type, subject, recordHash, nonce, trace) {
  const hid = hashId(subject, type, nonce);
  const key = idKey(subject, type, nonce);
  const index = recordIndexOf(recordHash);
  const sealed = aesGcmSeal(key, ZERO12, recordHash, sealedHashAad(type, index));
  if (trace) {
    trace.inter("hash_id", hid); trace.inter("id_key", key);
    trace.inter("record_index", index); trace.inter("sealed_hash", sealed);
  }
  return concat(byte(type), nonce, hid, sealed, index);
}

/** The record hash of an entry of `subject`, or null if the entry is not the subject's. */
function openEntry(e, subject, type, step) {
  const d = decodeEntry(e, step);
  if (d.type !== type || !equalBytes(d.payload.slice(0, 32), hashId(subject, type, d.nonce))) return null;
  const index = d.payload.slice(80, 112);
  const opened = aesGcmOpen(idKey(subject, type, d.nonce), ZERO12, d.payload.slice(32, 80), sealedHashAad(type, index));
  if (!opened) throw new Reject("aead", step, "the sealed record hash does not open");
  if (!equalBytes(recordIndexOf(opened), index)) throw new Reject("binding", step, "the record hash is not the record index's");
  return { recordHash: opened, hashId: d.payload.slice(0, 32), recordIndex: index };
}

// --- step 3: the Merkle tree (RFC 9162 2.1) ---------------------------------------------------------

const leafHash = (entry) => sha256(byte(0), entry);
const nodeHash = (l, r) => sha256(byte(1), l, r);
const EMPTY_ROOT = sha256(EMPTY);
const split = (n) => { let k = 1; while (k * 2 < n) k *= 2; return k; };
const isPow2 = (n) => n > 0 && (n & (n - 1)) === 0;

/** MTH over leaf hashes, by the RFC's recursion. */
function mth(leaves) {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return leaves[0];
  const k = split(leaves.length);
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** PATH(m, D[n]) (2.1.3.1). */
function path(m, leaves) {
  const n = leaves.length;
  if (n <= 1) return [];
  const k = split(n);
  if (m < k) return [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))];
  return [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** SUBPROOF(m, D[n], b) (2.1.4.1). */
function subproof(m, leaves, b) {
  const n = leaves.length;
  if (m === n) return b ? [] : [mth(leaves)];
  const k = split(n);
  if (m <= k) return [...subproof(m, leaves.slice(0, k), b), mth(leaves.slice(k))];
  return [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}

function checkHash(h, what, step) {
  if (h.length !== 32) throw new Reject("length", step, `${what} of ${h.length} bytes`);
}

/** 2.1.3.2, with the running hash after each proof node (HC-36). */
function inclusionRoot(index, size, leaf, proof, step = "3") {
  checkHash(leaf, "a leaf hash", step);
  proof.forEach((p) => checkHash(p, "a proof node", step));
  if (!(index < size)) throw new Reject("proof", step, "the index is not below the size");
  if (proof.length > 64) throw new Reject("proof", step, "the proof is too long");
  let fn = BigInt(index), sn = BigInt(size - 1), r = leaf;
  const running = [];
  for (const p of proof) {
    if (sn === 0n) throw new Reject("proof", step, "the proof is longer than the path");
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
    running.push(r);
  }
  if (sn !== 0n) throw new Reject("proof", step, "the proof is shorter than the path");
  return { root: r, running };
}

function verifyInclusion(index, size, leaf, proof, root, step = "3") {
  const got = inclusionRoot(index, size, leaf, proof, step);
  if (!equalBytes(got.root, root)) throw new Reject("proof", step, "the proof does not lead to the root");
  return got.running;
}

/** 2.1.4.2, with the running (old, new) hashes; `root1` joins the path for a power of 2. */
function consistencyRoots(size1, size2, root1, proof, step = "3") {
  proof.forEach((p) => checkHash(p, "a proof node", step));
  if (proof.length > 64) throw new Reject("proof", step, "the proof is too long");
  if (proof.length === 0) throw new Reject("proof", step, "an empty proof between different sizes");
  const p = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = BigInt(size1 - 1), sn = BigInt(size2 - 1);
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = p[0], sr = p[0];
  const running = [[fr, sr]];
  for (const c of p.slice(1)) {
    if (sn === 0n) throw new Reject("proof", step, "the proof is longer than the path");
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr); sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
    running.push([fr, sr]);
  }
  if (sn !== 0n) throw new Reject("proof", step, "the proof is shorter than the path");
  return { fr, sr, running };
}

function verifyConsistency(size1, size2, root1, root2, proof, step = "3") {
  if (size2 < size1) throw new Reject("proof", step, "the new size is below the old");
  if (size1 === 0) throw new Reject("proof", step, "a proof from the empty tree proves nothing");
  if (size1 === size2) {
    if (proof.length) throw new Reject("proof", step, "equal sizes with a non-empty proof");
    if (!equalBytes(root1, root2)) throw new Reject("proof", step, "equal sizes with different roots");
    return null;
  }
  const got = consistencyRoots(size1, size2, root1, proof, step);
  if (!equalBytes(got.fr, root1) || !equalBytes(got.sr, root2)) {
    throw new Reject("proof", step, "the proof does not lead to both roots");
  }
  return got.running;
}

/** The roots of the perfect subtrees of D[0:size], largest first (a follower's state). */
class CompactRange {
  constructor(size = 0, nodes = []) { this.size = size; this.nodes = [...nodes]; }
  append(leaf) {
    this.nodes.push(leaf);
    for (let s = this.size; s & 1; s >>= 1) {
      const right = this.nodes.pop();
      this.nodes[this.nodes.length - 1] = nodeHash(this.nodes[this.nodes.length - 1], right);
    }
    this.size += 1;
  }
  root() {
    if (!this.nodes.length) return EMPTY_ROOT;
    let r = this.nodes[this.nodes.length - 1];
    for (let i = this.nodes.length - 2; i >= 0; i--) r = nodeHash(this.nodes[i], r);
    return r;
  }
}

// --- step 4: log keys and directory roots --------------------------------------------------------

const logKeyMessage = (origin, index, key) => ctx("hashchain-server-key", origin, u64be(index), key);

function verifyLogKeyEntry(d, origin, index, keyInForce, pinned, step) {
  if (d.type !== T_LOG_KEY) throw new Reject("decode", step, "not a log-key entry");
  const key = d.payload.slice(0, 32);
  if (index === 0 && pinned && !equalBytes(pinned, key)) throw new Reject("binding", step, "entry 0 introduces another key than the pinned one");
  const signer = index === 0 ? key : keyInForce;
  if (!signer) throw new Reject("link", step, "a rotation before any key");
  const verdict = ed25519Strict(signer, logKeyMessage(origin, index, key), d.payload.slice(32, 96));
  if (verdict !== "valid") throw new Reject(verdict, step, "the log-key entry's signature does not verify");
  return key;
}

// --- step 5: signed notes, checkpoints, cosignatures -------------------------------------------

const keyId = (name, type, pub) => sha256(utf8(name), byte(0x0a), byte(type), pub).slice(0, 4);
const nameOk = (name) => typeof name === "string" && name.length > 0 && !/[\s+]/u.test(name);

function parseVkey(text, step = "5") {
  const i = text.indexOf("+"), j = text.indexOf("+", i + 1);
  if (i < 0 || j < 0) throw new Reject("decode", step, "a vkey is name+id+key");
  const name = text.slice(0, i), id = text.slice(i + 1, j);
  const material = b64stdDecode(text.slice(j + 1), step, "vkey material");
  if (!nameOk(name) || !/^[0-9a-f]{8}$/.test(id) || material.length !== 33 || (material[0] !== 1 && material[0] !== 4)) {
    throw new Reject("decode", step, "a malformed vkey");
  }
  const v = { name, type: material[0], key: material.slice(1) };
  v.id = keyId(name, v.type, v.key);
  if (toHex(v.id) !== id) throw new Reject("binding", step, "the vkey's key ID is not its key's");
  return v;
}

function parseNote(bytes, step = "5") {
  if (bytes.length > 65536) throw new Reject("length", step, "a note over 64 KiB");
  let text;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch { throw new Reject("decode", step, "not UTF-8"); }
  if (/[\x00-\x09\x0b-\x1f\x7f]/.test(text)) throw new Reject("decode", step, "a control character");
  const at = text.lastIndexOf("\n\n");
  if (at < 0 || !text.endsWith("\n")) throw new Reject("decode", step, "no empty line before the signatures");
  const block = text.slice(at + 2);
  const lines = block ? block.slice(0, -1).split("\n") : [];
  if (!lines.length) throw new Reject("decode", step, "no signature line");
  if (lines.length > 100) throw new Reject("length", step, "more than 100 signatures");
  return { text: text.slice(0, at + 1), sigs: lines.map((l) => parseSigLine(l, step)) };
}

function parseSigLine(line, step) {
  const parts = line.split(" ");
  if (parts.length !== 3 || parts[0] !== EM_DASH || !nameOk(parts[1])) throw new Reject("decode", step, "a malformed signature line");
  const raw = b64stdDecode(parts[2], step, "a signature");
  if (raw.length <= 4) throw new Reject("length", step, "a signature without bytes");
  return { name: parts[1], id: raw.slice(0, 4), sig: raw.slice(4) };
}

const noteBytes = (text, sigs) => utf8(text + "\n" + sigs.map((s) => `${EM_DASH} ${s.name} ${b64std(concat(s.id, s.sig))}\n`).join(""));
const cosignatureMessage = (t, text) => utf8(`cosignature/v1\ntime ${t}\n${text}`);
const matches = (s, v) => s.name === v.name && equalBytes(s.id, v.id);

/** One known signature; a cosignature's timestamp, or null for a log signature. */
function verifyKnown(text, s, v, step) {
  if (v.type === 1) {
    const verdict = ed25519Strict(v.key, utf8(text), s.sig);
    if (verdict !== "valid") throw new Reject(verdict, step, "a known key's signature does not verify");
    return null;
  }
  if (s.sig.length !== 72) throw new Reject("length", step, "a cosignature is not 72 bytes");
  const t = Buffer.from(s.sig.slice(0, 8)).readBigUInt64BE();
  if (t > MAX_SIZE) throw new Reject("decode", step, "a cosignature timestamp above 2^63 - 1");
  const verdict = ed25519Strict(v.key, cosignatureMessage(t, text), s.sig.slice(8));
  if (verdict !== "valid") throw new Reject(verdict, step, "a cosignature does not verify");
  return Number(t);
}

function parseCheckpoint(text, step = "5") {
  if (!text.endsWith("\n")) throw new Reject("decode", step, "no final newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => !l)) throw new Reject("decode", step, "not origin, size, root");
  const size = decimal(lines[1], step, "the size");
  const root = b64stdDecode(lines[2], step, "the root hash");
  if (root.length !== 32) throw new Reject("length", step, "a root hash of another length");
  return { origin: lines[0], size, root };
}

/** Steps 5 and 8 (HC-38, HC-41): parse, origin, a log signature, the witness policy. */
function verifyCheckpoint(bytes, origin, logKeys, policy = null, now = null) {
  const n = parseNote(bytes, "5");
  const cp = parseCheckpoint(n.text, "5");
  if (cp.origin !== origin) throw new Reject("binding", "5", "a checkpoint of another origin");
  let known = 0;
  for (const s of n.sigs) for (const v of logKeys) if (matches(s, v)) { verifyKnown(n.text, s, v, "5"); known++; }
  if (!known) throw new Reject("signature", "5", "no signature by a trusted log key");
  const cosigned = [];
  let stale = false;
  if (policy) {
    for (const s of n.sigs) {
      for (const w of policy.witnesses) {
        if (!matches(s, w)) continue;
        const t = verifyKnown(n.text, s, w, "5");
        if (now !== null && t > now + 300) throw new Reject("expired", "8", "a cosignature from the future");
        if (now !== null && policy.maxAge !== null && now - t > policy.maxAge) { stale = true; continue; }
        if (!cosigned.includes(w.name)) cosigned.push(w.name);
      }
    }
    if (stale && cosigned.length < policy.quorum) throw new Reject("expired", "8", "too few recent cosignatures");
    if (cosigned.length < policy.quorum) throw new Reject("witness", "8", `${cosigned.length} of ${policy.quorum} cosignatures`);
  }
  return { cp, note: n, cosigned };
}

const policyOf = (inp) => ({ witnesses: inp.witnesses.map((v) => parseVkey(v)), quorum: inp.quorum, maxAge: inp.max_age ?? null });

// --- step 6: the witness ---------------------------------------------------------------------------

/** add-checkpoint, in the protocol's order (HC-40); returns the 200 answer. */
function witnessAdd(body, logKeys, state, name, seed, now) {
  const step = "6";
  const at = body.indexOf("\n\n");
  if (at < 0) throw new Reject("decode", step, "no empty line before the checkpoint");
  const head = body.slice(0, at).split("\n");
  if (!head[0].startsWith("old ")) throw new Reject("decode", step, "no old size line");
  const old = decimal(head[0].slice(4), step, "the old size");
  if (head.length - 1 > 63) throw new Reject("decode", step, "too many proof lines");
  const proof = head.slice(1).map((l) => b64stdDecode(l, step, "a proof line"));
  if (proof.some((h) => h.length !== 32)) throw new Reject("decode", step, "a proof line is not a hash");
  const n = parseNote(utf8(body.slice(at + 2)), step);
  const cp = parseCheckpoint(n.text, step);
  const keys = logKeys.filter((k) => k.name === cp.origin);
  if (!keys.length) throw new Reject("binding", step, "an origin the witness does not witness");
  let known = 0;
  for (const s of n.sigs) for (const v of keys) if (matches(s, v)) { verifyKnown(n.text, s, v, step); known++; }
  if (!known) throw new Reject("signature", step, "no signature by a trusted key of the log");
  if (old > cp.size) throw new Reject("params", step, "the old size is above the checkpoint's");
  const latest = state ? state.size : 0;
  if (old !== latest) throw new Reject("link", step, `the latest cosigned size is ${latest}`);
  if (cp.size === 0 && !equalBytes(cp.root, EMPTY_ROOT)) throw new Reject("proof", step, "size 0 without the empty root");
  if (old === 0) {
    if (proof.length) throw new Reject("proof", step, "a proof from size 0");
  } else {
    verifyConsistency(state.size, cp.size, fromHex(state.root), cp.root, proof, step);
  }
  const pub = ed25519Public(seed);
  const sig = ed25519Sign(seed, cosignatureMessage(now, n.text));
  const ts = Buffer.alloc(8); ts.writeBigUInt64BE(BigInt(now));
  return { line: `${EM_DASH} ${name} ${b64std(concat(keyId(name, 4, pub), ts, sig))}\n`, size: cp.size, root: cp.root };
}

// --- step 8: following the log, fork proofs -----------------------------------------------------------

/** One sync (HC-9..HC-12, HC-50): checkpoint, consistency, entries, root. */
function follow(inp) {
  const step = "8";
  const trusted = inp.trusted;
  let keys = (trusted ? trusted.log_keys : inp.log_keys).map(fromHex);
  const verifiers = keys.map((k) => ({ name: inp.origin, type: 1, key: k, id: keyId(inp.origin, 1, k) }));
  const { cp, note } = (() => {
    try { return verifyCheckpoint(utf8(inp.checkpoint), inp.origin, verifiers); } catch (e) {
      if (e instanceof Reject) throw new Reject(e.cls, step, e.message);
      throw e;
    }
  })();
  let consistent = !trusted || cp.size === trusted.size;
  if (trusted) {
    if (cp.size < trusted.size) throw new Reject("replay", step, "a checkpoint behind the trusted one");
    if (cp.size === trusted.size && !equalBytes(cp.root, fromHex(trusted.root))) throw new Reject("fork", step, "one size, two roots");
  }
  const c = inp.consistency;
  if (c) {
    if (!trusted) throw new Reject("params", step, "no trusted checkpoint");
    if (c.size1 !== trusted.size || c.size2 !== cp.size) throw new Reject("binding", step, "a proof for other sizes");
    const root1 = fromHex(c.root1);
    try { verifyConsistency(c.size1, c.size2, root1, cp.root, c.proof.map(fromHex)); } catch (e) {
      if (e instanceof Reject) throw new Reject(e.cls, step, e.message);
      throw e;
    }
    if (!equalBytes(root1, fromHex(trusted.root))) throw new Reject("fork", step, "the log's tree has another root at the trusted size");
    consistent = true;
  }
  const range = trusted ? new CompactRange(trusted.size, trusted.compact.map(fromHex)) : new CompactRange();
  for (const hex of inp.entries) {
    const e = fromHex(hex);
    const index = range.size;
    if (index >= cp.size) throw new Reject("link", step, "more entries than the checkpoint");
    const d = decodeEntry(e, step);
    if (index === 0 && d.type !== T_LOG_KEY) throw new Reject("decode", step, "entry 0 is not a log key");
    if (d.type === T_LOG_KEY) {
      const key = verifyLogKeyEntry(d, inp.origin, index, keys[keys.length - 1], index === 0 ? keys[0] : null, step);
      if (!keys.some((k) => equalBytes(k, key))) keys.push(key);
    }
    range.append(leafHash(e));
  }
  if (!consistent) throw new Reject("proof", step, "no consistency proof checked");
  if (range.size !== cp.size) throw new Reject("link", step, `entries end at ${range.size}, the checkpoint at ${cp.size}`);
  if (!equalBytes(range.root(), cp.root)) throw new Reject("proof", step, "the entries do not hash to the root");
  const newest = keys[keys.length - 1];
  if (note.sigs.some((s) => s.name === inp.origin && equalBytes(s.id, keyId(inp.origin, 1, newest)))) keys = [newest];
  return { size: cp.size, root: cp.root, compact: range.nodes, log_keys: keys, checkpoint: inp.checkpoint };
}

function verifyForkProof(inp) {
  const f = checkMembers(inp.fork_proof, ["checkpoints", "old_root", "proof"], [], "8", "fork_proof");
  const keys = inp.log_keys.map((v) => parseVkey(v));
  const a = verifyCheckpoint(utf8(f.checkpoints[0]), inp.origin, keys).cp;
  const b = verifyCheckpoint(utf8(f.checkpoints[1]), inp.origin, keys).cp;
  const oldRoot = b64urlExact(f.old_root, 32, "8", "old_root");
  const proof = f.proof.map((h) => b64urlExact(h, 32, "8", "proof"));
  if (a.size > b.size) throw new Reject("params", "8", "the larger checkpoint first");
  if (a.size === b.size) {
    if (proof.length || !equalBytes(oldRoot, b.root)) throw new Reject("proof", "3", "equal sizes: empty proof, old_root the second root");
  } else {
    verifyConsistency(a.size, b.size, oldRoot, b.root, proof);
  }
  if (equalBytes(oldRoot, a.root)) throw new Reject("link", "8", "consistent: no fork");
  return { size: a.size, roots: [a.root, oldRoot] };
}

// --- steps 9-13: identities, UIDs, replies, the repository, KeyInits ----------------------------------

/** HC-14: an identity in mapped form, of a served domain (when domains are given). */
function checkIdentity(identity, domains, step) {
  const mapped = mapIdentity(identity, step);
  if (mapped !== identity) throw new Reject("decode", step, `identity ${JSON.stringify(identity)} is not in mapped form`);
  const domain = identity.split("@")[1];
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/.test(domain)) {
    throw new Reject("decode", step, `domain ${domain} is not a lowercase DNS name`);
  }
  if (domains && !domains.includes(domain)) throw new Reject("binding", step, `domain ${domain} is not served`);
}

/** The UID wire format; decode, length and point failures (HC-15). */
function decodeUid(uid, step = "10") {
  checkMembers(uid, ["identity", "msg_count", "not_before", "not_after", "sigkey", "sigescrow",
    "public_keys", "last_checkpoint", "signatures"], ["previous"], step, "uid");
  if (typeof uid.identity !== "string") throw new Reject("decode", step, "identity is not a string");
  checkIdentity(uid.identity, null, step);
  if (!isInteger(uid.msg_count) || uid.msg_count < 0 || uid.msg_count > 0xffffffff) throw new Reject("decode", step, "msg_count");
  for (const k of ["not_before", "not_after"]) if (!isInteger(uid[k]) || uid[k] < 0) throw new Reject("decode", step, k);
  checkMembers(uid.public_keys, ["x25519"], [], step, "public_keys");
  checkMembers(uid.last_checkpoint, ["size", "root"], [], step, "last_checkpoint");
  checkMembers(uid.signatures, ["sigkey"], ["sigescrow", "previous"], step, "signatures");
  const last = uid.last_checkpoint;
  if (!isInteger(last.size) || last.size < 0) throw new Reject("decode", step, "last_checkpoint.size");
  const u = {
    identity: uid.identity, msgCount: uid.msg_count, notBefore: uid.not_before, notAfter: uid.not_after,
    sigkey: b64urlExact(uid.sigkey, 32, step, "sigkey"), sigescrow: b64urlExact(uid.sigescrow, 32, step, "sigescrow"),
    x25519: b64urlExact(uid.public_keys.x25519, 32, step, "x25519"), lastSize: last.size,
    lastRoot: b64urlExact(last.root, 32, step, "last_checkpoint.root"),
    previous: "previous" in uid ? b64urlExact(uid.previous, 32, step, "previous") : null,
  };
  const sigs = { sigkey: b64urlExact(uid.signatures.sigkey, 64, step, "signatures.sigkey"), sigescrow: null, previous: null };
  if ("sigescrow" in uid.signatures) sigs.sigescrow = b64urlExact(uid.signatures.sigescrow, 64, step, "signatures.sigescrow");
  if ("previous" in uid.signatures) {
    const p = checkMembers(uid.signatures.previous, ["key", "signature"], [], step, "signatures.previous");
    if (p.key !== "sigkey" && p.key !== "sigescrow") throw new Reject("decode", step, "signatures.previous.key");
    sigs.previous = { key: p.key, signature: b64urlExact(p.signature, 64, step, "signatures.previous.signature") };
  }
  const problem = x25519PointProblem(u.x25519);
  if (problem) throw new Reject("point", step, `X25519 key: ${problem}`);
  u.sigs = sigs;
  u.content = ctx("hashchain-uid", u.identity, u32be(u.msgCount), u64be(u.notBefore), u64be(u.notAfter),
    u.sigkey, u.sigescrow, u.x25519, u64be(u.lastSize), u.lastRoot, u.previous ?? EMPTY);
  u.recordHash = sha256(ctx("hashchain-record-hash", byte(T_UID), u.content, sigs.sigkey,
    sigs.sigescrow ?? EMPTY, sigs.previous ? sigs.previous.key : "", sigs.previous ? sigs.previous.signature : EMPTY));
  return u;
}

const uidSigMessage = (role, content) => ctx("hashchain-uid-signature", role, content);

function verifySig(key, role, content, signature, what, step = "10") {
  if (!signature) throw new Reject("signature", step, `${what} signature is missing`);
  const verdict = ed25519Strict(key, uidSigMessage(role, content), signature);
  if (verdict !== "valid") throw new Reject(verdict, step, `${what} signature does not verify (${verdict})`);
}

/** HC-18, with `now` null for a client reading history (no time to compare to). */
function checkValidity(u, now, step = "10") {
  if (!(u.notAfter > u.notBefore) || u.notAfter - u.notBefore > 366 * DAY) throw new Reject("params", step, "validity");
  if (now !== null && (now < u.notBefore || now >= u.notAfter)) throw new Reject("expired", step, `not valid at ${now}`);
}

/** HC-16: a creation, in the chapter's order of checks. */
function checkCreation(u, domains, now) {
  checkIdentity(u.identity, domains, "10");
  if (u.msgCount !== 0 || u.previous || u.sigs.previous) throw new Reject("binding", "10", "a creation has msg_count 0 and no previous");
  if (equalBytes(u.sigkey, u.sigescrow)) throw new Reject("binding", "10", "SIGKEY and SIGESCROW are one key");
  if (!u.sigs.sigescrow) throw new Reject("signature", "10", "a creation without a SIGESCROW signature");
  verifySig(u.sigkey, "sigkey", u.content, u.sigs.sigkey, "the SIGKEY");
  verifySig(u.sigescrow, "sigescrow", u.content, u.sigs.sigescrow, "the SIGESCROW");
  checkValidity(u, now);
}

/** HC-17: an update of `prev`, in the chapter's order of checks. */
function checkUpdate(u, prev, domains, now) {
  checkIdentity(u.identity, domains, "10");
  if (u.identity !== prev.identity) throw new Reject("binding", "10", "an update changes the identity");
  if (equalBytes(u.sigkey, u.sigescrow)) throw new Reject("binding", "10", "SIGKEY and SIGESCROW are one key");
  if (u.msgCount !== prev.msgCount + 1) throw new Reject("replay", "10", `msg_count ${u.msgCount} after ${prev.msgCount}`);
  if (!u.previous || !equalBytes(u.previous, prev.recordHash)) throw new Reject("link", "10", "previous is not the current UID");
  verifySig(u.sigkey, "sigkey", u.content, u.sigs.sigkey, "the SIGKEY");
  const by = u.sigs.previous;
  if (!by) throw new Reject("signature", "10", "not signed by a key of the current UID");
  const escrowChanged = !equalBytes(u.sigescrow, prev.sigescrow);
  if (escrowChanged && by.key !== "sigescrow") throw new Reject("authz", "10", "a new SIGESCROW needs the current SIGESCROW");
  verifySig(by.key === "sigkey" ? prev.sigkey : prev.sigescrow, `previous-${by.key}`, u.content, by.signature, "the previous");
  if (escrowChanged || u.sigs.sigescrow) verifySig(u.sigescrow, "sigescrow", u.content, u.sigs.sigescrow, "the new SIGESCROW");
  checkValidity(u, now);
}

function uidIntermediates(u, trace) {
  trace.inter("content", u.content);
  trace.inter("sigkey_message", uidSigMessage("sigkey", u.content));
  trace.inter("sigescrow_message", uidSigMessage("sigescrow", u.content));
  trace.inter("record_hash", u.recordHash);
  trace.inter("record_index", recordIndexOf(u.recordHash));
}

async function verifyUidCreate(inp, trace) {
  const u = decodeUid(inp.uid);
  if (inp.producer) {
    const p = inp.producer;
    trace.expect("producer: sigkey", equalBytes(ed25519Public(fromHex(p.sigkey_seed)), u.sigkey));
    trace.expect("producer: sigescrow", equalBytes(ed25519Public(fromHex(p.sigescrow_seed)), u.sigescrow));
    trace.expect("producer: signatures.sigkey", equalBytes(ed25519Sign(fromHex(p.sigkey_seed), uidSigMessage("sigkey", u.content)), u.sigs.sigkey));
  }
  checkCreation(u, inp.domains, inp.now);
  uidIntermediates(u, trace);
  trace.out("record_hash", u.recordHash);
}

async function verifyUidUpdate(inp, trace) {
  const u = decodeUid(inp.uid);
  const prev = decodeUid(inp.previous);
  checkUpdate(u, prev, inp.domains, inp.now);
  uidIntermediates(u, trace);
  trace.inter("previous_message", uidSigMessage(`previous-${u.sigs.previous.key}`, u.content));
  trace.out("record_hash", u.recordHash);
}

/** A C2SP tlog-proof: header, optional extra, index, proof lines, empty line, checkpoint. */
function parseTlogProof(text, step = "11") {
  const at = text.indexOf("\n\n");
  if (at < 0) throw new Reject("decode", step, "no empty line before the checkpoint");
  const head = text.slice(0, at).split("\n");
  if (head[0] !== "c2sp.org/tlog-proof@v1") throw new Reject("decode", step, "not a tlog-proof");
  const rest = head.slice(1);
  if (rest.length && rest[0].startsWith("extra ")) rest.shift();
  if (!rest.length || !rest[0].startsWith("index ")) throw new Reject("decode", step, "no index line");
  const index = decimal(rest[0].slice(6), step, "the index");
  const proof = rest.slice(1).map((l) => b64stdDecode(l, step, "a proof line"));
  if (proof.some((h) => h.length !== 32)) throw new Reject("length", step, "a proof line is not a hash");
  return { index, proof, checkpoint: utf8(text.slice(at + 2)) };
}

/** HC-21, client side, in order: this UID, the checkpoint, the index, inclusion, the entry. */
async function verifyUidReply(inp, trace) {
  const step = "11";
  const u = decodeUid(inp.uid);
  const r = checkMembers(inp.reply, ["uid", "index", "entry", "record_hash", "proof"], [], step, "reply");
  if (!isInteger(r.index) || r.index < 0) throw new Reject("decode", step, "index");
  const entry = b64urlExact(r.entry, ENTRY_LEN, step, "entry");
  const recordHash = b64urlExact(r.record_hash, 32, step, "record_hash");
  const proof = parseTlogProof(r.proof, step);
  if (!equalBytes(recordHash, u.recordHash)) throw new Reject("binding", step, "a reply for another UID");
  const { cp } = verifyCheckpoint(proof.checkpoint, inp.origin, inp.log_keys.map((v) => parseVkey(v)),
    { witnesses: inp.witnesses.map((v) => parseVkey(v)), quorum: inp.quorum, maxAge: null }, inp.now);
  if (proof.index !== r.index) throw new Reject("binding", step, "the proof is for another index");
  const leaf = trace.inter("leaf_hash", leafHash(entry));
  verifyInclusion(r.index, cp.size, leaf, proof.proof, cp.root);
  trace.inter("root", cp.root);
  const opened = openEntry(entry, u.identity, T_UID, step);
  if (!opened || !equalBytes(opened.recordHash, u.recordHash)) throw new Reject("binding", step, "the entry records another identity or UID");
  trace.out("hash_id", opened.hashId);
  trace.out("record_index", opened.recordIndex);
  trace.out("size", cp.size);
}

const uidSealKey = (recordHash) => labelledHkdf(recordHash, "hashchain-uid-seal-key");

function canonicalJson(v) {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

async function openSealedUid(inp, trace) {
  const step = "12";
  const recordHash = fromHex(inp.record_hash);
  const key = trace.inter("key", uidSealKey(recordHash));
  const plaintext = aesGcmOpen(key, ZERO12, fromHex(inp.sealed_uid), ctx("hashchain-uid-seal", recordIndexOf(recordHash)));
  if (!plaintext) throw new Reject("aead", step, "the sealed UID does not open");
  trace.inter("plaintext", plaintext);
  let uid;
  try { uid = JSON.parse(Buffer.from(plaintext).toString("utf8")); } catch { throw new Reject("decode", step, "not JSON"); }
  const u = decodeUid(uid, step);
  if (!equalBytes(u.recordHash, recordHash)) throw new Reject("binding", step, "the UID does not hash to the record hash");
  trace.expect("the plaintext is canonical JSON", canonicalJson(uid) === Buffer.from(plaintext).toString("utf8"));
  trace.out("uid", uid);
}

/** HC-13, HC-48, HC-49: one creation, then updates, each of the one before. */
async function identityHistory(inp, trace) {
  const step = "9";
  const byHash = new Map(inp.uids.map((w) => { const u = decodeUid(w); return [toHex(u.recordHash), u]; }));
  const items = [];
  inp.entries.forEach((hex, index) => {
    const found = openEntry(fromHex(hex), inp.identity, T_UID, step);
    if (!found) return;
    const u = byHash.get(toHex(found.recordHash));
    if (!u) throw new Reject("binding", step, "no UID for an entry");
    if (u.identity !== inp.identity) throw new Reject("binding", step, "a UID of another identity");
    const creation = u.previous === null && u.msgCount === 0;
    if (!items.length) {
      if (!creation) throw new Reject("history", step, "the first UID is not a creation");
      checkCreation(u, null, null);
    } else if (creation) {
      throw new Reject("history", step, `a second creation at index ${index}`);
    } else {
      checkUpdate(u, items[items.length - 1].u, null, null);
    }
    items.push({ index, u });
  });
  if (inp.made) {
    const made = new Set(inp.made);
    for (const it of items) if (!made.has(toHex(it.u.recordHash))) throw new Reject("history", step, `entry ${it.index} not made by the owner`);
  }
  if (!items.length) throw new Reject("binding", step, "no UID");
  trace.out("indexes", items.map((i) => i.index));
  trace.out("current", items[items.length - 1].u.recordHash);
}

async function verifyKeyinit(inp, trace) {
  const step = "13";
  const k = checkMembers(inp.keyinit, ["identity", "sigkey", "key_id", "not_before", "not_after", "x25519", "signature"], [], step, "keyinit");
  if (typeof k.identity !== "string") throw new Reject("decode", step, "identity");
  for (const f of ["not_before", "not_after"]) if (!isInteger(k[f]) || k[f] < 0) throw new Reject("decode", step, f);
  const sigkey = b64urlExact(k.sigkey, 32, step, "sigkey");
  const keyIdBytes = b64urlExact(k.key_id, 16, step, "key_id");
  const x25519 = b64urlExact(k.x25519, 32, step, "x25519");
  const signature = b64urlExact(k.signature, 64, step, "signature");
  const problem = x25519PointProblem(x25519);
  if (problem) throw new Reject("point", step, `one-time key: ${problem}`);
  if (k.identity !== inp.identity) throw new Reject("binding", step, "a KeyInit of another identity");
  if (!equalBytes(sigkey, fromHex(inp.current_sigkey))) throw new Reject("authz", step, "not the current SIGKEY");
  const message = trace.inter("message", ctx("hashchain-keyinit", k.identity, sigkey, keyIdBytes,
    u64be(k.not_before), u64be(k.not_after), x25519));
  const verdict = ed25519Strict(sigkey, message, signature);
  if (verdict !== "valid") throw new Reject(verdict, step, "the KeyInit signature does not verify");
  if (!(k.not_after > k.not_before) || k.not_after - k.not_before > 90 * DAY) throw new Reject("params", step, "lifetime");
  if (inp.now >= k.not_after) throw new Reject("expired", step, `expired at ${inp.now}`);
}

async function verifyFlush(inp, trace) {
  const step = "13";
  const r = checkMembers(inp.request, ["identity", "timestamp", "nonce", "signature"], [], step, "flush");
  if (typeof r.identity !== "string") throw new Reject("decode", step, "identity");
  if (!isInteger(r.timestamp) || r.timestamp < 0) throw new Reject("decode", step, "timestamp");
  const nonce = b64urlExact(r.nonce, 16, step, "nonce");
  const signature = b64urlExact(r.signature, 64, step, "signature");
  if (r.identity !== inp.identity) throw new Reject("binding", step, "a flush of another identity");
  const message = trace.inter("message", ctx("hashchain-keyinit-flush", inp.origin, r.identity, u64be(r.timestamp), nonce));
  const verdict = ed25519Strict(fromHex(inp.current_sigkey), message, signature);
  if (verdict !== "valid") throw new Reject(verdict, step, "not signed by the current SIGKEY");
  if (Math.abs(inp.now - r.timestamp) > 300) throw new Reject("expired", step, "more than 300 s away");
  if (inp.nonce_seen) throw new Reject("replay", step, "a nonce used before");
}

// --- the reference log and the accumulated vector -------------------------------------------------

const SUBJECTS = ["alice@example.org", "bob@example.org", "alice/notes.example", "carol@example.org"];

/** The log the accumulated case describes: entry 0, then records from the DRBG. */
function makeLog(label, count, origin) {
  const d = new Drbg(label);
  const seed = d.take(32);
  const nonce0 = d.take(16);
  const key = ed25519Public(seed);
  const entry0 = concat(byte(T_LOG_KEY), nonce0, key, ed25519Sign(seed, logKeyMessage(origin, 0, key)), new Uint8Array(16));
  const entries = [entry0];
  for (let i = 1; i < count; i++) {
    const subject = SUBJECTS[i % 4];
    const type = subject.includes("/") ? T_PUBLICATION : T_UID;
    const recordHash = d.take(32);
    const nonce = d.take(16);
    entries.push(buildRecordEntry(type, subject, recordHash, nonce, null));
  }
  return { seed, entries };
}

function signedCheckpoint(origin, size, root, seed) {
  const text = `${origin}\n${size}\n${b64std(root)}\n`;
  const sig = ed25519Sign(seed, utf8(text));
  return Buffer.from(noteBytes(text, [{ name: origin, id: keyId(origin, 1, ed25519Public(seed)), sig }])).toString("utf8");
}

// --- operations ---------------------------------------------------------------------------------

const operations = {
  "build-record-entry": {
    async run(inp, trace) {
      const e = buildRecordEntry(inp.entry_type, inp.subject, fromHex(inp.record_hash), fromHex(inp.nonce), trace);
      trace.out("entry", e);
      trace.out("leaf_hash", leafHash(e));
    },
  },
  "build-log-key-entry": {
    async run(inp, trace) {
      const key = trace.inter("new_key", ed25519Public(fromHex(inp.new_key_seed)));
      const message = trace.inter("message", logKeyMessage(inp.origin, inp.index, key));
      const sig = trace.inter("signature", ed25519Sign(fromHex(inp.signer_seed), message));
      const e = concat(byte(T_LOG_KEY), fromHex(inp.nonce), key, sig, new Uint8Array(16));
      verifyLogKeyEntry(decodeEntry(e), inp.origin, inp.index, ed25519Public(fromHex(inp.signer_seed)), null, "4");
      trace.out("entry", e);
      trace.out("leaf_hash", leafHash(e));
    },
  },
  "build-directory-entry": {
    async run(inp, trace) {
      const e = concat(byte(T_DIRECTORY), fromHex(inp.nonce), u64be(inp.epoch), fromHex(inp.root), new Uint8Array(72));
      decodeEntry(e);
      trace.out("entry", e);
      trace.out("leaf_hash", leafHash(e));
    },
  },
  "decode-entry": {
    async run(inp, trace) {
      trace.out("type", decodeEntry(fromHex(inp.entry)).type);
    },
  },
  "merkle-tree": {
    async run(inp, trace) {
      const leaves = inp.entries.map((e) => leafHash(fromHex(e)));
      trace.inter("leaf_hashes", leaves);
      const levels = [leaves];
      while (levels[levels.length - 1].length > 1) {
        const below = levels[levels.length - 1];
        const up = [];
        for (let i = 0; i + 1 < below.length; i += 2) up.push(nodeHash(below[i], below[i + 1]));
        levels.push(up);
      }
      trace.inter("levels", levels);
      trace.out("roots", leaves.map((_, i) => mth(leaves.slice(0, i + 1))));
      trace.out("empty_root", EMPTY_ROOT);
      const inclusion = [], consistency = [];
      for (let n = 1; n <= 8; n++) for (let i = 0; i < n; i++) inclusion.push({ index: i, size: n, proof: path(i, leaves.slice(0, n)) });
      for (let n = 1; n <= 8; n++) for (let m = 1; m <= n; m++) consistency.push({ size1: m, size2: n, proof: subproof(m, leaves.slice(0, n), true) });
      trace.out("inclusion", inclusion);
      trace.out("consistency", consistency);
    },
  },
  "verify-inclusion": {
    async run(inp, trace) {
      trace.inter("path", verifyInclusion(inp.index, inp.size, fromHex(inp.leaf_hash), inp.proof.map(fromHex), fromHex(inp.root)));
    },
  },
  "verify-consistency": {
    async run(inp, trace) {
      const running = verifyConsistency(inp.size1, inp.size2, fromHex(inp.root1), fromHex(inp.root2), inp.proof.map(fromHex));
      if (running) trace.inter("path", running);
    },
  },
  "sign-checkpoint": {
    async run(inp, trace) {
      const seed = fromHex(inp.key_seed);
      const text = trace.inter("text", `${inp.origin}\n${inp.size}\n${b64std(fromHex(inp.root))}\n`);
      trace.inter("key_id", keyId(inp.origin, 1, ed25519Public(seed)));
      trace.inter("signature", ed25519Sign(seed, utf8(text)));
      trace.out("note", signedCheckpoint(inp.origin, inp.size, fromHex(inp.root), seed));
    },
  },
  cosign: {
    async run(inp, trace) {
      const seed = fromHex(inp.seed);
      const message = cosignatureMessage(inp.timestamp, inp.checkpoint);
      trace.inter("message", Buffer.from(message).toString("utf8"));
      const id = trace.inter("key_id", keyId(inp.name, 4, ed25519Public(seed)));
      const ts = Buffer.alloc(8); ts.writeBigUInt64BE(BigInt(inp.timestamp));
      trace.out("line", `${EM_DASH} ${inp.name} ${b64std(concat(id, ts, ed25519Sign(seed, message)))}\n`);
    },
  },
  "verify-checkpoint": {
    async run(inp, trace) {
      const got = verifyCheckpoint(utf8(inp.note), inp.origin, inp.log_keys.map((v) => parseVkey(v)),
        inp.quorum ? policyOf(inp) : null, inp.now);
      trace.out("origin", got.cp.origin);
      trace.out("size", got.cp.size);
      trace.out("root", got.cp.root);
      trace.out("cosigned_by", got.cosigned);
    },
  },
  "witness-add-checkpoint": {
    async run(inp, trace) {
      const got = witnessAdd(inp.body, inp.log_keys.map((v) => parseVkey(v)), inp.state, inp.name, fromHex(inp.seed), inp.now);
      trace.out("status", 200);
      trace.out("body", got.line);
      trace.out("state", { size: got.size, root: got.root });
    },
  },
  "follow-log": {
    async run(inp, trace) {
      const s = follow(inp);
      for (const k of ["size", "root", "compact", "log_keys", "checkpoint"]) trace.out(k, s[k]);
    },
  },
  "verify-fork-proof": {
    async run(inp, trace) {
      const got = verifyForkProof(inp);
      trace.out("size", got.size);
      trace.out("roots", got.roots);
    },
  },
  "accumulated-log": {
    async run(inp, trace) {
      const { seed, entries } = makeLog(inp.label, inp.count, inp.origin);
      const digest = crypto.createHash("sha256");
      const range = new CompactRange();
      for (const e of entries) { digest.update(e); range.append(leafHash(e)); }
      trace.out("entries_digest", new Uint8Array(digest.digest()));
      trace.out("root", range.root());
      trace.out("compact", range.nodes);
      trace.out("checkpoint", signedCheckpoint(inp.origin, entries.length, range.root(), seed));
    },
  },
  "verify-uid-create": { run: verifyUidCreate },
  "verify-uid-update": { run: verifyUidUpdate },
  "verify-uid-reply": { run: verifyUidReply },
  "open-sealed-uid": { run: openSealedUid },
  "identity-history": { run: identityHistory },
  "verify-keyinit": { run: verifyKeyinit },
  "verify-flush": { run: verifyFlush },
};

export default {
  hashchain: {
    header: { schema: "urn:keyflows:schema:vectors:hashchain:1", flow: "hashchain", profile: "v1" },
    operations,
  },
  ...mute,
};

