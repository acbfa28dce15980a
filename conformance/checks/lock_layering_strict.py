"""lock-layering strictness checks: what a holder sends is parsed exactly as the chapter
says, so a lenient server is caught.

- The holder's signature fields (RFC 9421 over RFC 8941 structured fields): every variant
  here carries a signature that verifies over what a lenient parser would make of it, so
  a server that accepts what RFC 8941 refuses answers 200 where it must answer the
  uniform 401; and the edge values RFC 8941 allows are accepted.
- Capabilities: a capability whose chain is valid but whose text breaks the format (the
  prefix, its length, its JSON, its caveats) is refused; the format's own limits are not.
- Unlocking: a share and a grant together, and the account's own share sent back as the
  user's, are the one share failure (LOCK-6, LOCK-28).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from keyflows.conformance.checks.lock_layering_capability import (
    expect_uniform_401,
    granted,
    reference_401,
)
from keyflows.conformance.checks.lock_layering_support import (
    HELD,
    NEEDS,
    SHARES,
    Keystore,
    Signer,
    call,
    create_key,
    create_keystore,
    decoded,
    expect_share_refused,
    key_op,
    lock_user,
    new_nonce,
    with_unchecked_caveat,
)
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import edv, http_signatures, primitives, shamir
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.encoding import b64url_encode

# --- the holder's signature fields ------------------------------------------------------------

Fields = dict[str, str]


def signed_read(t: Probe, ks: Keystore, signer: Signer, *,
                components: Sequence[str] | None = None,
                extra: Sequence[tuple[str, str]] = (),
                params: Sequence[tuple[str, Any]] | None = None) -> Fields:
    """Authorization, Signature-Input and Signature of a read of the keystore, signed by
    `signer` over `components` (default: the ones LOCK-25 requires) with a fresh nonce;
    `extra` fields are sent too (and may be covered)."""
    sent = {"authorization": f"Bearer {ks.capability}", **dict(extra)}
    url = urlsplit(t.session.base_url + ks.path)
    view = http_signatures.Request("GET", url.netloc, url.path, url.query,
                                   tuple(sent.items()), b"", url.scheme)
    if params is None:
        params = (("created", int(time.time())), ("nonce", new_nonce()),
                  ("keyid", b64url_encode(signer.public)),
                  ("alg", http_signatures.ALG_ED25519), ("tag", cap.SIGNATURE_TAG))
    entry = http_signatures.SignatureInput(
        tuple(components) if components is not None else cap.REQUIRED_COMPONENTS,
        tuple(params))
    signature = primitives.ed25519_sign(signer.seed, lenient_base(view, entry))
    return {**sent, **http_signatures.signature_fields(cap.SIGNATURE_LABEL, entry, signature)}


def lenient_base(view: http_signatures.Request, entry: http_signatures.SignatureInput
                 ) -> bytes:
    """The signature base as a lenient server would build it: any field name in any
    case, an absent field as an empty value (RFC 9421 refuses both)."""
    lines = []
    for component in entry.components:
        value = (http_signatures.component_value(view, component)
                 if component.startswith("@")
                 else ", ".join(v.strip(" \t") for v in view.field_values(component)))
        lines.append(f"{http_signatures.serialize_string(component)}: {value}")
    lines.append('"@signature-params": ' + http_signatures.serialize_signature_params(entry))
    return "\n".join(lines).encode("ascii")


def _append_input(text: str) -> Callable[[Fields], None]:
    def change(fields: Fields) -> None:
        fields["signature-input"] += text
    return change


def _input_of_length(length: int) -> Callable[[Fields], None]:
    """Pad Signature-Input with an unused member to exactly `length` characters."""
    def change(fields: Fields) -> None:
        head = fields["signature-input"] + ', pad=("'
        fields["signature-input"] = head + "a" * (length - len(head) - 2) + '")'
        assert len(fields["signature-input"]) == length
    return change


def _label_separator(fields: Fields) -> None:
    fields["signature-input"] = fields["signature-input"].replace("=", ":", 1)


def _non_canonical_signature(fields: Fields) -> None:
    """The same 64 bytes in base64 whose unused low bits are not zero."""
    label, _, value = fields["signature"].partition("=")
    text = value.strip(":")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = text.rstrip("=")
    changed = last[:-1] + alphabet[alphabet.index(last[-1]) | 1] + text[len(last):]
    assert base64.b64decode(changed) == base64.b64decode(text) and changed != text
    fields["signature"] = f"{label}=:{changed}:"


def _outside_alphabet(fields: Fields) -> None:
    """The signature's base64 with its first character replaced by one outside the
    alphabet."""
    label, _, value = fields["signature"].partition("=")
    fields["signature"] = f"{label}=:${value.strip(':')[1:]}:"


def _second_line(name: str, value: str) -> Callable[[Fields], None]:
    def change(fields: Fields) -> None:
        fields[name.title()] = value  # another case: a second field line
    return change


def _short_signature(fields: Fields) -> None:
    """The signature without its last byte: 63 bytes, canonical base64."""
    label, _, value = fields["signature"].partition("=")
    raw = base64.b64decode(value.strip(":"))[:-1]
    fields["signature"] = f"{label}=:{base64.b64encode(raw).decode('ascii')}:"


def _signature_params(fields: Fields) -> None:
    fields["signature"] += ";x=1"


# (what, change, accepted): unused members go into a second label, "pad", which the
# server must parse (RFC 8941: a field that does not parse fails as a whole) and ignore.
FIELD_VARIANTS: tuple[tuple[str, Callable[[Fields], None], bool], ...] = (
    ("Signature-Input of 8192 characters", _input_of_length(http_signatures.MAX_FIELD_LEN),
     True),
    ("Signature-Input of 8193 characters", _input_of_length(http_signatures.MAX_FIELD_LEN + 1),
     False),
    ("a tab between members", _append_input(',\tpad=("a")'), False),
    ('a "~" in a string', _append_input(', pad=("~")'), True),
    ('":" instead of "=" after the label', _label_separator, False),
    ('a label that starts with "_"', _append_input(', _pad=("a")'), False),
    ('a label that starts with "*"', _append_input(', *pad=("a")'), True),
    ("a boolean parameter", _append_input(', pad=("a");b=?1'), True),
    ('a boolean "?2"', _append_input(', pad=("a");b=?2'), False),
    ("a parameter without a value after '='", _append_input(', pad=("a");b=, x=("b")'),
     False),
    ('an escaped quote in a string', _append_input(', pad=("a\\"")'), True),
    ("an unterminated string", _append_input(', pad=("a'), False),
    ('an escape other than \\" and \\\\', _append_input(', pad=("a\\n")'), False),
    ("an integer of 15 digits", _append_input(', pad=("a");n=123456789012345'), True),
    ("an integer of 16 digits", _append_input(', pad=("a");n=1234567890123456'), False),
    ('an integer that is only "-"', _append_input(', pad=("a");n=-'), False),
    ("a parameter given twice", _append_input(', pad=("a");n=1;n=2'), False),
    ("two strings without a space", _append_input(', pad=("a""b")'), False),
    ("a label given twice", _append_input(', pad=("a"), pad=("b")'), False),
    ("a trailing comma", _append_input(","), False),
    ("a Signature in non-canonical base64", _non_canonical_signature, False),
    ("a parameter on a Signature member", _signature_params, False),
    ("a Signature with a character outside base64", _outside_alphabet, False),
    ("a Signature of 63 bytes", _short_signature, False),
    ("a second Signature-Input field line", _second_line("signature-input", 'pad=("a")'),
     False),
    ("a second Signature field line", _second_line("signature", "pad=:AAAA:"), False),
)


@check("lock-layering/holder/signature-fields-strict", requirements=("LOCK-25", "LOCK-29"),
       needs=NEEDS)
def signature_fields_strict(t: Probe) -> None:
    """Signature-Input and Signature are RFC 8941 dictionaries, parsed strictly: a field
    that does not parse is refused as a whole (the uniform 401) even though the "kfc"
    member in it would verify, and what RFC 8941 allows (8192 characters, "*" keys,
    booleans, escapes, 15-digit integers) is accepted. The signature covers exactly the
    named components, each of a field the request has, in lowercase, once."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "strict-fields", holder=holder.public)
    reference = reference_401(t, ks)
    for what, change, accepted in FIELD_VARIANTS:
        fields = signed_read(t, ks, holder)
        change(fields)
        exchange = t.request("GET", ks.path, headers=fields)
        if accepted:
            t.expect_status(exchange, 200, what=f"read, signed, with {what}")
        else:
            expect_uniform_401(t, exchange, reference, what=f"read, signed, with {what}")
    required = cap.REQUIRED_COMPONENTS
    components: list[tuple[str, Sequence[str], Sequence[tuple[str, str]], bool]] = [
        ("@method covered twice", (*required, "@method"), (), False),
        ("a field covered under an uppercase name", (*required, "Accept"),
         (("accept", "*/*"),), False),
        ("a field the request does not have", (*required, "x-absent"), (), False),
        ("a field the request has", (*required, "accept"), (("accept", "*/*"),), True),
    ]
    for what, covered, extra, accepted in components:
        exchange = t.request("GET", ks.path, headers=signed_read(
            t, ks, holder, components=covered, extra=extra))
        if accepted:
            t.expect_status(exchange, 200, what=f"read, signed, with {what}")
        else:
            expect_uniform_401(t, exchange, reference, what=f"read, signed, with {what}")


