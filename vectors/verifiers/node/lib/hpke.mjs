// HPKE base mode (RFC 9180) for one suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-256-GCM (kem_id 0x0020, kdf_id 0x0001, aead_id 0x0002). Written from the RFC, with
// node:crypto's X25519, HMAC and AES-GCM; it returns every value of the key schedule.

import {
  aesGcmOpen, aesGcmSeal, ascii, concat, hkdfExpand, hkdfExtract, u16be, x25519,
  x25519Public,
} from "./core.mjs";

export const KEM_ID = 0x0020;
export const KDF_ID = 0x0001;
export const AEAD_ID = 0x0002;
const NSECRET = 32, NK = 32, NN = 12, NSK = 32;

const KEM_SUITE = concat(ascii("KEM"), u16be(KEM_ID));
const HPKE_SUITE = concat(ascii("HPKE"), u16be(KEM_ID), u16be(KDF_ID), u16be(AEAD_ID));
const EMPTY = new Uint8Array(0);

const labeledExtract = (suite, salt, label, ikm) =>
  hkdfExtract(salt, concat(ascii("HPKE-v1"), suite, ascii(label), ikm));
const labeledExpand = (suite, prk, label, info, length) =>
  hkdfExpand(prk, concat(u16be(length), ascii("HPKE-v1"), suite, ascii(label), info), length);

/** RFC 9180 section 7.1.3, X25519: sk = LabeledExpand(dkp_prk, "sk", "", Nsk). */
export function deriveKeyPair(ikm) {
  const dkpPrk = labeledExtract(KEM_SUITE, EMPTY, "dkp_prk", ikm);
  const sk = labeledExpand(KEM_SUITE, dkpPrk, "sk", EMPTY, NSK);
  return { sk, pk: x25519Public(sk) };
}

function extractAndExpand(dh, kemContext) {
  const eaePrk = labeledExtract(KEM_SUITE, EMPTY, "eae_prk", dh);
  return labeledExpand(KEM_SUITE, eaePrk, "shared_secret", kemContext, NSECRET);
}

/** Base-mode key schedule (RFC 9180 section 5.1), every value of it. */
function keySchedule(sharedSecret, info) {
  const pskIdHash = labeledExtract(HPKE_SUITE, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = labeledExtract(HPKE_SUITE, EMPTY, "info_hash", info);
  const keyScheduleContext = concat(new Uint8Array([0x00]), pskIdHash, infoHash);
  const secret = labeledExtract(HPKE_SUITE, sharedSecret, "secret", EMPTY);
  const key = labeledExpand(HPKE_SUITE, secret, "key", keyScheduleContext, NK);
  const baseNonce = labeledExpand(HPKE_SUITE, secret, "base_nonce", keyScheduleContext, NN);
  return { pskIdHash, infoHash, keyScheduleContext, secret, key, baseNonce };
}

/** SealBase with the ephemeral key pair DeriveKeyPair(ikmE), one message (seq 0). */
export function sealBase(pkR, info, aad, pt, ikmE) {
  const eph = deriveKeyPair(ikmE);
  const dh = x25519(eph.sk, pkR);
  if (!dh) throw new Error("DH with the recipient key failed");
  const enc = eph.pk;
  const kemContext = concat(enc, pkR);
  const sharedSecret = extractAndExpand(dh, kemContext);
  const ks = keySchedule(sharedSecret, info);
  const ciphertext = aesGcmSeal(ks.key, ks.baseNonce, pt, aad);
  return { ephemeralPrivate: eph.sk, enc, dh, kemContext, sharedSecret, ...ks, ciphertext };
}

/** The receiver's values up to the AEAD; `open` is null when the AEAD fails. The caller
 * checks enc (length, point) before calling. `dh` is null when X25519 gives no result. */
export function openBase(enc, skR, info, aad, ct) {
  const dh = x25519(skR, enc);
  if (!dh) return { dh: null };
  const pkR = x25519Public(skR);
  const kemContext = concat(enc, pkR);
  const sharedSecret = extractAndExpand(dh, kemContext);
  const ks = keySchedule(sharedSecret, info);
  return { dh, kemContext, sharedSecret, ...ks, plaintext: aesGcmOpen(ks.key, ks.baseNonce, ct, aad) };
}

// --- every mode, any suite id: the envelope flow's Auth and PSK entries ------------------

/** suite_id of the key schedule: "HPKE" || kem_id || kdf_id || aead_id. */
export const hpkeSuiteId = (kem, kdf, aead) => concat(ascii("HPKE"), u16be(kem), u16be(kdf), u16be(aead));

/** KeySchedule(mode, shared_secret, info, psk, psk_id) of RFC 9180 section 5.1, every value
 * but the exporter secret; Nk = 32 (AES-256-GCM). */
export function keyScheduleMode(mode, suite, sharedSecret, info, psk, pskId) {
  const pskIdHash = labeledExtract(suite, EMPTY, "psk_id_hash", pskId);
  const infoHash = labeledExtract(suite, EMPTY, "info_hash", info);
  const keyScheduleContext = concat(new Uint8Array([mode]), pskIdHash, infoHash);
  const secret = labeledExtract(suite, sharedSecret, "secret", psk);
  const key = labeledExpand(suite, secret, "key", keyScheduleContext, NK);
  const baseNonce = labeledExpand(suite, secret, "base_nonce", keyScheduleContext, NN);
  return { pskIdHash, infoHash, keyScheduleContext, secret, key, baseNonce };
}

/** AuthEncap(pkR, skS) with the ephemeral key DeriveKeyPair(ikmE) (RFC 9180 section 4.1):
 * dh = DH(skE, pkR) || DH(skS, pkR), kem_context = enc || pkR || pkS. */
export function authEncap(pkR, ikmE, skS) {
  const eph = deriveKeyPair(ikmE);
  const dh1 = x25519(eph.sk, pkR), dh2 = x25519(skS, pkR);
  if (!dh1 || !dh2) throw new Error("DH with the recipient key failed");
  const dh = concat(dh1, dh2);
  const kemContext = concat(eph.pk, pkR, x25519Public(skS));
  return { ephemeralPrivate: eph.sk, enc: eph.pk, dh, kemContext, sharedSecret: extractAndExpand(dh, kemContext) };
}

/** AuthDecap(enc, skR, pkS); null when X25519 gives no result. */
export function authDecap(enc, skR, pkS) {
  const dh1 = x25519(skR, enc), dh2 = x25519(skR, pkS);
  if (!dh1 || !dh2) return null;
  const dh = concat(dh1, dh2);
  const kemContext = concat(enc, x25519Public(skR), pkS);
  return { dh, kemContext, sharedSecret: extractAndExpand(dh, kemContext) };
}
