// HTTP Message Signatures (RFC 9421) for requests, written from the RFC and from
// docs/flows/lock-layering.rst ("Holder binding"): the signature base (section 2.5), the
// Signature-Input / Signature fields as RFC 8941 dictionaries (the subset they use), and
// Content-Digest (RFC 9530, sha-256).

import { Reject, sha256 } from "./core.mjs";

const KEY = /^[a-z*][a-z0-9_\-.*]*/;
const TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/;

/** Field lines of `name` in the request's headers (names compared case-insensitively). */
export const fieldValues = (req, name) =>
  req.headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);

// --- RFC 8941 serialization ---------------------------------------------------------------

export function sfString(s) {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error(`not an sf-string: ${JSON.stringify(s)}`);
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
function bare(v) {
  if (typeof v === "boolean") return v ? "?1" : "?0";
  if (typeof v === "number") return String(v);
  if (v instanceof Uint8Array) return `:${Buffer.from(v).toString("base64")}:`;
  if (v && v.token) return v.token;
  return sfString(v);
}
export function signatureParams(entry) {
  const params = entry.params.map(([k, v]) => (v === true ? `;${k}` : `;${k}=${bare(v)}`)).join("");
  return `(${entry.components.map(sfString).join(" ")})${params}`;
}

// --- RFC 8941 parsing, strict (class decode) -------------------------------------------------

class Parser {
  constructor(text, what, step) {
    if (!/^[\x20-\x7e]*$/.test(text)) throw new Reject("decode", step, `${what} is not printable ASCII`);
    this.s = text; this.i = 0; this.what = what; this.step = step;
  }
  fail(why) { return new Reject("decode", this.step, `${this.what}: ${why} at ${this.i}`); }
  peek() { return this.s[this.i] ?? ""; }
  take(c) { if (this.peek() !== c) throw this.fail(`expected ${c}`); this.i++; }
  key() {
    const m = KEY.exec(this.s.slice(this.i));
    if (!m) throw this.fail("expected a key");
    this.i += m[0].length;
    return m[0];
  }
  string() {
    this.take('"');
    let out = "";
    for (;;) {
      const c = this.peek();
      if (!c) throw this.fail("unterminated string");
      this.i++;
      if (c === "\\") {
        const e = this.peek();
        if (e !== '"' && e !== "\\") throw this.fail("bad escape");
        this.i++; out += e;
      } else if (c === '"') return out;
      else out += c;
    }
  }
  binary() {
    this.take(":");
    const end = this.s.indexOf(":", this.i);
    if (end < 0) throw this.fail("unterminated byte sequence");
    const chunk = this.s.slice(this.i, end);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(chunk) || chunk.length % 4) throw this.fail("not base64");
    const b = new Uint8Array(Buffer.from(chunk, "base64"));
    if (Buffer.from(b).toString("base64") !== chunk) throw this.fail("not canonical base64");
    this.i = end + 1;
    return b;
  }
  item() {
    const c = this.peek();
    if (c === '"') return this.string();
    if (c === ":") return this.binary();
    if (c === "?") {
      this.i++;
      const v = this.peek();
      if (v !== "0" && v !== "1") throw this.fail("bad boolean");
      this.i++;
      return v === "1";
    }
    const num = /^-?[0-9]{1,15}/.exec(this.s.slice(this.i));
    if (num) {
      this.i += num[0].length;
      if (this.peek() === "." || /[0-9]/.test(this.peek())) throw this.fail("not an integer");
      return Number(num[0]);
    }
    const tok = TOKEN.exec(this.s.slice(this.i));
    if (tok) { this.i += tok[0].length; return { token: tok[0] }; }
    throw this.fail("expected an item");
  }
  params() {
    const out = [];
    while (this.peek() === ";") {
      this.i++;
      while (this.peek() === " ") this.i++;
      const k = this.key();
      let v = true;
      if (this.peek() === "=") { this.i++; v = this.item(); }
      if (out.some(([x]) => x === k)) throw this.fail(`parameter ${k} twice`);
      out.push([k, v]);
    }
    return out;
  }
  innerList() {
    this.take("(");
    const items = [];
    for (;;) {
      while (this.peek() === " ") this.i++;
      if (this.peek() === ")") { this.i++; return { components: items, params: this.params() }; }
      items.push(this.string());
      if (this.peek() === ";") throw this.fail("component parameters are not supported");
      if (this.peek() !== " " && this.peek() !== ")") throw this.fail("expected a space or )");
    }
  }
  dictionary(member) {
    const out = new Map();
    while (this.peek() === " ") this.i++;
    for (;;) {
      const k = this.key();
      this.take("=");
      const v = member === "list" ? this.innerList() : this.binary();
      if (member !== "list" && this.params().length) throw this.fail("no parameters here");
      if (out.has(k)) throw this.fail(`label ${k} twice`);
      out.set(k, v);
      while (this.peek() === " " || this.peek() === "\t") this.i++;
      if (!this.peek()) return out;
      this.take(",");
      while (this.peek() === " " || this.peek() === "\t") this.i++;
      if (!this.peek()) throw this.fail("trailing comma");
    }
  }
}

function oneLine(values, name, step) {
  if (values.length !== 1) throw new Reject("decode", step, `exactly one ${name} field line`);
  return values[0].replace(/^[ \t]+|[ \t]+$/g, "");
}
export function parseSignatureInput(values, step) {
  const d = new Parser(oneLine(values, "Signature-Input", step), "Signature-Input", step).dictionary("list");
  for (const [label, e] of d) {
    if (new Set(e.components).size !== e.components.length) throw new Reject("decode", step, `${label} covers a component twice`);
  }
  return d;
}
export const parseSignature = (values, step) =>
  new Parser(oneLine(values, "Signature", step), "Signature", step).dictionary("binary");
export const parseInnerList = (text, step) => new Parser(text, "signature params", step).innerList();

// --- the signature base (section 2.5) ------------------------------------------------------

function componentValue(req, name, step) {
  switch (name) {
    case "@method": return req.method;
    case "@authority": return req.authority.toLowerCase();
    case "@scheme": return req.scheme.toLowerCase();
    case "@path": return req.path || "/";
    case "@query": return `?${req.query}`;
    case "@target-uri": return `${req.scheme.toLowerCase()}://${req.authority.toLowerCase()}${req.path}${req.query ? `?${req.query}` : ""}`;
    case "@request-target": return `${req.path}${req.query ? `?${req.query}` : ""}`;
    default: {
      if (name.startsWith("@") || name !== name.toLowerCase() || !name) throw new Reject("decode", step, `component ${name}`);
      const v = fieldValues(req, name);
      if (!v.length) throw new Reject("decode", step, `no ${name} field`);
      return v.map((x) => x.replace(/^[ \t]+|[ \t]+$/g, "")).join(", ");
    }
  }
}

export function signatureBase(req, entry, step) {
  const lines = entry.components.map((c) => `${sfString(c)}: ${componentValue(req, c, step)}`);
  lines.push(`"@signature-params": ${signatureParams(entry)}`);
  return lines.join("\n");
}

export const contentDigest = (body) => `sha-256=:${Buffer.from(sha256(body)).toString("base64")}:`;

/** RFC 9530: the sha-256 member must equal the body's digest (binding otherwise). */
export function checkContentDigest(values, body, step) {
  const d = new Parser(oneLine(values, "Content-Digest", step), "Content-Digest", step).dictionary("binary");
  const want = sha256(body);
  const got = d.get("sha-256");
  if (!got || got.length !== want.length || !got.every((b, i) => b === want[i])) {
    throw new Reject("binding", step, "Content-Digest does not match the body");
  }
}
