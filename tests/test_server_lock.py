"""The reference server's server-lock backends (LOCK-5, LOCK-19), each against the real
thing: a master key file, a moto_server speaking the AWS KMS API on loopback, and a
SoftHSM2 token through PKCS#11. The same contract runs on every backend."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lock_backends import KmsBackend, SoftHsm, free_port, kms_backend, moto_endpoint, softhsm

from keyflows.reference import server_lock as SL
from keyflows.spec import lock_layering as L
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import AeadError, LengthError

__all__ = ["kms_backend", "moto_endpoint", "softhsm"]  # fixtures used by name

KS = "ks-Alpha"
USER = L.PURPOSE_USER_LOCK_KEY
ROOT = L.PURPOSE_CAPABILITY_ROOT_KEY


def write_key_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


# --- the master key file -----------------------------------------------------------------

class TestMasterKeyFile:
    def test_reads_a_private_32_byte_file(self, tmp_path: Path) -> None:
        key = bytes(range(32))
        for mode in (0o600, 0o400):
            path = write_key_file(tmp_path / f"k{mode:o}", key, mode)
            assert SL.read_master_key_file(path) == key

    def test_missing(self, tmp_path: Path) -> None:
        with pytest.raises(SL.ServerLockError, match="does not exist"):
            SL.read_master_key_file(tmp_path / "absent")

    @pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
    def test_wrong_size(self, tmp_path: Path, size: int) -> None:
        path = write_key_file(tmp_path / "k", b"k" * size)
        with pytest.raises(SL.ServerLockError, match="exactly 32 bytes"):
            SL.read_master_key_file(path)

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o620])
    def test_group_or_world_access(self, tmp_path: Path, mode: int) -> None:
        path = write_key_file(tmp_path / "k", bytes(32), mode)
        with pytest.raises(SL.ServerLockError, match=r"group or others.*chmod 600"):
            SL.read_master_key_file(path)

    def test_not_a_regular_file(self, tmp_path: Path) -> None:
        directory = tmp_path / "dir"
        directory.mkdir(mode=0o700)
        with pytest.raises(SL.ServerLockError, match="not a regular file"):
            SL.read_master_key_file(directory)

    def test_symlink_target_is_checked(self, tmp_path: Path) -> None:
        target = write_key_file(tmp_path / "target", bytes(32), 0o644)
        link = tmp_path / "link"
        link.symlink_to(target)
        with pytest.raises(SL.ServerLockError, match="group or others"):
            SL.read_master_key_file(link)
        target.chmod(0o600)
        assert SL.read_master_key_file(link) == bytes(32)

    def test_unreadable(self, tmp_path: Path) -> None:
        """As root (who reads any file), a forked child drops to uid 65534 first."""
        directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"kf-lock-{os.getpid()}"
        directory.mkdir(mode=0o755, exist_ok=True)
        path = write_key_file(directory / "master.key", bytes(32), 0o600)
        if os.geteuid() != 0:
            path.chmod(0o000)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report the one-line message through the pipe, never return
            code = 1
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                SL.read_master_key_file(path)
            except SL.ServerLockError as exc:
                os.write(write_end, str(exc).encode())
                code = 3
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        path.unlink()
        directory.rmdir()
        assert os.waitstatus_to_exitcode(status) == 3
        assert message.endswith("is not readable by this process")

    def test_create(self, tmp_path: Path) -> None:
        path = tmp_path / "new.key"
        SL.create_master_key_file(path, Drbg("lock/test/master"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SL.read_master_key_file(path) == Drbg("lock/test/master")(32)
        with pytest.raises(SL.ServerLockError, match="already exists"):
            SL.create_master_key_file(path)


class TestSettings:
    def test_defaults_to_file_and_needs_its_path(self) -> None:
        with pytest.raises(SL.ServerLockError, match="master key file"):
            SL.load_server_lock_settings(environ={})
        settings = SL.load_server_lock_settings(environ={"KEYFLOWS_MASTER_KEY_FILE": "/x"})
        assert settings.backend == "file" and settings.master_key_file == Path("/x")

    def test_flags_win_over_environment(self) -> None:
        settings = SL.load_server_lock_settings(master_key_file="/flag",
                                                environ={"KEYFLOWS_MASTER_KEY_FILE": "/env"})
        assert settings.master_key_file == Path("/flag")

    @pytest.mark.parametrize(("environ", "message"), [
        ({"KEYFLOWS_SERVER_LOCK": "vault"}, "must be one of"),
        ({"KEYFLOWS_SERVER_LOCK": "aws-kms"}, "no KMS key"),
        ({"KEYFLOWS_SERVER_LOCK": "aws-kms", "KEYFLOWS_KMS_KEY_ID": "k"}, "no AWS region"),
        ({"KEYFLOWS_SERVER_LOCK": "pkcs11"}, "no PKCS#11 token"),
        ({"KEYFLOWS_SERVER_LOCK": "pkcs11", "KEYFLOWS_PKCS11_TOKEN": "t"}, "PIN"),
    ])
    def test_missing_pieces(self, environ: dict[str, str], message: str) -> None:
        with pytest.raises(SL.ServerLockError, match=message):
            SL.load_server_lock_settings(environ=environ)

    def test_region_from_aws_variables(self) -> None:
        settings = SL.load_server_lock_settings(environ={
            "KEYFLOWS_SERVER_LOCK": "AWS-KMS", "KEYFLOWS_KMS_KEY_ID": "k",
            "AWS_DEFAULT_REGION": "eu-west-1"})
        assert (settings.backend, settings.kms_region) == ("aws-kms", "eu-west-1")


# --- one contract, three backends ------------------------------------------------------------

@pytest.fixture(params=["file", "aws-kms", "pkcs11"])
def lock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SL.ServerLock]:
    if request.param == "file":
        path = write_key_file(tmp_path / "master.key", os.urandom(32))
        settings = SL.load_server_lock_settings(master_key_file=str(path), environ={})
    elif request.param == "aws-kms":
        backend: KmsBackend = request.getfixturevalue("kms_backend")
        settings = SL.load_server_lock_settings(environ=backend.env)
    else:
        hsm: SoftHsm = request.getfixturevalue("softhsm")
        settings = SL.load_server_lock_settings(environ=hsm.env)
    opened = SL.open_server_lock(settings)
    assert opened.name == request.param
    yield opened
    opened.close()


class TestContract:
    def test_round_trip(self, lock: SL.ServerLock) -> None:
        for purpose in (USER, ROOT):
            secret = os.urandom(32)
            blob = lock.seal(secret, KS, purpose)
            assert secret not in blob
            assert lock.open(blob, KS, purpose) == secret

    def test_fresh_randomness_per_seal(self, lock: SL.ServerLock) -> None:
        assert lock.seal(bytes(32), KS, USER) != lock.seal(bytes(32), KS, USER)

    @pytest.mark.parametrize(("keystore", "purpose"), [("ks-Beta", USER), (KS, ROOT)])
    def test_moved_blob_fails(self, lock: SL.ServerLock, keystore: str, purpose: str) -> None:
        blob = lock.seal(bytes(32), KS, USER)
        with pytest.raises(AeadError):
            lock.open(blob, keystore, purpose)

    def test_tampered_blob_fails(self, lock: SL.ServerLock) -> None:
        blob = bytearray(lock.seal(bytes(32), KS, USER))
        blob[len(blob) // 2] ^= 0x01
        with pytest.raises(AeadError):
            lock.open(bytes(blob), KS, USER)

    def test_truncated_blob_fails(self, lock: SL.ServerLock) -> None:
        blob = lock.seal(bytes(32), KS, USER)
        with pytest.raises((AeadError, LengthError)):
            lock.open(blob[:20], KS, USER)


# --- backend specifics -------------------------------------------------------------------------

class TestFileBackend:
    def test_blob_is_the_spec_layout(self, tmp_path: Path) -> None:
        key = bytes(range(32))
        lock = SL.FileServerLock(key, nonces=lambda n: b"\x07" * n)
        blob = lock.seal(b"s" * 32, KS, USER)
        assert blob == L.server_lock_seal(key, b"\x07" * 12, b"s" * 32, KS, USER)

    def test_other_master_key_fails(self) -> None:
        blob = SL.FileServerLock(bytes(32)).seal(b"s" * 32, KS, USER)
        with pytest.raises(AeadError):
            SL.FileServerLock(b"\x01" * 32).open(blob, KS, USER)


class TestAwsKms:
    def test_binding_travels_as_encryption_context(self, kms_backend: KmsBackend) -> None:
        lock = SL.open_server_lock(SL.load_server_lock_settings(environ=kms_backend.env))
        blob = lock.seal(b"s" * 32, KS, USER)
        answer = kms_backend.client.decrypt(  # type: ignore[attr-defined]
            CiphertextBlob=blob, EncryptionContext=L.server_lock_encryption_context(KS, USER))
        assert answer["Plaintext"] == b"s" * 32

    def test_other_key_cannot_open(self, kms_backend: KmsBackend) -> None:
        first = SL.open_server_lock(SL.load_server_lock_settings(environ=kms_backend.env))
        blob = first.seal(b"s" * 32, KS, USER)
        other = kms_backend.client.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
        second = SL.open_server_lock(SL.load_server_lock_settings(
            environ={**kms_backend.env, "KEYFLOWS_KMS_KEY_ID": other}))
        # AWS answers IncorrectKeyException (-> AeadError); moto answers AccessDenied.
        with pytest.raises((AeadError, SL.ServerLockError)):
            second.open(blob, KS, USER)

    def test_unknown_key_refuses_to_start(self, kms_backend: KmsBackend) -> None:
        settings = SL.load_server_lock_settings(environ={
            **kms_backend.env, "KEYFLOWS_KMS_KEY_ID": "11111111-2222-3333-4444-555555555555"})
        with pytest.raises(SL.ServerLockError, match="NotFoundException"):
            SL.open_server_lock(settings)

    def test_disabled_key_refuses_to_start(self, kms_backend: KmsBackend) -> None:
        kms_backend.client.disable_key(KeyId=kms_backend.key_id)  # type: ignore[attr-defined]
        with pytest.raises(SL.ServerLockError, match="Disabled"):
            SL.open_server_lock(SL.load_server_lock_settings(environ=kms_backend.env))

    def test_unreachable_kms_refuses_to_start(self, kms_backend: KmsBackend) -> None:
        settings = SL.load_server_lock_settings(environ={
            **kms_backend.env, "KEYFLOWS_KMS_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
        with pytest.raises(SL.ServerLockError, match="cannot describe the KMS key"):
            SL.open_server_lock(settings)


def _open_in_subprocess(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh process: PKCS#11 login state is per process, so a wrong PIN is only
    observable where nobody has logged in yet."""
    code = ("import sys\nfrom keyflows.reference import server_lock as SL\n"
            "try:\n    SL.open_server_lock(SL.load_server_lock_settings())\n"
            "except SL.ServerLockError as e:\n    print(e)\n    sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


class TestPkcs11:
    def test_blob_matches_the_file_backend_layout(self, softhsm: SoftHsm) -> None:
        """With a known key imported into the token, the token's blob is byte-identical to
        the spec's server_lock_seal: one layout for the file and PKCS#11 backends."""
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass

        known = bytes(range(100, 132))
        token = pkcs11.lib(softhsm.lib).get_token(token_label=softhsm.token)
        try:
            session = token.open(rw=True, user_pin=softhsm.pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            session = token.open(rw=True)
        with session:
            session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: known, Attribute.LABEL: "kf-known", Attribute.TOKEN: False,
                Attribute.ENCRYPT: True, Attribute.DECRYPT: True})
            settings = SL.load_server_lock_settings(environ={
                **softhsm.env, "KEYFLOWS_PKCS11_KEY_LABEL": "kf-known"})
            lock = SL.Pkcs11ServerLock.connect(settings, nonces=lambda n: b"\x05" * n)
            blob = lock.seal(b"s" * 32, KS, ROOT)
            assert blob == L.server_lock_seal(known, b"\x05" * 12, b"s" * 32, KS, ROOT)
            assert L.server_lock_open(known, blob, KS, ROOT) == b"s" * 32
            lock.close()

    def test_missing_key_refuses_to_start(self, softhsm: SoftHsm) -> None:
        settings = SL.load_server_lock_settings(environ={
            **softhsm.env, "KEYFLOWS_PKCS11_KEY_LABEL": "no-such-key"})
        with pytest.raises(SL.ServerLockError, match="no AES key labelled 'no-such-key'"):
            SL.open_server_lock(settings)

    def test_missing_token_refuses_to_start(self, softhsm: SoftHsm) -> None:
        settings = SL.load_server_lock_settings(environ={
            **softhsm.env, "KEYFLOWS_PKCS11_TOKEN": "no-such-token"})
        with pytest.raises(SL.ServerLockError, match="no PKCS#11 token labelled"):
            SL.open_server_lock(settings)

    def test_missing_module_refuses_to_start(self, softhsm: SoftHsm) -> None:
        settings = SL.load_server_lock_settings(environ={
            **softhsm.env, "KEYFLOWS_PKCS11_LIB": "/nonexistent/libp11.so"})
        with pytest.raises(SL.ServerLockError, match="does not exist"):
            SL.open_server_lock(settings)

    def test_wrong_pin_refuses_to_start(self, softhsm: SoftHsm) -> None:
        done = _open_in_subprocess({**softhsm.env, "KEYFLOWS_PKCS11_PIN": "wrong-pin"})
        assert done.returncode == 3, done.stderr
        assert done.stdout.strip() == "the PKCS#11 user PIN was refused"

    def test_right_pin_in_a_fresh_process(self, softhsm: SoftHsm) -> None:
        done = _open_in_subprocess(softhsm.env)
        assert done.returncode == 0, done.stdout + done.stderr
