"""A throwaway PostgreSQL cluster on loopback for the tests (a plain module).

Debian's postgresql package provides the binaries (/usr/lib/postgresql/<v>/bin); the
server refuses to run as root, so the cluster is created and run as the `postgres` user
(runuser), in a fresh directory, listening on 127.0.0.1 and a unix socket in that
directory only, with fsync on (the durability tests rely on it). Each test gets a fresh
database of its own (`Cluster.new_database()`).

A missing binary or user skips the tests that need it, with the reason, unless
KEYFLOWS_STRICT=1 (then it is a failure).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STRICT = os.environ.get("KEYFLOWS_STRICT") == "1"


def skip_or_fail(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: a missing part is a failure)")
    pytest.skip(reason)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    bin: Path
    root: Path
    port: int
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """A fresh, empty database; its URL."""
        import psycopg
        database = f"{name}_{len(self.databases)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        self.databases.append(database)
        return self.url(database)

    def stop(self) -> None:
        as_postgres(self.bin / "pg_ctl", "-D", str(self.root / "data"), "-m", "immediate",
                    "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def as_postgres(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)],
                          capture_output=True, text=True, timeout=120, check=check)


def start_cluster() -> Cluster:
    """Start a cluster, or skip (fail under KEYFLOWS_STRICT=1) when it cannot run here."""
    binaries = postgres_bin()
    if binaries is None:
        skip_or_fail("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    assert binaries is not None
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        skip_or_fail("the PostgreSQL tests run the server as the postgres user: they need "
                     "root and runuser")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install 'keyflows[postgresql]')")
    root = Path(tempfile.mkdtemp(prefix="keyflows-pg-"))
    os.chmod(root, 0o700)
    shutil.chown(root, "postgres")
    port = free_port()
    initdb = as_postgres(binaries / "initdb", "-D", str(root / "data"), "-A", "trust",
                         "-U", "postgres", "--no-locale", "-E", "UTF8", check=False)
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        skip_or_fail(f"initdb failed: {initdb.stderr.strip()[-300:]}")
    started = as_postgres(binaries / "pg_ctl", "-D", str(root / "data"), "-o",
                          f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"
                          f" -c max_connections=200", "-l", str(root / "log"), "-w", "start",
                          check=False)
    if started.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-400:] if (root / "log").exists() \
            else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        skip_or_fail(f"pg_ctl start failed: {log.strip()}")
    return Cluster(bin=binaries, root=root, port=port)