# --- capabilities whose chain holds but whose text does not ---------------------------------

def _reencoded(capability: str, text: Callable[[dict[str, Any]], str]) -> str:
    """The capability with its JSON written by `text` (same members, same chain)."""
    decoded = cap.decode_capability(capability)
    obj = {"keystore_id": decoded.keystore_id, "caveats": list(decoded.caveats),
           "mac": b64url_encode(decoded.mac)}
    return cap.CAPABILITY_PREFIX + b64url_encode(text(obj).encode("utf-8"))


def capability_of_length(capability: str, length: int) -> str:
    """The same capability, its JSON padded with spaces to make the text `length` long."""
    body_len = (length - len(cap.CAPABILITY_PREFIX)) * 3 // 4
    out = _reencoded(capability, lambda o: json.dumps(o, separators=(",", ":"))[:-1].ljust(
        body_len - 1) + "}")
    assert len(out) == length, (len(out), length)
    return out


@check("lock-layering/capability/format-strict", requirements=("LOCK-11", "LOCK-12",
                                                               "LOCK-29"), needs=NEEDS)
def capability_format_strict(t: Probe) -> None:
    """A capability whose HMAC chain is valid is still refused (the uniform 401) when its
    text breaks the format: another prefix, more than 4096 characters, a repeated or
    unknown JSON member, more than 16 caveats, a caveat that is not a string or not
    printable ASCII (no chain can be computed over it), caveats that are an object, a
    body that is an array, an exp that is not a canonical decimal of at most 2^63 - 1, a
    caveat without '=', an ops caveat with an unknown or repeated operation. At the limits
    (4096 characters, 16 caveats, exp = 2^63 - 1) it is accepted."""
    ks = create_keystore(t, HELD, "strict-capability")
    reference = reference_401(t, ks)
    root = ks.capability
    decoded = cap.decode_capability(root)
    many = root
    for _ in range(cap.MAX_CAVEATS - len(decoded.caveats)):
        many = with_unchecked_caveat(ks, "ops=read", base=many)
    mac_text = b64url_encode(decoded.mac)
    caveats_json = json.dumps(list(decoded.caveats))
    variants: list[tuple[str, str, bool]] = [
        ("another prefix", "kfX1." + root[len(cap.CAPABILITY_PREFIX):], False),
        ("4096 characters", capability_of_length(root, cap.MAX_CAPABILITY_LEN), True),
        ("4097 characters", capability_of_length(root, cap.MAX_CAPABILITY_LEN + 1), False),
        ("16 caveats", many, True),
        ("17 caveats", with_unchecked_caveat(ks, "ops=read", base=many), False),
        ("a repeated member", _reencoded(root, lambda o: (
            f'{{"keystore_id":"{ks.keystore_id}","caveats":["ops=none"],"caveats":'
            f'{caveats_json},"mac":"{mac_text}"}}')), False),
        ("an unknown member", _reencoded(root, lambda o: json.dumps(dict(o, x=1))), False),
        ("a caveat that is a number", _reencoded(root, lambda o: json.dumps(
            dict(o, caveats=[*o["caveats"], 7]))), False),
        ("exp = 2^63 - 1", with_unchecked_caveat(ks, f"exp={cap.MAX_EXPIRY}"), True),
        ("exp = 2^63", with_unchecked_caveat(ks, f"exp={cap.MAX_EXPIRY + 1}"), False),
        ("an exp with a leading zero", with_unchecked_caveat(
            ks, f"exp=0{cap.not_after(decoded)}"), False),
        ("an exp in hexadecimal", with_unchecked_caveat(ks, "exp=0x7fffffff"), False),
        ("an ops caveat naming read twice", with_unchecked_caveat(ks, "ops=read,read"), False),
        ("a caveat without '='", with_unchecked_caveat(ks, "opsread"), False),
        ("an ops caveat naming an unknown operation",
         with_unchecked_caveat(ks, "ops=read,fly"), False),
        ("a caveat outside printable ASCII", cap.encode_capability(cap.Capability(
            ks.keystore_id, (*decoded.caveats, "ops=r\u00e9ad"), decoded.mac)), False),
        ("caveats that are a JSON object", _reencoded(root, lambda o: json.dumps(
            dict(o, caveats={c: True for c in o["caveats"]}))), False),
        ("a JSON array of the member names", cap.CAPABILITY_PREFIX + b64url_encode(
            json.dumps(["caveats", "keystore_id", "mac"]).encode()), False),
    ]
    for what, capability, accepted in variants:
        exchange = call(t, ks, "GET", capability=capability)
        if accepted:
            t.expect_status(exchange, 200, what=f"read with a capability of {what}")
        else:
            expect_uniform_401(t, exchange, reference,
                               what=f"read with a capability of {what}")


