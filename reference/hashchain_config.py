"""Configuration of the hashchain flow, read once when the app is made (never per request).

  KEYFLOWS_HASHCHAIN_ORIGIN     the log's origin (default "keyflows.test/hashchain"; the
                                origin stored when the log was created wins)
  KEYFLOWS_HASHCHAIN_DOMAINS    comma-separated domains served (default "keyflows.test")
  KEYFLOWS_HASHCHAIN_WITNESSES  comma-separated "<vkey> <submission URL prefix>" pairs
                                (c2sp.org/tlog-witness), none by default
  KEYFLOWS_HASHCHAIN_MAX_CHECKPOINT_LAG
                                how many entries a UID's last_checkpoint may lie behind the
                                log (HC-19; default 4096; test runs use a few, so the
                                runner can reach the edge)

A bad value stops the server at start-up (ValueError / SpecError), as reference/config.py
does for the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu

ENV_ORIGIN = "KEYFLOWS_HASHCHAIN_ORIGIN"
ENV_DOMAINS = "KEYFLOWS_HASHCHAIN_DOMAINS"
ENV_WITNESSES = "KEYFLOWS_HASHCHAIN_WITNESSES"
ENV_MAX_CHECKPOINT_LAG = "KEYFLOWS_HASHCHAIN_MAX_CHECKPOINT_LAG"
DEFAULT_ORIGIN = "keyflows.test/hashchain"
DEFAULT_DOMAINS = ("keyflows.test",)


@dataclass(frozen=True)
class Witness:
    """A witness the log submits to: its key and its submission URL prefix."""

    verifier: note.Verifier
    url: str


def parse_witnesses(text: str) -> tuple[Witness, ...]:
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        parts = item.split()
        if len(parts) != 2 or not parts[1].startswith(("http://", "https://")):
            raise ValueError(f"{ENV_WITNESSES}: each item is '<vkey> <http(s) URL>'")
        verifier = note.parse_vkey(parts[0])
        if verifier.sig_type != note.SIG_COSIGNATURE:
            raise ValueError(f"{ENV_WITNESSES}: a witness vkey has signature type 0x04")
        out.append(Witness(verifier, parts[1].rstrip("/")))
    return tuple(out)


@dataclass(frozen=True)
class Config:
    origin: str
    domains: tuple[str, ...]
    witnesses: tuple[Witness, ...]
    max_checkpoint_lag: int = hu.DEFAULT_MAX_CHECKPOINT_LAG


def parse_lag(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= hc.MAX_INDEX:
        raise ValueError(f"{ENV_MAX_CHECKPOINT_LAG}: a number of entries, 0 or more")
    return int(text)


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    origin = env.get(ENV_ORIGIN, DEFAULT_ORIGIN)
    hc.check_origin(origin)
    domains = env.get(ENV_DOMAINS)
    return Config(origin=origin,
                  domains=(tuple(d.strip() for d in domains.split(",") if d.strip())
                           if domains else DEFAULT_DOMAINS),
                  witnesses=parse_witnesses(env.get(ENV_WITNESSES, "")),
                  max_checkpoint_lag=parse_lag(env.get(ENV_MAX_CHECKPOINT_LAG,
                                                       str(hu.DEFAULT_MAX_CHECKPOINT_LAG))))


def log_verifier(origin: str, public_key: bytes) -> note.Verifier:
    """The verifier of the log's own key under its (checked) origin, made at start-up."""
    return note.log_verifier(origin, public_key)
