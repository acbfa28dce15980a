"""--save-exchanges DIR: each failing check's exchanges, unredacted, and a replay script.

    DIR/run.json            target, mode, the account server's address, the re-run line
    DIR/accounts.json       every token and share the run's account server held
    DIR/replay.py           python3 DIR/replay.py CHECK-ID  (standard library only)
    DIR/<check>/exchanges.json, NN-request.bin, NN-response.bin, curl.sh

The test keys and tokens are throwaway, so nothing is redacted: a reproducer that hides
the token or the body does not reproduce. replay.py restarts the account server on the
run's address with the run's tokens, so the server under test can validate them again.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyflows.conformance.account import AccountServer
from keyflows.conformance.http import Exchange
from keyflows.conformance.runner import ERRORED, FAILED, Result
from keyflows.conformance.trace import curl_reproducer

REPLAY_SOURCE = Path(__file__).with_name("replay_script.py")


def folder_name(check_id: str) -> str:
    return check_id.replace("/", "__")


def request_target(exchange: Exchange) -> str:
    """The request target as sent: the URL without scheme and authority."""
    parts = urlsplit(exchange.url)
    prefix = f"{parts.scheme}://{parts.netloc}"
    return exchange.url[len(prefix):] or "/"


class ExchangeSaver:
    def __init__(self, root: Path, *, target: str, mode: str, account: AccountServer,
                 rerun: str) -> None:
        self.root = root
        self.account = account
        self.saved: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        replay = root / "replay.py"
        replay.write_text(REPLAY_SOURCE.read_text(encoding="utf-8"), encoding="utf-8")
        replay.chmod(0o755)
        self.rerun = rerun
        self._write_json(root / "run.json", {"target": target, "mode": mode,
                                             "account_url": account.url, "rerun": rerun})

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def save(self, result: Result) -> None:
        """Write a failing check's exchanges (before the run trims their bodies)."""
        if result.status not in (FAILED, ERRORED) or result.not_run or not result.exchanges:
            return
        folder = self.root / folder_name(result.check.id)
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        curl = ["#!/bin/sh", f"# {result.check.id}: {result.message}".replace("\n", " "),
                f"# Start the run's account server first: python3 -m "
                f"keyflows.conformance.account --listen "
                f"{self.account.url.removeprefix('http://')} --state "
                f"{shlex.quote(str(self.root / 'accounts.json'))}", ""]
        exchanges = sorted([*result.exchanges, *result.side_exchanges],
                           key=lambda e: e.started)
        for number, exchange in enumerate(exchanges, 1):
            entry = self._entry(folder, number, exchange)
            entries.append(entry)
            if exchange.party == "runner":
                body_file = entry["request_body"]
                curl.append(curl_reproducer(exchange, redact=False,
                                            body_file=str(folder / body_file)
                                            if body_file else None))
        self._write_json(folder / "exchanges.json", {
            "check": result.check.id, "status": result.status, "message": result.message,
            "expected": result.expected, "actual": result.actual,
            "requirements": list(result.check.requirements), "exchanges": entries})
        (folder / "curl.sh").write_text("\n".join(curl) + "\n", encoding="utf-8")
        result.saved_to = str(folder)
        self.saved.append(result.check.id)
        self._write_accounts()

    def _entry(self, folder: Path, number: int, exchange: Exchange) -> dict[str, Any]:
        request_file = response_file = ""
        if exchange.request_body:
            request_file = f"{number:02d}-request.bin"
            (folder / request_file).write_bytes(exchange.request_body)
        if exchange.response_body:
            response_file = f"{number:02d}-response.bin"
            (folder / response_file).write_bytes(exchange.response_body)
        return {
            "party": exchange.party, "method": exchange.method, "url": exchange.url,
            "target": request_target(exchange),
            "request_headers": [list(h) for h in exchange.request_headers],
            "request_body": request_file, "chunked": exchange.chunked,
            "declared_length": exchange.declared_length, "status": exchange.status,
            "reason": exchange.reason,
            "response_headers": [list(h) for h in exchange.response_headers],
            "response_body": response_file, "error": exchange.error,
            "elapsed_ms": round(exchange.elapsed_ms, 1),
            "credential": exchange.credential_note}

    def _write_accounts(self) -> None:
        self._write_json(self.root / "accounts.json", self.account.store.export_state())

    def finish(self, results: list[Result]) -> None:
        self._write_accounts()
        lines = [f"{len(self.saved)} failing checks saved; replay one with:",
                 f"  python3 {self.root / 'replay.py'} CHECK-ID", "",
                 f"re-run one with: {self.rerun} --select CHECK-ID", "",
                 *self.saved]
        (self.root / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
