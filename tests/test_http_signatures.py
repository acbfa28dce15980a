"""HTTP Message Signatures (keyflows.spec.http_signatures) against RFC 9421's own example.

Provenance: RFC 9421 (February 2024), appendix B.1.4 "Example Ed25519 Test Key"
(test-key-ed25519, PKCS#8 PEM below) and appendix B.2.6 "Signing a Request Using ed25519":
the test-request of appendix B.2 (POST /foo?param=Value&Pet=dog, Host example.com, Date
Tue, 20 Apr 2021 02:07:55 GMT, Content-Type application/json, Content-Length 18, body
{"hello": "world"}), its signature base and the Signature field value under label
sig-b26, copied from the RFC text.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization

from keyflows.spec import http_signatures as hs
from keyflows.spec.errors import BindingError, DecodeError, SignatureError

B14_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
B14_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
B26_SIGNATURE_INPUT = ('sig-b26=("date" "@method" "@path" "@authority" "content-type" '
                       '"content-length");created=1618884473;keyid="test-key-ed25519"')
B26_SIGNATURE_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"')
B26_SIGNATURE = ("sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6"
                 "vuQv5lIp5WPpBKRCw==:")


def _seed() -> bytes:
    key = serialization.load_pem_private_key(B14_PRIVATE_PEM, None)
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def _public() -> bytes:
    key = serialization.load_pem_public_key(B14_PUBLIC_PEM)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _test_request(**changes: object) -> hs.Request:
    fields: dict[str, object] = {"method": "POST", "authority": "example.com", "path": "/foo",
              "query": "param=Value&Pet=dog",
              "headers": (("Host", "example.com"), ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
                          ("Content-Type", "application/json"), ("Content-Length", "18")),
              "body": b'{"hello": "world"}'}
    fields.update(changes)
    return hs.Request(**fields)  # type: ignore[arg-type]


def _entry() -> hs.SignatureInput:
    return hs.parse_signature_input([B26_SIGNATURE_INPUT])["sig-b26"]


def test_b26_signature_base_byte_for_byte() -> None:
    assert hs.signature_base(_test_request(), _entry()) == B26_SIGNATURE_BASE.encode()


def test_b26_signature_is_reproduced_and_serialized() -> None:
    signature = hs.sign_ed25519(_seed(), _test_request(), _entry())
    fields = hs.signature_fields("sig-b26", _entry(), signature)
    assert fields == {"signature-input": B26_SIGNATURE_INPUT, "signature": B26_SIGNATURE}
    assert hs.parse_signature([B26_SIGNATURE])["sig-b26"] == signature


def test_b26_signature_verifies_with_the_public_key() -> None:
    signature = hs.parse_signature([B26_SIGNATURE])["sig-b26"]
    hs.verify_ed25519(_public(), _test_request(), _entry(), signature)


@pytest.mark.parametrize("change", [
    {"method": "PUT"}, {"path": "/bar"}, {"authority": "example.org"},
    {"headers": (("Date", "Tue, 20 Apr 2021 02:07:56 GMT"), ("Content-Type", "application/json"),
                 ("Content-Length", "18"))},
    {"headers": (("Date", "Tue, 20 Apr 2021 02:07:55 GMT"), ("Content-Type", "text/plain"),
                 ("Content-Length", "18"))},
], ids=["method", "path", "authority", "date", "content-type"])
def test_b26_refused_with_one_covered_component_changed(change: dict[str, object]) -> None:
    signature = hs.parse_signature([B26_SIGNATURE])["sig-b26"]
    with pytest.raises(SignatureError):
        hs.verify_ed25519(_public(), _test_request(**change), _entry(), signature)


def test_an_uncovered_component_may_change() -> None:
    signature = hs.parse_signature([B26_SIGNATURE])["sig-b26"]
    hs.verify_ed25519(_public(), _test_request(query="other=1"), _entry(), signature)


def test_changed_parameters_break_the_signature() -> None:
    signature = hs.parse_signature([B26_SIGNATURE])["sig-b26"]
    later = hs.parse_signature_input([B26_SIGNATURE_INPUT.replace("1618884473",
                                                                  "1618884474")])["sig-b26"]
    with pytest.raises(SignatureError):
        hs.verify_ed25519(_public(), _test_request(), later, signature)


def test_derived_components() -> None:
    request = _test_request(scheme="https")
    assert hs.component_value(request, "@query") == "?param=Value&Pet=dog"
    assert hs.component_value(_test_request(query=""), "@query") == "?"
    assert hs.component_value(request, "@target-uri") == \
        "https://example.com/foo?param=Value&Pet=dog"
    assert hs.component_value(request, "@request-target") == "/foo?param=Value&Pet=dog"
    assert hs.component_value(_test_request(authority="EXAMPLE.com"), "@authority") == \
        "example.com"
    two_lines = _test_request(headers=(("X-A", " one "), ("x-a", "two")))
    assert hs.component_value(two_lines, "x-a") == "one, two"
    with pytest.raises(DecodeError):
        hs.component_value(request, "x-missing")


@pytest.mark.parametrize("text", [
    'sig=("a";sf)', 'sig=("a" "a")', 'sig=("a");created=1.5', 'sig=(a)', 'sig=("a"', 'Sig=("a")',
    'sig=("a"),', 'sig=("a"), sig=("b")', 'sig=("a");x=1;x=2', 'sig=("\\x")',
])
def test_signature_input_is_parsed_strictly(text: str) -> None:
    with pytest.raises(DecodeError):
        hs.parse_signature_input([text])


@pytest.mark.parametrize("text", ["sig=:AAAA", "sig=:A===:", "sig=:AAB=:;x=1", "sig=abc"])
def test_signature_is_parsed_strictly(text: str) -> None:
    with pytest.raises(DecodeError):
        hs.parse_signature([text])


def test_only_one_field_line() -> None:
    with pytest.raises(DecodeError):
        hs.parse_signature_input([B26_SIGNATURE_INPUT, B26_SIGNATURE_INPUT])


def test_content_digest() -> None:
    body = b'{"hello": "world"}'
    # RFC 9530 appendix: the sha-256 Content-Digest of {"hello": "world"}.
    assert hs.content_digest(body) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    hs.check_content_digest([hs.content_digest(body)], body)
    with pytest.raises(BindingError):
        hs.check_content_digest([hs.content_digest(body)], body + b" ")
    with pytest.raises(BindingError):
        hs.check_content_digest(["sha-512=:" + base64.b64encode(bytes(64)).decode() + ":"],
                                body)
