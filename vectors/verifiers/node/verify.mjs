#!/usr/bin/env node
// keyflows: an independent verifier of every test vector file, in JavaScript.
//
// Written from the rendered specification (docs/*.rst, docs/flows/*.rst, the requirement
// texts of spec/requirements.yaml) and the vector JSON Schemas (vectors/schemas/), not from
// the Python code that generates the vectors: a generator bug cannot verify itself
// (pyca/cryptography's rule for home-made vectors).
//
// For every case of every file:
//   valid   -> recompute every intermediate and output from the inputs; byte for byte.
//   invalid -> run the checks in the order of the prose; the verifier must reject, and the
//              failure class and step IT raises must equal the case's failure.
// A file the verifier does not know is "unsupported" and fails the run.
//
// Usage: node verify.mjs [--json REPORT] [--verbose] PATH...   (PATH: a folder of
// *.yaml vector files, or single files). Exit 0 only if every case of every file agreed.

import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import YAML from "yaml";

import { FAILURE_CLASSES, Reject } from "./lib/core.mjs";
import { FLOWS } from "./flows/index.mjs";

// --- the record of what one operation computed ------------------------------------------

export class Trace {
  constructor() {
    this.intermediates = {};
    this.outputs = {};
    this.problems = [];
  }
  /** A check of the vector's own consistency (for example a producer section that must
   * regenerate the inputs byte for byte); a failure is a disagreement. */
  expect(what, ok, detail = "") { if (!ok) this.problems.push(`${what}${detail ? `: ${detail}` : ""}`); }
  inter(name, value) { this.intermediates[name] = normalise(value); return value; }
  out(name, value) { this.outputs[name] = normalise(value); return value; }
}

function normalise(v) {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (Array.isArray(v)) return v.map(normalise);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  }
  return v;
}

/** Canonical JSON (sorted keys) for comparison and display. */
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

function compareMaps(kind, expected, actual, exact, problems) {
  for (const [k, want] of Object.entries(expected)) {
    if (!(k in actual)) {
      problems.push(`${kind}.${k}: not recomputed by the verifier`);
    } else if (canon(want) !== canon(actual[k])) {
      problems.push(`${kind}.${k}: vector ${canon(want)}\n        verifier ${canon(actual[k])}`);
    }
  }
  if (exact) {
    for (const k of Object.keys(actual)) {
      if (!(k in expected)) problems.push(`${kind}.${k}: computed by the verifier, absent from the vector`);
    }
  }
}

// --- one case ------------------------------------------------------------------------------

async function runCase(spec, c) {
  const problems = [];
  const op = spec.operations[c.operation];
  if (!op) return [`operation ${JSON.stringify(c.operation)} unknown to the verifier`];
  const trace = new Trace();
  let rejection = null;
  try {
    await op.run(c.inputs, trace);
  } catch (e) {
    if (!(e instanceof Reject)) return [`verifier error: ${e.stack || e}`];
    rejection = e;
  }
  problems.push(...trace.problems);
  if (c.result === "valid") {
    if (rejection) return [`valid case rejected by the verifier: ${rejection.message}`];
    compareMaps("intermediates", c.intermediates ?? {}, trace.intermediates, true, problems);
    compareMaps("outputs", c.outputs ?? {}, trace.outputs, true, problems);
    return problems;
  }
  if (c.result !== "invalid") return [`result ${JSON.stringify(c.result)} is neither valid nor invalid`];
  const f = c.failure;
  if (!f || !FAILURE_CLASSES.has(f.class)) return [`invalid case without a known failure class: ${canon(f)}`];
  if (!rejection) {
    return [`invalid case (${f.class} at step ${f.step}) accepted by the verifier; it computed ${canon(trace.outputs)}`];
  }
  if (rejection.cls !== f.class || rejection.step !== String(f.step)) {
    problems.push(`failure: vector ${f.class} at step ${f.step}; verifier ${rejection.cls} at step ${rejection.step} (${rejection.message})`);
  }
  // Intermediates an invalid case carries are values a consumer computes regardless of
  // where it rejects; those not reached before the rejection are computed by `late`.
  const wanted = c.intermediates ?? {};
  if (Object.keys(wanted).some((k) => !(k in trace.intermediates)) && op.late) {
    try {
      await op.late(c.inputs, trace);
    } catch (e) {
      problems.push(`intermediates of an invalid case could not be recomputed: ${e.message}`);
    }
  }
  compareMaps("intermediates", wanted, trace.intermediates, false, problems);
  if (c.outputs && Object.keys(c.outputs).length) problems.push("outputs: an invalid case carries outputs");
  return problems;
}

// --- one file ------------------------------------------------------------------------------

// The files are written by a YAML 1.1 emitter (PyYAML), which leaves a string unquoted
// whenever ITS resolver reads it as a string: "9844202e28" and "e0" are plain strings to it
// but floats to a YAML 1.2 resolver (and to the `yaml` package's "yaml-1.1" schema). So
// scalars are read untyped and plain ones resolved here with the emitter's YAML 1.1 implicit
// rules: null, bool, decimal int; the other implicit types (floats, other int forms,
// timestamps) never appear in the files and are refused rather than guessed.
const Y11_NULL = /^(?:~|null|Null|NULL|)$/;
const Y11_TRUE = /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/;
const Y11_FALSE = /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/;
const Y11_DEC = /^[-+]?(?:0|[1-9][0-9]*)$/;
const Y11_OTHER = [
  /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/,
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/,
  /^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$/,
  /^<<$/, /^=$/,
];
function resolvePlain(s) {
  if (Y11_NULL.test(s)) return null;
  if (Y11_TRUE.test(s)) return true;
  if (Y11_FALSE.test(s)) return false;
  if (Y11_DEC.test(s)) return Number(s);
  if (Y11_OTHER.some((r) => r.test(s))) throw new Error(`plain scalar ${JSON.stringify(s)} has a YAML 1.1 type this verifier does not read`);
  return s;
}

