// The key directory of the hashchain flow (docs/flows/hashchain.rst, section "Key
// directory", steps 14-23; HC-80 .. HC-99), written from that section: VRF positions, value
// hashes and chained leaves, the compressed sparse Merkle map, epoch commitments in the
// transparency log, lookup answers, owner monitoring and histories.

import crypto from "node:crypto";
import {
  Drbg, Reject, ascii, b64urlDecode, b64urlExact, checkIdentifier, checkMembers, concat,
  ed25519Verify, equalBytes, fromHex, isInteger, isObject, labelledContext, sha256, toHex,
  u32be, u64be, utf8,
} from "../lib/core.mjs";
import * as ecvrf from "../lib/ecvrf.mjs";
import { publicViewBytes } from "./keypair-publication.mjs";
import { mapIdentity } from "./hashchain-mute.mjs";

const S = { label: "14", value: "15", leaf: "16", map: "17", epoch: "18", wire: "19",
  lookup: "20", monitor: "21", history: "22" };
const ZERO = new Uint8Array(32);
const MAX_U63 = 2n ** 63n - 1n;
const CLOCK_SKEW = 300;

// --- step 14: labels and positions ---------------------------------------------------------

function labelFields(label, step) {
  if (label.kind === "keypair" || label.kind === "devices") {
    return [checkIdentifier(label.user_id, step, "user_id"), checkIdentifier(label.client_id, step, "client_id")];
  }
  if (label.kind === "uid") {
    if (mapIdentity(label.identity, step) !== label.identity) throw new Reject("decode", step, "identity not in mapped form");
    return [label.identity];
  }
  throw new Reject("decode", step, `unknown kind ${JSON.stringify(label.kind)}`);
}
const alphaOf = (label, step = S.label) => labelledContext("directory-label", label.kind, ...labelFields(label, step));
const sameLabel = (a, b) => a.kind === b.kind && a.user_id === b.user_id && a.client_id === b.client_id && a.identity === b.identity;
const describe = (l) => (l.kind === "uid" ? `uid ${l.identity}` : `${l.kind} ${l.user_id}/${l.client_id}`);

async function vrfProve(inp, trace) {
  const sk = fromHex(inp.vrf_secret_key);
  const alpha = "label" in inp ? alphaOf(inp.label) : fromHex(inp.alpha);
  const { pi, beta, h, publicKey } = ecvrf.prove(sk, alpha);
  trace.inter("alpha", alpha);
  trace.inter("h", h);
  trace.out("vrf_public_key", publicKey);
  trace.out("proof", pi);
  trace.out("beta", beta);
  if ("label" in inp) trace.out("position", beta.slice(0, 32));
  ecvrf.verify(publicKey, pi, alpha, S.label);
}

async function vrfVerify(inp, trace) {
  const beta = ecvrf.verify(fromHex(inp.vrf_public_key), fromHex(inp.proof), alphaOf(inp.label), S.label);
  trace.out("position", beta.slice(0, 32));
}

// --- steps 15 and 16: values and leaves -------------------------------------------------------

function uidRecordHash(uid, step) {
  checkMembers(uid, ["identity", "msg_count", "not_before", "not_after", "sigkey", "sigescrow",
    "public_keys", "last_checkpoint", "signatures"], ["previous"], step, "uid");
  const key = (v, what) => b64urlExact(v, 32, step, what);
  const sig = (v, what) => b64urlExact(v, 64, step, what);
  const uint = (v, what) => { if (!isInteger(v) || v < 0) throw new Reject("decode", step, `${what} is not an unsigned integer`); return v; };
  checkMembers(uid.public_keys, ["x25519"], [], step, "uid.public_keys");
  checkMembers(uid.last_checkpoint, ["size", "root"], [], step, "uid.last_checkpoint");
  const sigs = checkMembers(uid.signatures, ["sigkey"], ["sigescrow", "previous"], step, "uid.signatures");
  const content = labelledContext("hashchain-uid", ascii(uid.identity), u32be(uint(uid.msg_count, "msg_count")),
    u64be(uint(uid.not_before, "not_before")), u64be(uint(uid.not_after, "not_after")),
    key(uid.sigkey, "sigkey"), key(uid.sigescrow, "sigescrow"), key(uid.public_keys.x25519, "x25519"),
    u64be(uint(uid.last_checkpoint.size, "size")), key(uid.last_checkpoint.root, "root"),
    "previous" in uid ? key(uid.previous, "previous") : new Uint8Array(0));
  let role = "", previous = new Uint8Array(0);
  if ("previous" in sigs) {
    checkMembers(sigs.previous, ["key", "signature"], [], step, "signatures.previous");
    role = sigs.previous.key;
    previous = sig(sigs.previous.signature, "signatures.previous.signature");
  }
  return sha256(labelledContext("hashchain-record-hash", Uint8Array.of(0x01), content,
    sig(sigs.sigkey, "sigkey"), "sigescrow" in sigs ? sig(sigs.sigescrow, "sigescrow") : new Uint8Array(0),
    ascii(role), previous));
}

