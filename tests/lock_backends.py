"""Real server-lock backends for the tests: a moto_server on loopback (AWS KMS) and a
SoftHSM2 token (PKCS#11), each made by the tests themselves.

A missing tool skips the tests that need it, with the reason, unless KEYFLOWS_STRICT=1
(as in CI), where it is a failure. Import the fixtures into a test module to use them:

    from lock_backends import kms_backend, moto_endpoint, softhsm  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

STRICT = os.environ.get("KEYFLOWS_STRICT") == "1"
SOFTHSM_LIB = Path("/usr/lib/softhsm/libsofthsm2.so")
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail under KEYFLOWS_STRICT=1."""
    if STRICT:
        pytest.fail(f"{reason} (KEYFLOWS_STRICT=1: a missing backend is a failure)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.is_file() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server on a free loopback port, for the whole session."""
    executable = find_moto_server()
    if executable is None:
        unavailable("moto_server is not installed (pip install 'moto[server]')")
        raise AssertionError("unreachable")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **AWS_TEST_ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start in 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class KmsBackend:
    endpoint: str
    key_id: str
    client: object
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def kms_backend(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> KmsBackend:
    """A fresh symmetric KMS key on the session's moto_server."""
    import boto3

    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = client.create_key(Description="keyflows server lock")["KeyMetadata"]["KeyId"]
    env = {**AWS_TEST_ENV, "KEYFLOWS_SERVER_LOCK": "aws-kms", "KEYFLOWS_KMS_KEY_ID": key_id,
           "KEYFLOWS_KMS_ENDPOINT": moto_endpoint, "KEYFLOWS_KMS_REGION": "us-east-1"}
    return KmsBackend(moto_endpoint, key_id, client, env)


@dataclass
class SoftHsm:
    conf: Path
    token: str
    pin: str
    key_label: str
    lib: str
    env: dict[str, str] = field(default_factory=dict)


_SOFTHSM: list[SoftHsm] = []


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """A SoftHSM2 token with a non-extractable AES-256 key, made once per process.

    SOFTHSM2_CONF is set in this process for good: the PKCS#11 module reads it once,
    when python-pkcs11 first loads the library. Each test module that imports this
    fixture gets its own session fixture, so the token is cached here, not by pytest."""
    if _SOFTHSM:
        return _SOFTHSM[0]
    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_LIB.is_file():
        unavailable("SoftHSM2 is not installed (apt-get install softhsm2)")
    try:
        import pkcs11
        from pkcs11 import Attribute, KeyType
    except ImportError:
        unavailable("python-pkcs11 is not installed (pip install python-pkcs11)")
        raise AssertionError("unreachable") from None
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHsm(conf=conf, token="keyflows-test", pin="4711-pin", key_label="kf-server-lock",
                  lib=str(SOFTHSM_LIB))
    subprocess.run([str(util), "--init-token", "--free", "--label", hsm.token,
                    "--so-pin", "so-pin-0815", "--pin", hsm.pin],
                   check=True, capture_output=True, env={**os.environ})
    token = pkcs11.lib(hsm.lib).get_token(token_label=hsm.token)
    with token.open(user_pin=hsm.pin, rw=True) as session:
        session.generate_key(KeyType.AES, 256, label=hsm.key_label, store=True,
                             template={Attribute.SENSITIVE: True,
                                       Attribute.EXTRACTABLE: False})
    hsm.env = {"SOFTHSM2_CONF": str(conf), "KEYFLOWS_SERVER_LOCK": "pkcs11",
               "KEYFLOWS_PKCS11_LIB": hsm.lib, "KEYFLOWS_PKCS11_TOKEN": hsm.token,
               "KEYFLOWS_PKCS11_KEY_LABEL": hsm.key_label, "KEYFLOWS_PKCS11_PIN": hsm.pin}
    _SOFTHSM.append(hsm)
    return hsm