# --- unlocking ----------------------------------------------------------------------------------

@check("lock-layering/shares/one-way-to-unlock", requirements=("LOCK-6", "LOCK-10",
                                                               "LOCK-28"), needs=NEEDS)
def one_way_to_unlock(t: Probe) -> None:
    """A request unlocks with the user's share or with one unlock grant: both together,
    the account's own share sent as the user's (the same x-coordinate twice), or a grant
    that does not open, are the one share failure (422, LOCK-6)."""
    ks = create_keystore(t, SHARES, "one-way")
    key = create_key(t, ks, spec.KEY_ED25519)
    message = {"message": b64url_encode(b"unlocked once")}
    grant = granted(t, ks, ks.capability)
    cases = [
        ("the user's share and an unlock grant together",
         {"secret-share": ks.user_share, "unlock-grant": grant}),
        ("the account's share as the user's", {"secret-share": ks.account_share}),
        ("an unlock grant with one bit flipped", {"unlock-grant": _flipped(grant)}),
    ]
    for what, headers in cases:
        exchange = key_op(t, ks, key, "sign", message, share=None, headers=headers)
        t.expect_rejected(exchange, 422, what=f"sign with {what}", failure_class="share")
    t.expect_ok_json(key_op(t, ks, key, "sign", message, share=None,
                            headers={"unlock-grant": grant}), 200,
                     what="sign with the unlock grant alone")


