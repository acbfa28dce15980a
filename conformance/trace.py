"""Printed traces, curl lines and mismatch descriptions (secrets redacted).

Traces show each exchange as sent and received, the request prefixed '>' and the
response '<'; what the server under test asked the runner's account server during the
check appears between them, prefixed '>>' and '<<'. CI logs are public more often than
not, so every printed form goes through conformance/redaction.py.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from keyflows.conformance.http import Exchange
from keyflows.conformance.redaction import (
    SECRET_HEADERS,
    escape_controls,
    redact_authorization,
    redact_text,
)

MAX_SHOWN_BODY = 2000
MAX_INLINE_CURL_BODY = 4096
TOKEN_VARIABLE = "KEYFLOWS_TOKEN"


def show_body(body: bytes, total: int | None = None) -> str:
    if not body:
        return ""
    # Redact before truncating, so a cut can never expose part of a secret value.
    text = redact_text(body.decode("utf-8", errors="backslashreplace"))
    whole = total if total is not None else len(body)
    if len(text) > MAX_SHOWN_BODY:
        text = text[:MAX_SHOWN_BODY] + f"... ({whole} bytes in total)"
    elif whole > len(body):
        text += f"... ({whole} bytes in total)"
    return text


def show_header(name: str, value: str) -> str:
    if name.lower() == "authorization":
        value = redact_authorization(value)
    elif name.lower() in SECRET_HEADERS:
        value = f"<redacted {len(value)} chars>"
    else:
        value = redact_text(value)
    return f"{name}: {value}"


def _short_url(url: str) -> str:
    return redact_text(url if len(url) <= 300 else url[:297] + "...")


def format_exchange(exchange: Exchange, indent: str = "  ") -> str:
    """A redacted trace of one exchange."""
    side = exchange.party != "runner"
    out, back = (">>", "<<") if side else (">", "<")
    lines = []
    if side:
        lines.append(f"(the server under test asked the runner's {party_name(exchange)}:)")
    lines.append(f"{out} {exchange.method} {_short_url(exchange.url)}")
    lines += [f"{out} {show_header(k, v)}" for k, v in exchange.request_headers]
    body = show_body(exchange.request_body)
    if body:
        lines += [f"{out} ", *(f"{out} {b}" for b in body.splitlines())]
    if exchange.declared_length is not None:
        lines.append(f"{out} (Content-Length {exchange.declared_length} declared, "
                     f"{len(exchange.request_body)} bytes sent, the rest withheld)")
    if exchange.status:
        lines.append(f"{back} {exchange.status} {exchange.reason}".rstrip())
        lines += [f"{back} {show_header(k, v)}" for k, v in exchange.response_headers]
        body = show_body(exchange.response_body, exchange.body_total)
        if body:
            lines += [f"{back} ", *(f"{back} {b}" for b in body.splitlines())]
        if exchange.error:
            lines.append(f"{back} (incomplete: {exchange.error})")
    else:
        lines.append(f"{back} (no answer: {exchange.error or 'none'})")
    lines.append(f"  ({exchange.elapsed_ms:.1f} ms)")
    return "\n".join(indent + escape_controls(line) for line in lines)


def party_name(exchange: Exchange) -> str:
    return exchange.party.replace("-", " ")


def during(exchange: Exchange, others: Iterable[Exchange]) -> list[Exchange]:
    """The side exchanges that started while `exchange` was in flight."""
    end = exchange.started + exchange.elapsed_ms / 1000
    return [o for o in others if exchange.started <= o.started <= end + 0.05]


def format_with_side_calls(exchange: Exchange, side: list[Exchange],
                           indent: str = "  ") -> str:
    """The exchange's trace followed by the calls it made the server under test send to
    the runner's own servers (or a note that it asked no account server, when it carried
    a bearer token)."""
    parts = [format_exchange(exchange, indent)]
    calls = during(exchange, side)
    parts += [format_exchange(call, indent + "  ") for call in calls]
    carried_token = any(k.lower() == "authorization" and v.lower().startswith("bearer ")
                        for k, v in exchange.request_headers)
    asked_account = any(c.party == "account-server" for c in calls)
    if not asked_account and carried_token and exchange.party == "runner":
        parts.append(f"{indent}  (the server under test did not ask the runner's account "
                     f"server during this request)")
    return "\n".join(parts)


def merged(exchanges: list[Exchange], account: list[Exchange]) -> list[Exchange]:
    """Both parties' exchanges in the order they started."""
    return sorted([*exchanges, *account], key=lambda e: e.started)