/** HC-82: the value bytes of a value as an answer carries it, checked for the label. */
function valueBytes(label, value, step) {
  if (value === null) return new Uint8Array(0);
  if (label.kind === "keypair") {
    try {
      return publicViewBytes(value, label.user_id, label.client_id);
    } catch (e) {
      if (e instanceof Reject) throw new Reject(e.cls, step, e.message);
      throw e;
    }
  }
  if (label.kind === "uid") {
    if (!isObject(value)) throw new Reject("decode", step, "a UID is an object");
    if (value.identity !== label.identity) throw new Reject("binding", step, "the UID is for another identity");
    return uidRecordHash(value, step);
  }
  if (typeof value !== "string") throw new Reject("decode", step, "a device list is a base64url string");
  const bytes = b64urlDecode(value, step, "device list");
  const prefix = labelledContext("envelope-device-list", label.user_id, label.client_id);
  if (!equalBytes(bytes.slice(0, prefix.length), prefix)) throw new Reject("binding", step, "the device list is for another user or application");
  return bytes;
}
const valueHash = (kind, bytes) => sha256(labelledContext("directory-value", kind, bytes));

/** HC-83: a version's leaf value. */
function leafValue(version, epoch, vh, previous, step) {
  if (version === 1 && !equalBytes(previous, ZERO)) throw new Reject("link", step, "version 1 chains to nothing");
  return sha256(labelledContext("directory-leaf", u64be(version), u64be(epoch), vh, previous));
}

async function leafChain(inp, trace) {
  const bytes = [], hashes = [], leaves = [];
  let previous = ZERO;
  inp.versions.forEach((v, i) => {
    const b = valueBytes(inp.label, v.value, S.value);
    const h = valueHash(inp.label.kind, b);
    previous = leafValue(i + 1, v.epoch, h, previous, S.leaf);
    bytes.push(b); hashes.push(h); leaves.push(previous);
  });
  trace.inter("value_bytes", bytes);
  trace.inter("value_hashes", hashes);
  trace.out("leaf_values", leaves);
}

// --- step 17: the map ----------------------------------------------------------------------

const bitAt = (p, d) => (p[d >> 3] >> (7 - (d & 7))) & 1;
const leafHash = (p, v) => sha256(Uint8Array.of(0), p, v);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);
const samePrefix = (a, b, depth) => { for (let d = 0; d < depth; d++) if (bitAt(a, d) !== bitAt(b, d)) return false; return true; };

/** A map as the set of its leaves; subtree hashes by the recursive definition of HC-84,
 * remembered per (depth, first leaf) until the leaves change. */
class LeafMap {
  constructor() { this.leaves = new Map(); this.sorted = null; this.memo = new Map(); }
  set(p, v) { if (!this.leaves.has(toHex(p))) this.sorted = null; this.leaves.set(toHex(p), v); this.memo.clear(); }
  items() {
    if (!this.sorted) this.sorted = [...this.leaves.keys()].sort();
    return this.sorted.map((k) => [fromHex(k), this.leaves.get(k)]);
  }
  /** Items [lo, hi) of the sorted leaves form a subtree at `depth`: its hash. */
  hash(items, lo, hi, depth) {
    if (hi === lo) return ZERO;
    if (hi - lo === 1) return leafHash(items[lo][0], items[lo][1]);
    const key = `${depth}/${lo}/${hi}`;
    if (!this.memo.has(key)) {
      let m = lo; while (m < hi && bitAt(items[m][0], depth) === 0) m++;
      this.memo.set(key, nodeHash(this.hash(items, lo, m, depth + 1), this.hash(items, m, hi, depth + 1)));
    }
    return this.memo.get(key);
  }
  root() { const it = this.items(); return this.hash(it, 0, it.length, 0); }
  prove(position) {
    const items = this.items();
    let lo = 0, hi = items.length, depth = 0;
    const siblings = [];
    while (hi - lo >= 2) {
      let m = lo; while (m < hi && bitAt(items[m][0], depth) === 0) m++;
      if (bitAt(position, depth) === 0) { siblings.push(this.hash(items, m, hi, depth + 1)); hi = m; }
      else { siblings.push(this.hash(items, lo, m, depth + 1)); lo = m; }
      depth++;
    }
    siblings.reverse();
    const out = { position, siblings };
    if (hi - lo === 1) out.terminal = { position: items[lo][0], leaf_value: items[lo][1] };
    return out;
  }
}