def _flipped(grant: str) -> str:
    body = grant[len(cap.GRANT_PREFIX):]
    index = len(body) // 2
    flipped = "B" if body[index] == "A" else "A"
    return cap.GRANT_PREFIX + body[:index] + flipped + body[index + 1:]


# --- rotation's limit ---------------------------------------------------------------------

@check("lock-layering/rotate/at-most-32-versions", requirements=("LOCK-22",), needs=NEEDS)
def at_most_32_versions(t: Probe) -> None:
    """A key has at most 32 versions: rotating up to version 32 works, and every version
    still verifies what it computed; a 33rd rotation is refused (400, class params)."""
    ks = create_keystore(t, HELD, "rotate-limit")
    key = create_key(t, ks, spec.KEY_HMAC_SHA256)
    for version in range(2, spec.MAX_KEY_VERSIONS + 1):
        t.expect_ok_json(key_op(t, ks, key, "rotate"), 200, what=f"rotate to version {version}")
    t.expect_rejected(key_op(t, ks, key, "rotate"), 400, what="rotate a key of 32 versions",
                      failure_class="params")
    message = b64url_encode(b"the last version")
    answer = t.expect_ok_json(key_op(t, ks, key, "computemac", {"message": message}), 200,
                              what="computemac with version 32")
    if not isinstance(answer, dict) or answer.get("version") != spec.MAX_KEY_VERSIONS:
        t.fail("the current version after 31 rotations is not 32",
               expected=f"version {spec.MAX_KEY_VERSIONS} (LOCK-22)", actual=str(answer))


# --- request bodies under a valid capability ----------------------------------------------------

@check("lock-layering/operations/body-shape-strict", requirements=("API-6", "LOCK-14"),
       needs=NEEDS)