def curl_reproducer(exchange: Exchange, *, body_file: str | None = None,
                    redact: bool = True) -> str:
    """A shell command that sends the same request. Redacted (for logs) unless asked not
    to be; a large or binary body is read from `body_file` when given."""
    parts = ["curl", "-sS", "-i", "-X", exchange.method, shlex.quote(exchange.url)]
    for name, value in exchange.sent_headers.items():
        if redact and name.lower() == "authorization":
            scheme, _, credential = value.partition(" ")
            if credential.strip():
                # Double quotes so the shell expands the variable holding a live token.
                parts += ["-H", f'"{name}: {scheme} ${TOKEN_VARIABLE}"']
                continue
        if redact and name.lower() in SECRET_HEADERS:
            parts += ["-H", f'"{name}: ${name.upper().replace("-", "_")}"']
            continue
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if exchange.chunked:
        parts += ["-H", shlex.quote("Transfer-Encoding: chunked")]
    body = exchange.request_body
    if exchange.declared_length is not None:
        return (" ".join(parts) + f"   # declares Content-Length {exchange.declared_length} "
                f"and withholds the body: curl cannot send that (see replay.py)")
    if not body and not exchange.chunked:
        return " ".join(parts)
    if body_file is not None:
        return " ".join([*parts, "--data-binary", shlex.quote("@" + body_file)])
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None and len(body) <= MAX_INLINE_CURL_BODY // 4:
        printf = "".join(f"\\x{b:02x}" for b in body)
        return f"printf '{printf}' | " + " ".join([*parts, "--data-binary", "@-"])
    if text is None or len(body) > MAX_INLINE_CURL_BODY:
        return (" ".join([*parts, "--data-binary", "@body.bin"])
                + f"   # body: {len(body)} bytes, not shown; --save-exchanges DIR writes it")
    shown = redact_text(text) if redact else text
    return " ".join([*parts, "--data-binary", shlex.quote(shown)])


# --- mismatches --------------------------------------------------------------------------

LONG_VALUE = 40
_CONTEXT = 12


def first_offset(expected: str | bytes, actual: str | bytes) -> int:
    """The first offset at which two values differ (the shorter length if one is a
    prefix of the other)."""
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return i
    return min(len(expected), len(actual))


def _window(value: str | bytes, at: int) -> str:
    start = max(at - _CONTEXT, 0)
    piece = value[start:at + _CONTEXT]
    shown = piece.hex() if isinstance(piece, bytes) else piece
    return ("..." if start else "") + repr(shown) + ("..." if at + _CONTEXT < len(value)
                                                      else "")


def describe_mismatch(expected: Any, actual: Any) -> str:
    """'expected X, got Y'; for long strings or bytes, where they first differ and the
    neighbourhood of that offset instead of two walls of text."""
    same_kind = (isinstance(expected, str) and isinstance(actual, str)) or (
        isinstance(expected, bytes) and isinstance(actual, bytes))
    if same_kind and max(len(expected), len(actual)) > LONG_VALUE:
        at = first_offset(expected, actual)
        lengths = (f"lengths {len(expected)} and {len(actual)}"
                   if len(expected) != len(actual) else f"length {len(expected)}")
        return (f"values differ first at offset {at} ({lengths}): expected "
                f"{_window(expected, at)}, got {_window(actual, at)}")
    return f"expected {expected!r}, got {actual!r}"


def json_kind(value: Any) -> type:
    """The JSON type of a value: bool, int, float, str, dict, list or NoneType (a tracked
    answer object is a dict, and True is not an int)."""
    for kind in (bool, int, float, str, dict, list, bytes):
        if isinstance(value, kind):
            return kind
    return type(value)


def first_difference(expected: Any, actual: Any, where: str = "$") -> str | None:
    """Where two JSON values differ, type-exact (1 and 1.0 and true differ), or None.
    Long strings report the first differing offset."""
    if json_kind(expected) is not json_kind(actual):
        return f"{where}: expected {expected!r}, got {actual!r}"
    if isinstance(expected, dict):
        for key in expected:
            if key not in actual:
                return f"{where}.{key}: missing"
        for key in actual:
            if key not in expected:
                return f"{where}.{key}: unexpected member"
        for key in expected:
            diff = first_difference(expected[key], actual[key], f"{where}.{key}")
            if diff:
                return diff
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{where}: expected {len(expected)} items, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = first_difference(e, a, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if expected != actual:
        return f"{where}: {describe_mismatch(expected, actual)}"
    return None
