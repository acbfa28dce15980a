"""HTTP Message Signatures (RFC 9421) for requests, the Ed25519 algorithm, and the
Content-Digest field (RFC 9530), sans-I/O.

What a signer and a verifier share (RFC 9421 section 2.5):

    signature base = for each covered component, in order:
                         component-identifier ": " component-value LF
                     then "\"@signature-params\": " signature-params

where component-identifier is the serialized sf-string of the component name (lowercase
field names, or the derived components @method, @authority, @scheme, @target-uri,
@request-target, @path, @query), and signature-params the serialized inner list of those
identifiers with the signature's parameters (RFC 8941). Signature-Input carries the same
inner list per label; Signature carries the signature as an sf-binary per label.

The subset of RFC 8941 implemented is what these two fields need: dictionaries whose
members are inner lists of strings with parameters, or byte sequences; parameter values
are integers, strings, tokens, booleans or byte sequences. Component identifiers with
parameters (;sf, ;key, ;bs, ;req, ;tr) and the @query-param / @status components are
refused (failure class decode), as is a field with more than one value of a component.

Provenance: the signature base and signature of RFC 9421 appendix B.2.6 (Ed25519, key of
appendix B.1.4) are rebuilt byte for byte in tests/test_http_signatures.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from keyflows.spec import primitives
from keyflows.spec.errors import BindingError, DecodeError, SignatureError

ALG_ED25519 = "ed25519"
DERIVED_COMPONENTS = ("@method", "@authority", "@scheme", "@target-uri", "@request-target",
                      "@path", "@query")
MAX_FIELD_LEN = 8192

ParamValue = int | str | bool | bytes


@dataclass(frozen=True)
class Token:
    """An sf-token parameter value (serialized without quotes)."""

    value: str


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request a signature can cover. `headers` keeps every field
    line as received (names in any case); `scheme` only matters for @scheme and
    @target-uri."""

    method: str
    authority: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = b""  # None: not read yet (a server checks credentials first)
    scheme: str = "https"

    def field_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def has_body(self) -> bool:
        """Whether the request carries content: from the body once read, else from its
        framing (a Content-Length other than 0, or any Transfer-Encoding)."""
        if self.body is not None:
            return bool(self.body)
        lengths = [v.strip() for v in self.field_values("content-length")]
        return bool(self.field_values("transfer-encoding")) or any(v != "0" for v in lengths)


@dataclass(frozen=True)
class SignatureInput:
    """One member of Signature-Input: covered components and parameters, in order."""

    components: tuple[str, ...]
    params: tuple[tuple[str, ParamValue | Token], ...] = field(default=())

    def param(self, name: str) -> ParamValue | Token | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


# --- serialization (RFC 8941 section 4.1) ------------------------------------------------

_KEY = re.compile(r"\A[a-z*][a-z0-9_\-.*]*\Z")
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]"
_TOKEN = re.compile(r"\A[A-Za-z*]" + _TCHAR + r"*\Z")


def serialize_string(value: str) -> str:
    if any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise DecodeError("an sf-string holds printable ASCII only")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_bare(value: ParamValue | Token) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > 999_999_999_999_999:
            raise DecodeError("an sf-integer has at most 15 digits")
        return str(value)
    if isinstance(value, Token):
        if not _TOKEN.match(value.value):
            raise DecodeError("not an sf-token")
        return value.value
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    return serialize_string(value)


def serialize_params(params: Sequence[tuple[str, ParamValue | Token]]) -> str:
    out = []
    for key, value in params:
        if not _KEY.match(key):
            raise DecodeError(f"{key!r} is not an sf-key")
        out.append(f";{key}" if value is True else f";{key}={serialize_bare(value)}")
    return "".join(out)


def serialize_signature_params(signature_input: SignatureInput) -> str:
    """The inner list of component identifiers with the signature's parameters: the value
    of "@signature-params" and of the label's member of Signature-Input."""
    inner = " ".join(serialize_string(c) for c in signature_input.components)
    return f"({inner}){serialize_params(signature_input.params)}"


# --- parsing (RFC 8941 section 4.2), the subset the two fields use ------------------------