def body_shape_strict(t: Probe) -> None:
    """With every credential right, a body that is not the operation's JSON object is a
    400 (class decode, API-6): an array naming the members, an unknown member, a member
    of the wrong JSON type, a version that is not an integer 1..32, a vault binding that
    is not {"vault", "token"}; a binary member one byte short is a 400 of class length.
    The generic body checks stop at the 401 of a missing credential; these reach the
    body's own parser."""
    ks = create_keystore(t, HELD, "body-shape")
    key = create_key(t, ks, spec.KEY_ED25519)
    message = b64url_encode(b"shaped")
    owner = ks.owner
    keystores = f"/v1/users/{owner.user_id}/keystores"
    cases: list[tuple[str, Callable[[], Exchange]]] = [
        ("sign with an array of the member names",
         lambda: key_op(t, ks, key, "sign", ["message"])),
        ("sign with an unknown member",
         lambda: key_op(t, ks, key, "sign", {"message": message, "context": "AAAA"})),
        ("sign with a message that is a number",
         lambda: key_op(t, ks, key, "sign", {"message": 5})),
        ("create a key with an array of the member names",
         lambda: call(t, ks, "POST", "/keys", body=["key_type"])),
        ("create a key whose key_type is an array",
         lambda: call(t, ks, "POST", "/keys", body={"key_type": [spec.KEY_ED25519]})),
        ("revoke with an array of the member names",
         lambda: call(t, ks, "POST", "/revocations", body=["capability"])),
        ("ask for a root capability with an array",
         lambda: t.request("POST", f"{keystores}/{ks.keystore_id}/capability",
                           token=owner.token, json_body=[])),
        ("create a keystore with an array of the member names",
         lambda: t.request("POST", keystores, token=owner.token, json_body=["scenario"])),
    ]
    for what, send in cases:
        t.expect_rejected(send(), 400, what=what, failure_class="decode")
    # Binary members of a fixed length (LOCK-15, LOCK-21, LOCK-25): one byte short is a
    # length failure, before anything uses them.
    mac_key = create_key(t, ks, spec.KEY_HMAC_SHA256)
    short = b64url_encode(bytes(31))
    lengths: list[tuple[str, Callable[[], Exchange]]] = [
        ("verifymac with a MAC of 31 bytes",
         lambda: key_op(t, ks, mac_key, "verifymac", {"message": message, "mac": short})),
        ("verify with a signature of 63 bytes", lambda: key_op(
            t, ks, key, "verify", {"message": message, "signature": b64url_encode(bytes(63))})),
        ("create a keystore with a holder key of 31 bytes",
         lambda: t.request("POST", keystores, token=owner.token,
                           json_body={"scenario": HELD, "holder": short})),
    ]
    for what, send in lengths:
        t.expect_rejected(send(), 400, what=what, failure_class="length")
    # The vault binding is exactly {"vault": URL, "token": non-empty string} (LOCK-35).
    vault = f"{t.session.accounts.url.rstrip('/')}/edvs/{edv.new_id(os.urandom)}"
    for edv_member, what in ((["token", "vault"], "an array of the member names"),
                             ({"vault": vault}, "no token"),
                             ({"vault": vault, "token": 5}, "a token that is a number"),
                             ({"vault": vault, "token": ""}, "an empty token"),
                             ({"vault": vault, "token": "t", "x": "y"}, "an unknown member")):
        exchange = t.request("POST", keystores, token=owner.token,
                             json_body={"scenario": HELD, "edv": edv_member})
        t.expect_rejected(exchange, 400, what=f"create a keystore whose edv member is {what}",
                          failure_class="decode")
    # A version is an integer 1..32 (LOCK-22): anything else is a decode failure, not a
    # version the key lacks.
    signature = b64url_encode(bytes(64))
    for version in (True, "1", 0, spec.MAX_KEY_VERSIONS + 1, 1.0):
        body = {"message": message, "signature": signature, "version": version}
        t.expect_rejected(key_op(t, ks, key, "verify", body), 400,
                          what=f"verify naming version {json.dumps(version)}",
                          failure_class="decode")
    t.expect_ok_json(key_op(t, ks, key, "sign", {"message": message}), 200,
                     what="sign with the right body")


# --- Content-Digest -----------------------------------------------------------------------------