async function verifyFile(file, verbose) {
  const name = path.basename(file).replace(/\.yaml$/, "");
  const text = fs.readFileSync(file, "utf8");
  const docs = YAML.parseAllDocuments(text, { schema: "failsafe", uniqueKeys: true });
  const errors = docs.flatMap((d) => d.errors);
  let doc;
  try {
    if (docs.length !== 1 || errors.length) throw new Error(`not one YAML document: ${errors.join("; ")}`);
    YAML.visit(docs[0], { Scalar(_, node) { if (node.type === "PLAIN") node.value = resolvePlain(node.value); } });
    doc = docs[0].toJS({ maxAliasCount: -1 });
  } catch (e) {
    return { file: name, status: "error", cases: 0, agreed: 0, disagreed: 0,
      problems: [{ id: "(file)", problems: [e.message] }] };
  }
  const spec = FLOWS[name];
  const cases = Array.isArray(doc?.cases) ? doc.cases : [];
  const result = { file: name, cases: cases.length, agreed: 0, disagreed: 0, problems: [] };
  if (!spec) {
    result.status = "unsupported";
    return result;
  }
  const header = [];
  for (const [k, v] of Object.entries(spec.header)) {
    if (doc[k] !== v) header.push(`header ${k}: ${JSON.stringify(doc[k])}, expected ${JSON.stringify(v)}`);
  }
  // JavaScript numbers are exact up to 2^53: a larger integer would be compared wrongly.
  const unsafe = [];
  const walk = (v, where) => {
    if (typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v)) unsafe.push(where);
    else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`);
  };
  walk(cases, "cases");
  if (unsafe.length) header.push(`integers beyond 2^53, which this verifier cannot read exactly: ${unsafe.slice(0, 3).join(", ")}`);
  if (doc.number_of_cases !== cases.length) header.push(`number_of_cases ${doc.number_of_cases} but ${cases.length} cases`);
  const ids = new Set();
  for (const c of cases) {
    if (ids.has(c.id)) header.push(`duplicate case id ${c.id}`);
    ids.add(c.id);
    for (const flag of c.flags ?? []) {
      if (!doc.notes || !(flag in doc.notes)) header.push(`case ${c.id}: flag ${flag} not in the glossary`);
    }
  }
  if (header.length) result.problems.push({ id: "(file header)", problems: header });
  for (const c of cases) {
    const problems = await runCase(spec, c);
    if (problems.length) {
      result.disagreed++;
      result.problems.push({ id: c.id, problems });
    } else {
      result.agreed++;
      if (verbose) console.log(`  ok ${name} ${c.id}`);
    }
  }
  result.status = result.disagreed || header.length ? "disagreed" : "agreed";
  return result;
}

// --- command line --------------------------------------------------------------------------

async function main(argv) {
  let json = null, verbose = false;
  const targets = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--json") json = argv[++i];
    else if (argv[i] === "--verbose" || argv[i] === "-v") verbose = true;
    else if (argv[i] === "--help" || argv[i] === "-h") {
      console.log("usage: node verify.mjs [--json REPORT] [--verbose] PATH...");
      return 0;
    } else targets.push(argv[i]);
  }
  if (!targets.length) targets.push(path.resolve(path.dirname(new URL(import.meta.url).pathname), "../.."));
  const files = [];
  for (const t of targets) {
    if (fs.statSync(t).isDirectory()) {
      for (const f of fs.readdirSync(t).sort()) if (f.endsWith(".yaml")) files.push(path.join(t, f));
    } else files.push(t);
  }
  if (!files.length) {
    console.error("verify.mjs: no vector files found");
    return 2;
  }
  const results = [];
  for (const f of files) results.push(await verifyFile(f, verbose));

  for (const r of results) {
    for (const p of r.problems) {
      console.log(`DISAGREE ${r.file}.yaml ${p.id}`);
      for (const line of p.problems) console.log(`    ${line}`);
    }
  }
  const width = Math.max(4, ...results.map((r) => r.file.length + 5));
  console.log(`${"file".padEnd(width)}  ${"cases".padStart(6)}  ${"agreed".padStart(6)}  ${"disagreed".padStart(9)}  status`);
  for (const r of results) {
    console.log(`${(r.file + ".yaml").padEnd(width)}  ${String(r.cases).padStart(6)}  ${String(r.agreed).padStart(6)}  ${String(r.disagreed).padStart(9)}  ${r.status}`);
  }
  const total = (k) => results.reduce((a, r) => a + r[k], 0);
  const unsupported = results.filter((r) => r.status === "unsupported").map((r) => r.file);
  const failedFiles = results.filter((r) => r.status !== "agreed").length;
  console.log(`${total("agreed")} agreed, ${total("disagreed")} disagreed over ${total("cases")} cases in ${results.length} files` +
    (unsupported.length ? `; unsupported: ${unsupported.join(", ")}` : ""));
  if (json) {
    fs.writeFileSync(json, JSON.stringify({ files: results.map(({ problems, ...r }) => ({ ...r, problems })) }, null, 2) + "\n");
  }
  return failedFiles ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  console.error(e.stack || e);
  process.exit(2);
});
