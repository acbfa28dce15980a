"""The embedded target: the bundled reference server, started as a separate process.

conformance/ never imports reference/: the reference server is one more HTTP server to
check, started with `python -m keyflows.reference` on an ephemeral loopback port. It
announces its base URL through the ready file once it listens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from keyflows.conformance.witness import WITNESS_PATH, runner_witness_verifier

READY_TIMEOUT_S = 30.0

# Run before the server's own code (Linux): the server receives SIGTERM when the runner
# process goes away, even by SIGKILL, so no reference server outlives its run. If the
# runner is already gone, the launcher exits at once.
_END_WITH_RUNNER = """\
import ctypes, os, signal, sys
runner = int(sys.argv[1])
if sys.platform.startswith("linux"):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != runner:
    sys.exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def witness_config(account_url: str) -> str:
    """KEYFLOWS_HASHCHAIN_WITNESSES for a server that submits to the runner's witness."""
    return f"{runner_witness_verifier().vkey} {account_url}{WITNESS_PATH}"


EMBEDDED_CHECKPOINT_LAG = 16
"""Entries a UID's last_checkpoint may lie behind the log (HC-19): few enough that the
lag check reaches the edge in a few publications, as many as the hashchain checks'
concurrent writers (all name one checkpoint)."""


def hashchain_environment(account_url: str) -> dict[str, str]:
    """The hashchain settings of an embedded run: the server submits its checkpoints to
    the runner's witness, and takes checkpoints at most EMBEDDED_CHECKPOINT_LAG behind."""
    return {"KEYFLOWS_HASHCHAIN_WITNESSES": witness_config(account_url),
            "KEYFLOWS_HASHCHAIN_MAX_CHECKPOINT_LAG": str(EMBEDDED_CHECKPOINT_LAG)}


EMBEDDED_CHALLENGE_LIFETIME = 3
"""Seconds; the session-challenge expiry check waits out lifetimes up to 3 s. (1 s made
checks that must finish within one lifetime miss it on a loaded 2-core machine.)"""
EMBEDDED_SESSION_LIFETIME = 6
"""Seconds; the session expiry check waits out session lifetimes up to 6 s."""
EMBEDDED_MESSAGE_RETENTION = 15
"""Seconds an envelope message is served (ENV-17): the retention check waits it out once,
and every other envelope check posts and reads its messages well within it, also on a
loaded machine."""
EMBEDDED_LIMITS = ("--header-timeout", "2", "--body-timeout", "2", "--idle-timeout", "2",
                   "--quotas", "queue-per-device=30,queue-per-sender=12")
"""Deadlines and quotas small enough that the limit checks wait and post little."""


def server_arguments(workdir: Path, account_url: str, ready: Path) -> list[str]:
    """The reference server's options in an embedded run: an ephemeral loopback port
    announced in `ready`, a fresh database and master key in `workdir`, and the test
    settings. The mutation harness starts its mutants with the same options."""
    return ["--host", "127.0.0.1", "--port", "0", "--db", str(workdir / "keyflows.sqlite3"),
            "--account-server", account_url, "--ready-file", str(ready),
            # The runner's account server is also the vault server the key server trusts.
            "--edv-server", account_url,
            "--master-key-file", str(write_master_key(workdir / "master.key")),
            # Short enough for the runner to wait out, so expiry is checked too.
            "--challenge-lifetime", str(EMBEDDED_CHALLENGE_LIFETIME),
            "--session-lifetime", str(EMBEDDED_SESSION_LIFETIME),
            "--message-retention", str(EMBEDDED_MESSAGE_RETENTION),
            # Test values the limit checks can drive in seconds (API-52, API-53).
            *EMBEDDED_LIMITS]


class EmbeddedServerError(Exception):
    """The reference server did not start; the message is one line."""


def write_master_key(path: Path) -> Path:
    """A fresh 32-byte server-lock master key, mode 0600, for the lock-layering flow's
    file backend (the server refuses a key file others can read, LOCK-19)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(32))
    finally:
        os.close(fd)
    return path


class EmbeddedServer:
    def __init__(self, account_url: str) -> None:
        self.account_url = account_url
        self.base_url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="keyflows-conformance-")
        tmp = Path(self._tmp.name)
        ready = tmp / "ready"
        self._log_path = tmp / "server.log"
        command = [sys.executable, "-m", "keyflows.reference",
                   *server_arguments(tmp, self.account_url, ready)]
        if threading.current_thread() is threading.main_thread():
            # the parent-death signal follows the thread that started the server
            command[1:1] = ["-c", _END_WITH_RUNNER, str(os.getpid())]
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.environment())
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if ready.exists():
                line = ready.read_text(encoding="utf-8").strip()
                if line:
                    self.base_url = line.rstrip("/")
                    return
            code = self._process.poll()
            if code is not None:
                raise EmbeddedServerError(
                    f"the embedded reference server exited with status {code}: "
                    f"{self._last_log_line()}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"the embedded reference server did not become ready within "
                    f"{READY_TIMEOUT_S:.0f} s: {self._last_log_line()}")
            time.sleep(0.02)

    def environment(self) -> dict[str, str]:
        """The runner's own environment and the run's hashchain settings."""
        env = dict(os.environ)
        env.update(hashchain_environment(self.account_url))
        return env

    def _last_log_line(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no output)"
        lines = [ln for ln in self._log_path.read_text(errors="replace").splitlines()
                 if ln.strip()]
        return lines[-1].strip() if lines else "(no output)"

    def exit_note(self) -> str | None:
        """If the server died while checks ran: its status and last log line."""
        if self._process is None or self._process.poll() is None:
            return None
        return (f"the embedded reference server exited during the run with status "
                f"{self._process.returncode}: {self._last_log_line()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