def signed_sign(t: Probe, ks: Keystore, key: dict[str, Any], signer: Signer, body: bytes,
                digest: str) -> Exchange:
    """A sign request with `body`, signed by `signer` over the required components with
    the given Content-Digest field value."""
    path = f"{ks.path}/keys/{key['key_id']}/sign"
    sent = {"authorization": f"Bearer {ks.capability}", "content-type": "application/json",
            "content-digest": digest}
    url = urlsplit(t.session.base_url + path)
    view = http_signatures.Request("POST", url.netloc, url.path, url.query,
                                   tuple(sent.items()), body, url.scheme)
    params = (("created", int(time.time())), ("nonce", new_nonce()),
              ("keyid", b64url_encode(signer.public)), ("tag", cap.SIGNATURE_TAG))
    entry = http_signatures.SignatureInput(cap.required_components(view), params)
    signature = http_signatures.sign_ed25519(signer.seed, view, entry)
    fields = http_signatures.signature_fields(cap.SIGNATURE_LABEL, entry, signature)
    return t.request("POST", path, headers={**sent, **fields}, body=body)


@check("lock-layering/holder/content-digest-strict", requirements=("LOCK-25",), needs=NEEDS)
def content_digest_strict(t: Probe) -> None:
    """A signed request's Content-Digest must carry a sha-256 member equal to the body's
    digest (RFC 9530); other algorithms are ignored: a digest with only a sha-512 member,
    even a right one, is the uniform 401, and one with a right sha-256 beside another
    algorithm is accepted."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "content-digest", holder=holder.public)
    key = create_key(t, ks, spec.KEY_ED25519, signer=holder)
    reference = reference_401(t, ks)
    body = json.dumps({"message": b64url_encode(b"digested")}).encode()
    sha512 = "sha-512=:" + base64.b64encode(hashlib.sha512(body).digest()).decode() + ":"
    sha256 = http_signatures.content_digest(body)
    expect_uniform_401(t, signed_sign(t, ks, key, holder, body, sha512), reference,
                       what="sign, signed, with only a sha-512 Content-Digest")
    t.expect_ok_json(signed_sign(t, ks, key, holder, body, f"{sha512}, {sha256}"), 200,
                     what="sign, signed, with a sha-512 and the right sha-256 digest")


@check("lock-layering/holder/signature-params-strict", requirements=("LOCK-25", "LOCK-26"),
       needs=NEEDS)
def signature_params_strict(t: Probe) -> None:
    """The holder's own signature over the right components is refused (the uniform 401)
    when its parameters break LOCK-25/26: another tag, another alg, an unknown parameter,
    no or a non-integer created, an expires already past or of now, or not an integer, a
    malformed nonce (8 characters, an integer), a keyid that is not the holder's key; a
    created 60 s ahead is accepted."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "strict-params", holder=holder.public)
    reference = reference_401(t, ks)
    now = int(time.time())

    def params(**changes: Any) -> list[tuple[str, Any]]:
        base: dict[str, Any] = {"created": now, "nonce": new_nonce(),
                                "keyid": b64url_encode(holder.public),
                                "alg": http_signatures.ALG_ED25519, "tag": cap.SIGNATURE_TAG}
        base.update(changes)
        return [(k, v) for k, v in base.items() if v is not None]

    cases = [
        ("another tag", params(tag="other-tag")),
        ("another alg", params(alg="rsa-pss-sha512")),
        ("an unknown parameter", params(extra="x")),
        ("no created", params(created=None)),
        ("a created that is a string", params(created=str(now))),
        ("an expires already past", params(expires=now - 1)),
        ("a nonce of 8 characters", params(nonce="AAAAAAAA")),
        ("a nonce that is an integer", params(nonce=123456789012345)),
        ("an expires that is a string", params(expires=str(now + 120))),
        ("a keyid of another key", params(keyid=b64url_encode(Signer.fresh().public))),
    ]
    for what, chosen in cases:
        exchange = t.request("GET", ks.path, headers=signed_read(t, ks, holder,
                                                                  params=chosen))
        expect_uniform_401(t, exchange, reference, what=f"read, signed, with {what}")
    t.expect_status(t.request("GET", ks.path, headers=signed_read(
        t, ks, holder, params=params(expires=now + 120))), 200,
        what="read, signed, with an expires in the future")
    # The edges of the window (the server's clock is not behind the runner's): expires is
    # valid while now < expires; created may lie up to 60 s ahead.
    now = int(time.time())
    expect_uniform_401(t, t.request("GET", ks.path, headers=signed_read(
        t, ks, holder, params=params(created=now, expires=now))), reference,
        what="read, signed, with an expires of now")
    now = int(time.time())
    t.expect_status(t.request("GET", ks.path, headers=signed_read(
        t, ks, holder, params=params(created=now + cap.SIGNATURE_MAX_SKEW))), 200,
        what=f"read, signed, with a created {cap.SIGNATURE_MAX_SKEW} s ahead")