/** HC-85: the root a proof gives for a position (terminal: null or {position, value}). */
function rootFromProof(position, siblings, terminal, step) {
  const depth = siblings.length;
  if (depth > 256) throw new Reject("length", step, "more than 256 siblings");
  if (siblings.some((s) => s.length !== 32)) throw new Reject("length", step, "a sibling is not 32 bytes");
  if (terminal && !samePrefix(terminal.position, position, depth)) throw new Reject("proof", step, "the proof's leaf is off the path");
  let h = terminal ? leafHash(terminal.position, terminal.value) : ZERO;
  siblings.forEach((s, i) => { h = bitAt(position, depth - 1 - i) === 0 ? nodeHash(h, s) : nodeHash(s, h); });
  return h;
}

async function mapOp(inp, trace) {
  const map = new LeafMap();
  const roots = [];
  for (const batch of inp.batches) {
    for (const l of batch) map.set(fromHex(l.position), fromHex(l.leaf_value));
    roots.push(map.root());
  }
  if (!inp.batches.length) roots.push(map.root());
  trace.out("roots", roots);
  trace.out("proofs", inp.probes.map((p) => map.prove(fromHex(p))));
}

async function mapProofOp(inp, trace) {
  const position = fromHex(inp.position);
  const siblings = inp.proof.siblings.map(fromHex);
  let terminal = inp.proof.terminal ? { position: fromHex(inp.proof.terminal.position), value: fromHex(inp.proof.terminal.leaf_value) } : null;
  if (inp.claim.member) {
    terminal = { position, value: fromHex(inp.claim.leaf_value) };
  } else if (terminal && equalBytes(terminal.position, position)) {
    throw new Reject("proof", S.map, "an absence proof ending at the position's own leaf");
  }
  if (!equalBytes(rootFromProof(position, siblings, terminal, S.map), fromHex(inp.root))) {
    throw new Reject("proof", S.map, "the proof does not lead to the root");
  }
  trace.out("verified", true);
}

// --- step 18: epochs -------------------------------------------------------------------------

const commitmentOf = (epoch, publishedAt, vrfKey, mapRoot) =>
  sha256(labelledContext("directory-commitment", u64be(epoch), u64be(publishedAt), vrfKey, mapRoot));

async function commitmentOp(inp, trace) {
  const c = trace.out("commitment", commitmentOf(inp.epoch, inp.published_at, fromHex(inp.vrf_public_key), fromHex(inp.map_root)));
  const entry = concat(Uint8Array.of(0x04), fromHex(inp.nonce), u64be(inp.epoch), c, new Uint8Array(72));
  trace.out("entry", entry);
  trace.out("leaf_hash", sha256(Uint8Array.of(0), entry));
}

// --- the log: signed notes, checkpoints, tlog-proofs, inclusion (HC-36, HC-38, HC-41) -----------

/** signed-note verifier key: <name>+<hex key ID>+<base64(type || key)>. */
function parseVkey(text) {
  const first = text.indexOf("+"), second = text.indexOf("+", first + 1);
  const raw = new Uint8Array(Buffer.from(text.slice(second + 1), "base64"));
  return { name: text.slice(0, first), id: fromHex(text.slice(first + 1, second)), type: raw[0], key: raw.slice(1) };
}
const keyIdOf = (name, type, key) => sha256(ascii(name), Uint8Array.of(0x0a, type), key).slice(0, 4);