class _Parser:
    def __init__(self, text: str, what: str) -> None:
        if len(text) > MAX_FIELD_LEN:
            raise DecodeError(f"{what} is too long")
        if any(not 0x20 <= ord(c) <= 0x7E for c in text):
            raise DecodeError(f"{what} is not printable ASCII")
        self.text = text
        self.pos = 0
        self.what = what

    def fail(self, why: str) -> DecodeError:
        return DecodeError(f"{self.what}: {why} at offset {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def skip_ows(self) -> None:
        while self.peek() and self.peek() in " \t":
            self.pos += 1

    def key(self) -> str:
        start = self.pos
        if not (self.peek().islower() or self.peek() == "*"):
            raise self.fail("expected a key")
        while self.peek() and (self.peek().islower() or self.peek().isdigit()
                               or self.peek() in "_-.*"):
            self.pos += 1
        return self.text[start:self.pos]

    def bare_item(self) -> ParamValue | Token:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            self.pos += 1
            value = self.peek()
            if value not in ("0", "1"):
                raise self.fail("expected a boolean")
            self.pos += 1
            return value == "1"
        if char == "-" or char.isdigit():
            return self.integer()
        if char.isalpha() or char == "*":
            return self.token()
        raise self.fail("expected an item")

    def string(self) -> str:
        self.take('"')
        out = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail("unterminated string")
            self.pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise self.fail("bad escape")
                self.pos += 1
                out.append(escaped)
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)

    def byte_sequence(self) -> bytes:
        self.take(":")
        end = self.text.find(":", self.pos)
        if end < 0:
            raise self.fail("unterminated byte sequence")
        chunk = self.text[self.pos:end]
        try:  # validate=True refuses any character outside the alphabet and bad padding
            value = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.fail("not base64") from exc
        if base64.b64encode(value).decode("ascii") != chunk:
            raise self.fail("not canonical base64")
        self.pos = end + 1
        return value

    def integer(self) -> int:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if self.pos == digits or self.pos - digits > 15:
            raise self.fail("bad integer")
        # A decimal's "." is left where a ";", "," or the end must follow: refused there.
        return int(self.text[start:self.pos])

    def token(self) -> Token:
        start = self.pos
        self.pos += 1
        while self.peek() and re.match(_TCHAR, self.peek()):
            self.pos += 1
        return Token(self.text[start:self.pos])

    def params(self) -> tuple[tuple[str, ParamValue | Token], ...]:
        out: list[tuple[str, ParamValue | Token]] = []
        while self.peek() == ";":
            self.pos += 1
            self.skip_sp()
            key = self.key()
            value: ParamValue | Token = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            if any(k == key for k, _ in out):
                raise self.fail(f"parameter {key} given twice")
            out.append((key, value))
        return tuple(out)

    def inner_list(self) -> SignatureInput:
        self.take("(")
        items: list[str] = []
        while True:
            self.skip_sp()
            if self.peek() == ")":
                self.pos += 1
                return SignatureInput(tuple(items), self.params())
            items.append(self.string())  # a component parameter's ";" is refused below
            if self.peek() not in (" ", ")"):
                raise self.fail("expected a space or ')'")

    def dictionary(self, member: str) -> dict[str, object]:
        out: dict[str, object] = {}
        self.skip_sp()
        while True:
            key = self.key()
            self.take("=")
            # An inner list reads its own parameters; a parameter after a byte sequence is
            # left where a "," or the end must follow, and refused there.
            value: object = self.inner_list() if member == "inner-list" \
                else self.byte_sequence()
            if key in out:
                raise self.fail(f"label {key} given twice")
            out[key] = value
            self.skip_ows()
            if not self.peek():
                return out
            self.take(",")
            self.skip_ows()  # after a trailing comma, key() finds no label


def _one_field(values: Sequence[str], name: str) -> str:
    if len(values) != 1:
        raise DecodeError(f"exactly one {name} field line is accepted")
    return values[0].strip(" \t")


