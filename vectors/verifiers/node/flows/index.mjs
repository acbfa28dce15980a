// The vector files the verifier knows: file name (without .yaml) -> {header, operations}.
// A file in vectors/ that is not listed here is reported as unsupported and fails the run.

import keyDerivation from "./key-derivation.mjs";
import keypairPublication from "./keypair-publication.mjs";
import hashchain from "./hashchain.mjs";
import hashchainDirectory from "./hashchain-directory.mjs";
import envelope from "./envelope.mjs";
import sessionChallenge from "./session-challenge.mjs";
import lockLayering from "./lock-layering.mjs";

export const FLOWS = {
  ...keyDerivation,
  ...keypairPublication,
  ...hashchain,
  ...hashchainDirectory,
  ...envelope,
  ...sessionChallenge,
  ...lockLayering,
};