function parseNote(bytes, step) {
  const text = Buffer.from(bytes).toString("utf8");
  const split = text.lastIndexOf("\n\n");
  if (split < 0) throw new Reject("decode", step, "a note has no signature block");
  const body = text.slice(0, split + 1);
  const sigs = text.slice(split + 2).split("\n").filter((l) => l !== "").map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Reject("decode", step, `bad signature line ${JSON.stringify(line)}`);
    const raw = new Uint8Array(Buffer.from(m[2], "base64"));
    return { name: m[1], id: raw.slice(0, 4), blob: raw.slice(4) };
  });
  return { body, sigs };
}

/** A checkpoint signed by a trusted log key and cosigned as the witness policy says. */
function verifyCheckpoint(bytes, trust, now, step) {
  const { body, sigs } = parseNote(bytes, step);
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Reject("decode", step, "a checkpoint has three lines");
  if (lines[0] !== trust.origin) throw new Reject("binding", step, `checkpoint of ${lines[0]}`);
  const size = BigInt(lines[1]);
  const root = new Uint8Array(Buffer.from(lines[2], "base64"));
  const logKeys = trust.log_keys.map(parseVkey);
  const witnesses = trust.witnesses.map(parseVkey);
  const matches = (s, k) => s.name === k.name && equalBytes(s.id, k.id) && equalBytes(k.id, keyIdOf(k.name, k.type, k.key));
  let signed = 0;
  for (const s of sigs) {
    for (const k of logKeys) {
      if (!matches(s, k)) continue;
      if (!ed25519Verify(k.key, utf8(body), s.blob)) throw new Reject("signature", step, "a log signature does not verify");
      signed++;
    }
  }
  if (!signed) throw new Reject("signature", step, "no trusted log key signed the checkpoint");
  const cosigned = new Set();
  let stale = false;
  for (const s of sigs) {
    for (const w of witnesses) {
      if (!matches(s, w)) continue;
      const time = new DataView(s.blob.buffer, s.blob.byteOffset).getBigUint64(0, false);
      const message = utf8(`cosignature/v1\ntime ${time}\n${body}`);
      if (!ed25519Verify(w.key, message, s.blob.slice(8))) throw new Reject("signature", step, "a cosignature does not verify");
      if (time > BigInt(now + CLOCK_SKEW)) throw new Reject("expired", step, "a cosignature from the future");
      if (BigInt(now) - time > BigInt(trust.witness_max_age)) { stale = true; continue; }
      cosigned.add(w.name);
    }
  }
  if (cosigned.size < trust.quorum) {
    throw new Reject(stale ? "expired" : "witness", step, `${cosigned.size} of ${trust.quorum} cosignatures`);
  }
  return { size, root };
}

function parseTlogProof(text, step) {
  const split = text.indexOf("\n\n");
  if (split < 0) throw new Reject("decode", step, "a tlog-proof has no checkpoint");
  const head = text.slice(0, split).split("\n");
  if (head[0] !== "c2sp.org/tlog-proof@v1") throw new Reject("decode", step, "not a tlog-proof");
  let i = 1;
  if (head[i] && head[i].startsWith("extra ")) i++;
  if (!head[i] || !head[i].startsWith("index ")) throw new Reject("decode", step, "no index line");
  const index = BigInt(head[i].slice(6));
  const proof = head.slice(i + 1).map((l) => new Uint8Array(Buffer.from(l, "base64")));
  if (proof.some((h) => h.length !== 32)) throw new Reject("length", step, "a proof hash is not 32 bytes");
  return { index, proof, checkpoint: utf8(text.slice(split + 2)) };
}