def parse_signature_input(values: Sequence[str]) -> dict[str, SignatureInput]:
    """Signature-Input: label -> (components, parameters), strictly (class decode)."""
    parsed = _Parser(_one_field(values, "Signature-Input"), "Signature-Input").dictionary(
        "inner-list")
    out = {k: v for k, v in parsed.items() if isinstance(v, SignatureInput)}
    for label, entry in out.items():
        if len(set(entry.components)) != len(entry.components):
            raise DecodeError(f"signature {label} covers a component twice")
    return out


def parse_signature(values: Sequence[str]) -> dict[str, bytes]:
    """Signature: label -> signature bytes (class decode for any defect)."""
    parsed = _Parser(_one_field(values, "Signature"), "Signature").dictionary("binary")
    return {k: v for k, v in parsed.items() if isinstance(v, bytes)}


# --- the signature base (RFC 9421 section 2.5) -------------------------------------------

def component_value(request: Request, component: str) -> str:
    """The value of one covered component (RFC 9421 sections 2.1 and 2.2)."""
    if component == "@method":
        return request.method
    if component == "@authority":
        return request.authority.lower()
    if component == "@scheme":
        return request.scheme.lower()
    if component == "@path":
        return request.path or "/"
    if component == "@query":
        return "?" + request.query
    if component == "@target-uri":
        query = f"?{request.query}" if request.query else ""
        return f"{request.scheme.lower()}://{request.authority.lower()}{request.path}{query}"
    if component == "@request-target":
        return request.path + (f"?{request.query}" if request.query else "")
    if component != component.lower():
        raise DecodeError(f"component {component!r} is not supported")
    values = request.field_values(component)  # none for "", "@signature-params" or "@x"
    if not values:
        raise DecodeError(f"the request has no {component} field")
    # Field lines are combined with ", " after trimming leading and trailing whitespace.
    return ", ".join(v.strip(" \t") for v in values)


def signature_base(request: Request, signature_input: SignatureInput) -> bytes:
    """RFC 9421 section 2.5: every covered component, then @signature-params."""
    lines = []
    for component in signature_input.components:
        value = component_value(request, component)  # refuses "@signature-params"
        if "\n" in value or "\r" in value:
            raise DecodeError(f"the value of {component} has a line break")
        lines.append(f"{serialize_string(component)}: {value}")
    lines.append(f'"@signature-params": {serialize_signature_params(signature_input)}')
    return "\n".join(lines).encode("ascii")


def sign_ed25519(seed: bytes, request: Request, signature_input: SignatureInput) -> bytes:
    """RFC 9421 section 3.3.6: Ed25519 over the signature base, no prehash."""
    return primitives.ed25519_sign(seed, signature_base(request, signature_input))


def verify_ed25519(public_key: bytes, request: Request, signature_input: SignatureInput,
                   signature: bytes, *, requirement: str | None = None) -> None:
    """RFC 9421 section 3.3.6 on the verifier's side; SignatureError if it fails."""
    base = signature_base(request, signature_input)
    try:
        primitives.ed25519_verify(public_key, base, signature, requirement=requirement)
    except SignatureError:
        raise
    except Exception as exc:  # a malformed key or signature is a failed signature
        raise SignatureError("the HTTP message signature does not verify",
                             requirement=requirement) from exc


def signature_fields(label: str, signature_input: SignatureInput, signature: bytes
                     ) -> dict[str, str]:
    """The Signature-Input and Signature field values for one label."""
    return {"signature-input": f"{label}={serialize_signature_params(signature_input)}",
            "signature": f"{label}={serialize_bare(signature)}"}


# --- Content-Digest (RFC 9530) -------------------------------------------------------------

def content_digest(body: bytes) -> str:
    """The Content-Digest field value with the sha-256 algorithm."""
    return f"sha-256={serialize_bare(primitives.sha256(body))}"


def check_content_digest(values: Sequence[str], body: bytes, *,
                         requirement: str | None = None) -> None:
    """The request's Content-Digest must carry a sha-256 member equal to the body's
    digest (other algorithms are ignored); BindingError otherwise."""
    parsed = _Parser(_one_field(values, "Content-Digest"), "Content-Digest").dictionary(
        "binary")
    digest = parsed.get("sha-256")
    if not isinstance(digest, bytes) or not primitives.constant_time_equal(
            digest, primitives.sha256(body)):
        raise BindingError("Content-Digest does not match the body", requirement=requirement)
