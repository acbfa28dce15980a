"""Redaction by value: every secret the runner minted or learned is removed from printed
traces wherever it appears (a header, a JSON member, an error body echoing it, a URL).

Secrets enter the registry three ways: the runner's account server mints tokens; the
client actions (conformance/clients.py) register the keys, passwords and shares they
make; and every exchange teaches it the values of credential-like members and headers
(a session token the server issued, a capability, a share). Byte secrets are registered
in every text form a server might echo: base64url, standard base64 and hex.

Printed traces also mask encrypted key material by member name (ciphertext, nonce, salt),
as before: not secret, but long and of no use in a log. Reproducers saved with
--save-exchanges are never redacted (the test keys are throwaway).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

CREDENTIAL_MEMBERS = frozenset({
    "access_token", "token", "session_token", "capability", "secret", "plaintext", "cek",
    "password", "share", "secret_share", "private_key", "seed", "mac_key", "key_material",
    "grant"})
"""JSON members whose values are learned as secrets from any exchange."""
MASKED_MEMBERS = (*sorted(CREDENTIAL_MEMBERS), "ciphertext", "nonce", "salt", "wrapped_key")
"""JSON members whose string values printed traces mask by name."""
SECRET_HEADERS = ("secret-share", "unlock-grant")
"""Headers whose whole value is secret (lock-layering: the user's share, LOCK-10, and an
unlock grant, LOCK-28)."""
MIN_SECRET_LEN = 8
"""Shorter values would blank out ordinary words; no minted secret is that short."""

_MASKED_VALUE = re.compile(r'"(' + "|".join(MASKED_MEMBERS) + r')"(\s*:\s*)"([^"\\]*)"')
_RUN = re.compile(r"[A-Za-z0-9_\-+/=.~]{" + str(MIN_SECRET_LEN) + ",}")


def text_forms(value: str | bytes) -> list[str]:
    """The text forms a secret may take on the wire."""
    if isinstance(value, str):
        return [value]
    url = base64.urlsafe_b64encode(value).decode()
    std = base64.b64encode(value).decode()
    return [url, url.rstrip("="), std, std.rstrip("="), value.hex()]


class SecretRegistry:
    """Known secret strings, and a redactor that replaces them in any text (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: set[str] = set()
        self._by_prefix: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, value: str | bytes | None) -> None:
        if not value:
            return
        with self._lock:
            for form in text_forms(value):
                if len(form) < MIN_SECRET_LEN or form in self._exact:
                    continue
                self._exact.add(form)
                bucket = self._by_prefix.setdefault(form[:MIN_SECRET_LEN], [])
                bucket.append(form)
                bucket.sort(key=len, reverse=True)

    def learn_json(self, value: Any) -> None:
        """Register the string values of credential-like members, at any depth."""
        if isinstance(value, dict):
            for key, item in value.items():
                if key in CREDENTIAL_MEMBERS and isinstance(item, str):
                    self.add(item)
                else:
                    self.learn_json(item)
        elif isinstance(value, list):
            for item in value:
                self.learn_json(item)

    def learn_headers(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            lowered = name.lower()
            if lowered == "authorization":
                self.add(value.partition(" ")[2].strip())
            elif lowered in SECRET_HEADERS:
                self.add(value.strip())

    def learn_body(self, body: bytes, media_type: str) -> None:
        if not body or len(body) > 1 << 20 or "json" not in media_type:
            return
        try:
            self.learn_json(json.loads(body))
        except (ValueError, RecursionError):
            return

    def redact(self, text: str) -> str:
        """The text with every known secret replaced by `<redacted N chars>`."""
        if not self._exact or len(text) < MIN_SECRET_LEN:
            return text
        with self._lock:
            exact = self._exact
            return _RUN.sub(lambda m: self._redact_run(m.group(0), exact), text)

    def _redact_run(self, run: str, exact: set[str]) -> str:
        if run in exact:
            return _marker(run)
        out: list[str] = []
        last = i = 0
        end = len(run) - MIN_SECRET_LEN
        while i <= end:
            for candidate in self._by_prefix.get(run[i:i + MIN_SECRET_LEN], ()):
                if run.startswith(candidate, i):
                    out += [run[last:i], _marker(candidate)]
                    i = last = i + len(candidate)
                    break
            else:
                i += 1
        if not out:
            return run
        return "".join([*out, run[last:]])


def _marker(secret: str) -> str:
    return f"<redacted {len(secret)} chars>"


SECRETS = SecretRegistry()
"""The process's registry: the runner, its account server and its client actions share it."""


def remember_secret(value: str | bytes | None) -> None:
    """Register a secret the runner made, so no printed trace shows it."""
    SECRETS.add(value)


def mask_members(text: str) -> str:
    """Mask the string values of credential and key-material members by name."""
    return _MASKED_VALUE.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"<redacted {len(m.group(3))} chars>"', text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Control characters (but tab and newline) as visible escapes: a server's answer
    must not repaint the terminal, corrupt an XML report or hide text behind a CR."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def redact_text(text: str) -> str:
    """Members masked by name, every known secret value removed wherever it is, and
    control characters escaped: the form of any server-made text the runner prints."""
    return escape_controls(SECRETS.redact(mask_members(text)))


def redact_authorization(value: str) -> str:
    """Keep the scheme (the point of many auth checks), hide the credential."""
    scheme, _, credential = value.partition(" ")
    if not credential.strip():
        return SECRETS.redact(value)
    return f"{scheme} <redacted {len(credential)} chars>"