/** RFC 9162 section 2.1.3.2. */
function inclusionRoot(index, size, leaf, proof, step) {
  if (index >= size) throw new Reject("proof", step, "index beyond the tree");
  let fn = index, sn = size - 1n, r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Reject("proof", step, "inclusion proof too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Reject("proof", step, "inclusion proof too short");
  return r;
}

// --- steps 19 and 20: lookup answers --------------------------------------------------------

function u63(v, what, min) {
  if (!isInteger(v) || v < min || BigInt(v) > MAX_U63) throw new Reject("decode", S.wire, `${what} is not an integer ${min}..2^63-1`);
  return v;
}

/** Step 19 (HC-88): decode an answer. */
function decodeAnswer(a) {
  const step = S.wire;
  if (!isObject(a)) throw new Reject("decode", step, "the answer is not an object");
  const labelMembers = a.kind === "uid" ? ["identity"] : (a.kind === "keypair" || a.kind === "devices") ? ["user_id", "client_id"] : null;
  if (!labelMembers) throw new Reject("decode", step, `unknown kind ${JSON.stringify(a.kind)}`);
  checkMembers(a, ["kind", ...labelMembers, "epoch", "published_at", "vrf_proof", "leaf", "map_proof", "log"], [], step, "answer");
  for (const m of labelMembers) if (typeof a[m] !== "string") throw new Reject("decode", step, `${m} is not a string`);
  const label = { kind: a.kind, user_id: a.user_id, client_id: a.client_id, identity: a.identity };
  const vrfProof = b64urlExact(a.vrf_proof, 80, step, "vrf_proof");
  let leaf = null;
  if (a.leaf !== null) {
    checkMembers(a.leaf, ["version", "epoch", "previous", "value"], [], step, "leaf");
    leaf = { version: u63(a.leaf.version, "leaf.version", 1), epoch: u63(a.leaf.epoch, "leaf.epoch", 1),
      previous: b64urlExact(a.leaf.previous, 32, step, "leaf.previous"), value: a.leaf.value };
  }
  checkMembers(a.map_proof, ["siblings"], ["other"], step, "map_proof");
  if (!Array.isArray(a.map_proof.siblings)) throw new Reject("decode", step, "siblings is not a list");
  if (a.map_proof.siblings.length > 256) throw new Reject("length", step, "more than 256 siblings");
  const siblings = a.map_proof.siblings.map((s) => b64urlExact(s, 32, step, "sibling"));
  let other = null;
  if ("other" in a.map_proof) {
    if (leaf) throw new Reject("decode", step, "a membership answer names no other leaf");
    checkMembers(a.map_proof.other, ["position", "leaf_value"], [], step, "other");
    other = { position: b64urlExact(a.map_proof.other.position, 32, step, "other.position"),
      value: b64urlExact(a.map_proof.other.leaf_value, 32, step, "other.leaf_value") };
  }
  checkMembers(a.log, ["entry", "proof"], [], step, "log");
  const entry = b64urlExact(a.log.entry, 129, step, "log.entry");
  if (typeof a.log.proof !== "string") throw new Reject("decode", step, "log.proof is not a string");
  return { label, epoch: u63(a.epoch, "epoch", 1), publishedAt: u63(a.published_at, "published_at", 0),
    vrfProof, leaf, siblings, other, entry, logProof: a.log.proof };
}

/** Step 20 (HC-89 .. HC-91): verify a lookup answer for `label`. */
function verifyLookup(answer, label, trust, now, lastEpoch, atEpoch) {
  const a = decodeAnswer(answer);
  const step = S.lookup;
  if (!sameLabel(a.label, label)) throw new Reject("binding", step, `answer for ${describe(a.label)}, asked ${describe(label)}`);
  if (atEpoch !== null && a.epoch !== atEpoch) throw new Reject("binding", step, `answer for epoch ${a.epoch}, asked ${atEpoch}`);
  const vrfKey = fromHex(trust.vrf_public_key);
  const position = ecvrf.verify(vrfKey, a.vrfProof, alphaOf(label, step), step).slice(0, 32);
  let leaf = null, terminal = a.other;
  if (a.leaf) {
    if (a.leaf.epoch > a.epoch) throw new Reject("binding", step, "the leaf is younger than its epoch");
    const vh = valueHash(label.kind, valueBytes(label, a.leaf.value, step));
    leaf = { version: a.leaf.version, epoch: a.leaf.epoch, valueHash: vh, previous: a.leaf.previous,
      value: a.leaf.value, leafValue: leafValue(a.leaf.version, a.leaf.epoch, vh, a.leaf.previous, step) };
    terminal = { position, value: leaf.leafValue };
  }
  const mapRoot = rootFromProof(position, a.siblings, terminal, step);
  if (!a.leaf && terminal && equalBytes(terminal.position, position)) throw new Reject("proof", step, "absence proof ending at the identity's own leaf");
  const commitment = commitmentOf(a.epoch, a.publishedAt, vrfKey, mapRoot);
  const type = a.entry[0];
  if (type < 1 || type > 4) throw new Reject("decode", step, "unknown entry type");
  if (type !== 4) throw new Reject("binding", step, "not a key-directory entry");
  if (a.entry.slice(57).some((b) => b !== 0)) throw new Reject("decode", step, "reserved bytes");
  const entryEpoch = new DataView(a.entry.buffer, a.entry.byteOffset + 17).getBigUint64(0, false);
  if (entryEpoch !== BigInt(a.epoch)) throw new Reject("binding", step, `entry of epoch ${entryEpoch}`);
  if (!equalBytes(a.entry.slice(25, 57), commitment)) throw new Reject("proof", step, "the entry does not commit to this answer");
  const tlog = parseTlogProof(a.logProof, step);
  const checkpoint = verifyCheckpoint(tlog.checkpoint, trust, now, step);
  const root = inclusionRoot(tlog.index, checkpoint.size, sha256(Uint8Array.of(0), a.entry), tlog.proof, step);
  if (!equalBytes(root, checkpoint.root)) throw new Reject("proof", step, "the inclusion proof does not lead to the checkpoint");
  if (atEpoch === null) {
    if (a.epoch < lastEpoch) throw new Reject("replay", step, "an epoch older than one seen");
    if (a.publishedAt > now + CLOCK_SKEW) throw new Reject("expired", step, "an epoch from the future");
    if (now - a.publishedAt > trust.max_epoch_age) throw new Reject("expired", step, "a stale epoch");
  }
  return { epoch: a.epoch, publishedAt: a.publishedAt, position, mapRoot, commitment, leaf,
    logIndex: Number(tlog.index), checkpointSize: Number(checkpoint.size) };
}

async function lookupOp(inp, trace) {
  const r = verifyLookup(inp.answer, inp.label, inp.trust, inp.now, inp.last_epoch, inp.at_epoch);
  trace.inter("position", r.position);
  trace.inter("value_hash", r.leaf ? r.leaf.valueHash : null);
  trace.inter("leaf_value", r.leaf ? r.leaf.leafValue : null);
  trace.inter("map_root", r.mapRoot);
  trace.inter("commitment", r.commitment);
  trace.out("found", r.leaf !== null);
  trace.out("removed", r.leaf !== null && r.leaf.value === null);
  trace.out("version", r.leaf ? r.leaf.version : null);
  trace.out("epoch", r.epoch);
  trace.out("log_index", r.logIndex);
  trace.out("checkpoint_size", r.checkpointSize);
}

// --- step 21: owner monitoring -------------------------------------------------------------

async function monitorOp(inp, trace) {
  const step = S.monitor;
  let known = null;          // {version, leafValue, epoch}
  let checked = 0;
  let pending = [];          // {valueHash, acceptedAt}
  const epochs = [];
  for (const event of inp.events) {
    if ("made" in event) {
      pending.push({ valueHash: valueHash(inp.label.kind, valueBytes(inp.label, event.made.value, step)), acceptedAt: event.made.accepted_at });
      continue;
    }
    const r = verifyLookup(event.lookup.answer, inp.label, inp.trust, inp.now, 0, event.lookup.epoch);
    if (checked && r.epoch !== checked + 1) throw new Reject("params", step, "an owner checks every epoch");
    const knownVersion = known ? known.version : 0;
    if (!r.leaf) {
      if (known) throw new Reject("monitor", step, "the identity vanished");
    } else {
      if (r.leaf.version < knownVersion) throw new Reject("monitor", step, "an older version");
      const added = r.leaf.version - knownVersion;
      if (added > pending.length) throw new Reject("monitor", step, "a version the owner did not make");
      let expected = known;
      for (const change of pending.slice(0, added)) {
        const version = expected ? expected.version + 1 : 1;
        expected = { version, leafValue: leafValue(version, r.epoch, change.valueHash, expected ? expected.leafValue : ZERO, step) };
      }
      if (!expected || !equalBytes(expected.leafValue, r.leaf.leafValue)) throw new Reject("monitor", step, "a leaf the owner did not make");
      known = expected;
      pending = pending.slice(added);
    }
    if (pending.length && r.publishedAt - pending[0].acceptedAt > inp.max_delay) throw new Reject("monitor", step, "a change never published");
    checked = r.epoch;
    epochs.push({ epoch: r.epoch, version: known ? known.version : null, pending: pending.length });
  }
  trace.inter("epochs", epochs);
  trace.out("version", known ? known.version : null);
  trace.out("leaf_value", known ? known.leafValue : null);
  trace.out("pending", pending.length);
}

// --- step 22: history ----------------------------------------------------------------------

async function historyOp(inp, trace) {
  const step = S.history;
  const { versions, ...answer } = inp.answer;
  const r = verifyLookup(answer, inp.label, inp.trust, inp.now, 0, null);
  if (!Array.isArray(versions)) throw new Reject("decode", step, "versions is not a list");
  const count = r.leaf ? r.leaf.version : 0;
  if (versions.length !== count) throw new Reject("history", step, `${versions.length} versions listed, leaf version ${count}`);
  const leaves = [];
  let previous = ZERO, lastEpoch = 0;
  versions.forEach((v, i) => {
    checkMembers(v, ["version", "epoch", "value"], [], step, "version");
    if (v.version !== i + 1) throw new Reject("history", step, `version ${v.version} where ${i + 1} belongs`);
    if (!isInteger(v.epoch) || v.epoch < 1 || v.epoch > r.epoch || v.epoch < lastEpoch) throw new Reject("history", step, "epochs out of order");
    lastEpoch = v.epoch;
    previous = leafValue(i + 1, v.epoch, valueHash(inp.label.kind, valueBytes(inp.label, v.value, step)), previous, step);
    leaves.push(previous);
  });
  if (r.leaf && !equalBytes(previous, r.leaf.leafValue)) throw new Reject("proof", step, "the versions do not chain to the leaf");
  if (inp.pinned) {
    const p = inp.pinned;
    const pinnedLeaf = leafValue(p.version, p.epoch, fromHex(p.value_hash), fromHex(p.previous), step);
    if (p.version > leaves.length || !equalBytes(leaves[p.version - 1], pinnedLeaf)) throw new Reject("fork", step, "the history misses a leaf seen before");
  }
  trace.out("leaf_values", leaves);
  trace.out("epoch", r.epoch);
}

// --- accumulated -------------------------------------------------------------------------------

async function accumulatedOp(inp, trace) {
  const rnd = new Drbg(inp.label);
  const map = new LeafMap();
  const positions = [];
  const roots = [];
  for (let b = 0; b < inp.batches; b++) {
    for (let i = b; i < inp.leaves; i += inp.batches) {
      const p = rnd.take(32);
      positions.push(p);
      map.set(p, rnd.take(32));
    }
    for (let j = 0; j < Math.min(2 * b, positions.length); j++) map.set(positions[j], rnd.take(32));
    roots.push(map.root());
  }
  const absence = crypto.createHash("sha256");
  let depths = 0;
  for (let i = 0; i < inp.probes; i++) {
    const proof = map.prove(rnd.take(32));
    depths += proof.siblings.length;
    absence.update(concat(Uint8Array.of(proof.siblings.length >> 8, proof.siblings.length & 0xff), ...proof.siblings));
    absence.update(proof.terminal ? concat(Uint8Array.of(1), proof.terminal.position, proof.terminal.leaf_value) : Uint8Array.of(0));
  }
  const members = crypto.createHash("sha256");
  for (let i = 0; i < positions.length; i += 64) {
    const proof = map.prove(positions[i]);
    members.update(concat(Uint8Array.of(proof.siblings.length >> 8, proof.siblings.length & 0xff), ...proof.siblings));
  }
  trace.out("roots_digest", sha256(...roots));
  trace.out("root", roots[roots.length - 1]);
  trace.out("absence_proofs_digest", new Uint8Array(absence.digest()));
  trace.out("membership_proofs_digest", new Uint8Array(members.digest()));
  trace.out("probe_depths", depths);
}

export default {
  "hashchain-directory": {
    header: {
      schema: "urn:keyflows:schema:vectors:hashchain-directory:1",
      flow: "hashchain",
      profile: "v1",
    },
    operations: {
      "directory-vrf-prove": { run: vrfProve },
      "directory-vrf-verify": { run: vrfVerify },
      "directory-leaf-chain": { run: leafChain },
      "directory-map": { run: mapOp },
      "directory-map-proof": { run: mapProofOp },
      "directory-commitment": { run: commitmentOp },
      "directory-lookup": { run: lookupOp },
      "directory-monitor": { run: monitorOp },
      "directory-history": { run: historyOp },
      "directory-accumulated": { run: accumulatedOp },
    },
  },
};