#: Tries to judge one request within one second of the server's clock.
EDGE_ATTEMPTS = 12


def read_created_at(t: Probe, ks: Keystore, holder: Signer, created: int) -> Exchange:
    """A read of the keystore signed by its holder with this created time (fresh nonce)."""
    params = (("created", created), ("nonce", new_nonce()),
              ("keyid", b64url_encode(holder.public)), ("alg", http_signatures.ALG_ED25519),
              ("tag", cap.SIGNATURE_TAG))
    return t.request("GET", ks.path, headers=signed_read(t, ks, holder, params=params))


@check("lock-layering/holder/created-window-lower-edge", requirements=("LOCK-26",),
       needs=NEEDS)
def created_window_lower_edge(t: Probe) -> None:
    """A signature created exactly 300 s before the server's now is accepted (the window
    is now - 300 <= created <= now + 60, both edges in). The runner pins the server's
    second s with the window's upper edge, which needs no shared clock: created = s + 60
    accepted means now >= s, created = s + 61 refused means now < s + 1. A read with
    created = s - 300 sent between those two was judged at now = s and must be accepted.
    A second that ends between the three requests proves nothing: the runner tries
    again (up to 12 times), moving s by the server's answers."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "created-edge", holder=holder.public)
    offset = 0  # the server's second minus the runner's, as the upper edge shows it
    for _ in range(EDGE_ATTEMPTS):
        time.sleep(1.0 - time.time() % 1.0 + 0.01)  # start early in a second
        second = int(time.time()) + offset
        if read_created_at(t, ks, holder, second + cap.SIGNATURE_MAX_SKEW).status != 200:
            offset -= 1  # the server's now < s: its clock is behind
            continue
        at_edge = read_created_at(t, ks, holder, second - cap.SIGNATURE_MAX_AGE)
        if at_edge.status == 200:
            return
        if read_created_at(t, ks, holder, second + cap.SIGNATURE_MAX_SKEW + 1).status != 200:
            t.fail(f"a read signed with created = now - {cap.SIGNATURE_MAX_AGE} (the "
                   "window's first second, the server's now pinned by the upper edge just "
                   "before and after) is refused (LOCK-26)", expected="200",
                   actual=describe(at_edge), exchange=at_edge)
        offset += 1  # the server's now >= s + 1: a second ended, or its clock is ahead
    t.fail(f"could not pin the server's second in {EDGE_ATTEMPTS} tries: the window's upper "
           f"edge (created = now + {cap.SIGNATURE_MAX_SKEW}) was never accepted then refused "
           "one second on within one second (LOCK-26)")


# --- shares that would open a keystore without being two shares of its secret ---------------

@check("lock-layering/shares/degenerate-shares-refused", requirements=("LOCK-3", "LOCK-10",
                                                                       "LOCK-6"), needs=NEEDS)
def degenerate_shares_refused(t: Probe) -> None:
    """A share with x-coordinate 0 is the secret itself: combined with any other share,
    the other is multiplied by zero, so a server that takes it opens the keystore without
    the account server's share (or without the user's, if the account server sends it).
    Either way round it is the one share failure (422, LOCK-3), though the secret it
    carries is right. And a keystore is never made from two shares of a secret shorter
    than 32 bytes (LOCK-10): the runner sends a 2-of-2 split of a 31-byte secret."""
    ks = create_keystore(t, SHARES, "degenerate")
    key = create_key(t, ks, spec.KEY_ED25519)
    message = {"message": b64url_encode(b"only with both shares")}
    secret_as_share = b64url_encode(ks.secret + b"\x00")
    expect_share_refused(t, key_op(t, ks, key, "sign", message, share=secret_as_share),
                         what="sign with the secret itself as the user's share (x = 0)")
    accounts = t.session.accounts
    accounts.set_share(ks.owner.user_id, secret_as_share)
    try:
        expect_share_refused(t, key_op(t, ks, key, "sign", message),
                             what="sign while the account server answers the secret itself "
                                  "as its share (x = 0)")
    finally:
        accounts.set_share(ks.owner.user_id, ks.account_share)
    t.expect_ok_json(key_op(t, ks, key, "sign", message), 200,
                     what="sign with both right shares after the refusals")
    user, _, _, _ = lock_user(t, "short-secret")
    short = shamir.split(os.urandom(spec.SECRET_LEN - 1), 2, 2, os.urandom).shares
    accounts.set_share(user.user_id, b64url_encode(short[0]))
    exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores", token=user.token,
                         headers={"secret-share": b64url_encode(short[1])},
                         json_body={"scenario": SHARES})
    expect_share_refused(t, exchange, what="create a shares keystore from two shares of a "
                                           "31-byte secret")


# --- the body's lengths come before the key and the lock ---------------------------------------

@check("lock-layering/operations/lengths-before-key-and-lock",
       requirements=("API-18", "LOCK-16", "LOCK-17", "LOCK-21"), needs=NEEDS)
def lengths_before_key_and_lock(t: Probe) -> None:
    """A binary member of the wrong length is part of the JSON shape (400, class length),
    checked before the key is looked up (404) and before the lock is opened (422): sent
    to a key that does not exist, or without the share in a shares keystore, a nonce of
    11 bytes, a wrapped_key of 31 and a MAC of 31 are each the same 400."""
    ks = create_keystore(t, SHARES, "lengths-first")
    keys = {kind: create_key(t, ks, kind)
            for kind in (spec.KEY_AES256GCM, spec.KEY_X25519, spec.KEY_HMAC_SHA256)}
    message = b64url_encode(b"shaped first")
    bodies = {
        "decrypt": (spec.KEY_AES256GCM, {"nonce": b64url_encode(bytes(spec.NONCE_LEN - 1)),
                                         "ciphertext": b64url_encode(bytes(32))}),
        "unwrap": (spec.KEY_X25519, {
            "enc": b64url_encode(primitives.x25519_public_key(os.urandom(32))),
            "wrapped_key": b64url_encode(bytes(spec.CEK_MIN_LEN + spec.TAG_LEN - 1))}),
        "verifymac": (spec.KEY_HMAC_SHA256, {"message": message,
                                             "mac": b64url_encode(bytes(31))}),
    }
    missing = {"key_id": b64url_encode(os.urandom(16))}
    for operation, (kind, body) in bodies.items():
        t.expect_rejected(key_op(t, ks, missing, operation, body), 400, failure_class="length",
                          what=f"{operation} with a short member, on a key that does not "
                               "exist")
        t.expect_rejected(key_op(t, ks, keys[kind], operation, body, share=None), 400,
                          failure_class="length",
                          what=f"{operation} with a short member, without the share")


# --- AES-GCM's tag is part of the ciphertext -------------------------------------------------

@check("lock-layering/encrypt/ciphertext-holds-its-tag", requirements=("LOCK-16",),
       needs=NEEDS)
def ciphertext_holds_its_tag(t: Probe) -> None:
    """A ciphertext ends in its 16-byte tag: the empty plaintext encrypts to exactly 16
    bytes, which decrypt back to the empty plaintext; 15 bytes or none cannot hold a tag
    and are a 400 (class length), not a forgery (422, class aead)."""
    ks = create_keystore(t, HELD, "tag-only")
    key = create_key(t, ks, spec.KEY_AES256GCM)
    exchange = key_op(t, ks, key, "encrypt", {"plaintext": ""})
    answer = t.expect_ok_json(exchange, 200, what="encrypt the empty plaintext")
    nonce = decoded(t, exchange, answer, "nonce", spec.NONCE_LEN)
    ciphertext = decoded(t, exchange, answer, "ciphertext", spec.TAG_LEN)
    body = {"nonce": b64url_encode(nonce), "ciphertext": b64url_encode(ciphertext)}
    exchange = key_op(t, ks, key, "decrypt", body)
    answer = t.expect_ok_json(exchange, 200, what="decrypt a ciphertext that is only a tag")
    if decoded(t, exchange, answer, "plaintext") != b"":
        t.fail("decrypting the empty plaintext's ciphertext gave something else",
               expected='plaintext "" (LOCK-16)', actual=describe(exchange),
               exchange=exchange)
    for length in (spec.TAG_LEN - 1, 0):
        short = dict(body, ciphertext=b64url_encode(ciphertext[:length]))
        t.expect_rejected(key_op(t, ks, key, "decrypt", short), 400, failure_class="length",
                          what=f"decrypt a ciphertext of {length} bytes")
