"""Server lock backends of the reference server (lock-layering, LOCK-5, LOCK-19).

The server lock seals the few secrets the server keeps per keystore (the capability root
key, and in scenario "server-held" the user lock key), bound to keystore and purpose.
One small interface, three backends:

  file     a local 32-byte master key file (the default): AES-256-GCM in process, blob
           nonce (12) || ciphertext || tag (16), AAD labelled_context("server-lock", ...).
  aws-kms  an AWS KMS symmetric key through boto3: Encrypt / Decrypt with the binding as
           EncryptionContext; the blob is KMS's CiphertextBlob.
  pkcs11   an AES-256 key on a PKCS#11 token through python-pkcs11: AES-GCM inside the
           token with the same nonce || ciphertext || tag layout and AAD as the file backend.

Every backend is checked when it is opened, so a server with an unusable lock refuses to
start with one line (ServerLockError) instead of failing on the first request.
Opening a blob that does not authenticate raises the spec's AeadError; any other backend
trouble (unreachable KMS, token error) raises ServerLockError.

Settings come from flags or the environment:
  KEYFLOWS_SERVER_LOCK       file | aws-kms | pkcs11              (default file)
  KEYFLOWS_MASTER_KEY_FILE   path of the 32-byte master key        (file)
  KEYFLOWS_KMS_KEY_ID        key id, ARN or alias                  (aws-kms)
  KEYFLOWS_KMS_ENDPOINT      endpoint URL, e.g. a moto_server      (aws-kms, optional)
  KEYFLOWS_KMS_REGION        region (else AWS_REGION / AWS_DEFAULT_REGION)
  KEYFLOWS_PKCS11_LIB        module path (default the SoftHSM2 one) (pkcs11)
  KEYFLOWS_PKCS11_TOKEN      token label                           (pkcs11)
  KEYFLOWS_PKCS11_KEY_LABEL  label of the AES key                  (pkcs11)
  KEYFLOWS_PKCS11_PIN        user PIN (environment only: a flag would show in `ps`)
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keyflows.spec import lock_layering
from keyflows.spec.errors import AeadError, LengthError

BACKEND_FILE = "file"
BACKEND_AWS_KMS = "aws-kms"
BACKEND_PKCS11 = "pkcs11"
BACKENDS = (BACKEND_FILE, BACKEND_AWS_KMS, BACKEND_PKCS11)
MASTER_KEY_LEN = 32
DEFAULT_PKCS11_LIB = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PKCS11_KEY_LABEL = "keyflows-server-lock"

ENV_SERVER_LOCK = "KEYFLOWS_SERVER_LOCK"
ENV_MASTER_KEY_FILE = "KEYFLOWS_MASTER_KEY_FILE"
ENV_KMS_KEY_ID = "KEYFLOWS_KMS_KEY_ID"
ENV_KMS_ENDPOINT = "KEYFLOWS_KMS_ENDPOINT"
ENV_KMS_REGION = "KEYFLOWS_KMS_REGION"
ENV_PKCS11_LIB = "KEYFLOWS_PKCS11_LIB"
ENV_PKCS11_TOKEN = "KEYFLOWS_PKCS11_TOKEN"
ENV_PKCS11_KEY_LABEL = "KEYFLOWS_PKCS11_KEY_LABEL"
ENV_PKCS11_PIN = "KEYFLOWS_PKCS11_PIN"

# What KMS answers when a ciphertext does not authenticate under the key and context.
_KMS_AUTHENTICATION_ERRORS = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})

NonceSource = Callable[[int], bytes]


class ServerLockError(Exception):
    """The server lock is unusable or failed; the message is one line for the operator."""


class ServerLock(Protocol):
    """Seal and open small secrets bound to (keystore_id, purpose) (LOCK-5)."""

    name: str

    def seal(self, plaintext: bytes, keystore_id: str, purpose: str) -> bytes: ...

    def open(self, blob: bytes, keystore_id: str, purpose: str) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServerLockSettings:
    backend: str = BACKEND_FILE
    master_key_file: Path | None = None
    kms_key_id: str = ""
    kms_endpoint: str = ""
    kms_region: str = ""
    pkcs11_lib: str = DEFAULT_PKCS11_LIB
    pkcs11_token: str = ""
    pkcs11_key_label: str = DEFAULT_PKCS11_KEY_LABEL
    pkcs11_pin: str = ""


def load_server_lock_settings(*, backend: str | None = None, master_key_file: str | None = None,
                              kms_key_id: str | None = None, kms_endpoint: str | None = None,
                              kms_region: str | None = None, pkcs11_lib: str | None = None,
                              pkcs11_token: str | None = None,
                              pkcs11_key_label: str | None = None,
                              environ: Mapping[str, str] | None = None) -> ServerLockSettings:
    """Flags first, then KEYFLOWS_* variables; every missing piece is one clear line."""
    env = os.environ if environ is None else environ
    chosen = (backend or env.get(ENV_SERVER_LOCK) or BACKEND_FILE).strip().lower()
    if chosen not in BACKENDS:
        raise ServerLockError(f"server lock must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    settings = ServerLockSettings(
        backend=chosen,
        master_key_file=_path(master_key_file or env.get(ENV_MASTER_KEY_FILE)),
        kms_key_id=kms_key_id or env.get(ENV_KMS_KEY_ID, ""),
        kms_endpoint=kms_endpoint or env.get(ENV_KMS_ENDPOINT, ""),
        kms_region=(kms_region or env.get(ENV_KMS_REGION) or env.get("AWS_REGION")
                    or env.get("AWS_DEFAULT_REGION") or ""),
        pkcs11_lib=pkcs11_lib or env.get(ENV_PKCS11_LIB) or DEFAULT_PKCS11_LIB,
        pkcs11_token=pkcs11_token or env.get(ENV_PKCS11_TOKEN, ""),
        pkcs11_key_label=(pkcs11_key_label or env.get(ENV_PKCS11_KEY_LABEL)
                          or DEFAULT_PKCS11_KEY_LABEL),
        pkcs11_pin=env.get(ENV_PKCS11_PIN, ""),
    )
    if chosen == BACKEND_FILE and settings.master_key_file is None:
        raise ServerLockError("no master key file: pass --master-key-file PATH"
                              f" or set {ENV_MASTER_KEY_FILE}")
    if chosen == BACKEND_AWS_KMS:
        if not settings.kms_key_id:
            raise ServerLockError(f"no KMS key: pass --kms-key-id or set {ENV_KMS_KEY_ID}")
        if not settings.kms_region:
            raise ServerLockError(f"no AWS region: pass --kms-region or set {ENV_KMS_REGION}"
                                  " or AWS_REGION")
    if chosen == BACKEND_PKCS11:
        if not settings.pkcs11_token:
            raise ServerLockError(f"no PKCS#11 token: pass --pkcs11-token LABEL"
                                  f" or set {ENV_PKCS11_TOKEN}")
        if not settings.pkcs11_pin:
            raise ServerLockError(f"no PKCS#11 user PIN: set {ENV_PKCS11_PIN}")
    return settings


def configured_server_lock(*, backend: str | None = None, master_key_file: str | None = None,
                           kms_key_id: str | None = None, kms_endpoint: str | None = None,
                           kms_region: str | None = None, pkcs11_lib: str | None = None,
                           pkcs11_token: str | None = None, pkcs11_key_label: str | None = None,
                           environ: Mapping[str, str] | None = None
                           ) -> ServerLockSettings | None:
    """The server lock settings, or None when neither a flag nor the environment names a
    backend or a master key file: then the server runs without the lock-layering flow."""
    env = os.environ if environ is None else environ
    if not (backend or env.get(ENV_SERVER_LOCK) or master_key_file
            or env.get(ENV_MASTER_KEY_FILE)):
        return None
    return load_server_lock_settings(
        backend=backend, master_key_file=master_key_file, kms_key_id=kms_key_id,
        kms_endpoint=kms_endpoint, kms_region=kms_region, pkcs11_lib=pkcs11_lib,
        pkcs11_token=pkcs11_token, pkcs11_key_label=pkcs11_key_label, environ=env)


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def open_server_lock(settings: ServerLockSettings,
                     nonces: NonceSource = os.urandom) -> ServerLock:
    """The configured backend, checked and ready (LOCK-19); ServerLockError otherwise."""
    if settings.backend == BACKEND_FILE:
        assert settings.master_key_file is not None
        return FileServerLock(read_master_key_file(settings.master_key_file), nonces=nonces)
    if settings.backend == BACKEND_AWS_KMS:
        return AwsKmsServerLock.connect(settings)
    if settings.backend == BACKEND_PKCS11:
        return Pkcs11ServerLock.connect(settings, nonces=nonces)
    raise ServerLockError(f"unknown server lock {settings.backend!r}")


# --- file -----------------------------------------------------------------------------------

def read_master_key_file(path: Path) -> bytes:
    """LOCK-19: exactly 32 bytes in a regular file that group and others cannot access.

    The checks run on the open descriptor (fstat), so the file checked is the file read.
    A symbolic link is followed (Kubernetes mounts secrets through links); its target is
    what must be private."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ServerLockError(f"master key file {str(path)!r} does not exist") from None
    except PermissionError:
        raise ServerLockError(f"master key file {str(path)!r} is not readable"
                              " by this process") from None
    except OSError as exc:
        raise ServerLockError(f"cannot open master key file {str(path)!r}:"
                              f" {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ServerLockError(f"master key file {str(path)!r} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ServerLockError(
                f"master key file {str(path)!r} is accessible by group or others"
                f" (mode {mode:04o}); run: chmod 600 {path}")
        data = os.read(fd, MASTER_KEY_LEN + 1)
    except OSError as exc:
        raise ServerLockError(f"cannot read master key file {str(path)!r}:"
                              f" {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) != MASTER_KEY_LEN:
        raise ServerLockError(f"master key file {str(path)!r} must hold exactly"
                              f" {MASTER_KEY_LEN} bytes, it holds"
                              f" {'more' if len(data) > MASTER_KEY_LEN else len(data)}")
    return data


def create_master_key_file(path: Path, random: Callable[[int], bytes] = os.urandom) -> None:
    """Write a fresh 32-byte master key, mode 0600; never overwrite an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
    except FileExistsError:
        raise ServerLockError(f"master key file {str(path)!r} already exists") from None
    except OSError as exc:
        raise ServerLockError(f"cannot create master key file {str(path)!r}:"
                              f" {exc.strerror or exc}") from None
    try:
        os.write(fd, random(MASTER_KEY_LEN))
        os.fsync(fd)
    finally:
        os.close(fd)


class FileServerLock:
    """AES-256-GCM under the master key, in process (the spec's server_lock_seal)."""

    name = BACKEND_FILE

    def __init__(self, master_key: bytes, *, nonces: NonceSource = os.urandom) -> None:
        if len(master_key) != MASTER_KEY_LEN:
            raise ServerLockError("the master key must be 32 bytes")
        self._key = master_key
        self._nonces = nonces

    def seal(self, plaintext: bytes, keystore_id: str, purpose: str) -> bytes:
        return lock_layering.server_lock_seal(self._key, self._nonces(lock_layering.NONCE_LEN),
                                              plaintext, keystore_id, purpose)

    def open(self, blob: bytes, keystore_id: str, purpose: str) -> bytes:
        return lock_layering.server_lock_open(self._key, blob, keystore_id, purpose)

    def close(self) -> None:
        self._key = b""


# --- AWS KMS --------------------------------------------------------------------------------

class AwsKmsServerLock:
    """KMS Encrypt / Decrypt under one symmetric key, bound by EncryptionContext."""

    name = BACKEND_AWS_KMS

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    @classmethod
    def connect(cls, settings: ServerLockSettings) -> AwsKmsServerLock:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ServerLockError("the aws-kms server lock needs boto3:"
                                  " pip install 'keyflows[kms]'") from None
        config = Config(connect_timeout=5, read_timeout=10,
                        retries={"max_attempts": 2, "mode": "standard"})
        try:
            client = boto3.client("kms", region_name=settings.kms_region,
                                  endpoint_url=settings.kms_endpoint or None, config=config)
        except Exception as exc:  # botocore raises many unrelated types for bad settings
            raise ServerLockError(f"cannot create a KMS client: {_one_line(exc)}") from None
        lock = cls(client, settings.kms_key_id)
        lock.check_key()
        return lock

    def check_key(self) -> None:
        """LOCK-19: the key exists, is enabled, and is a symmetric encryption key."""
        metadata = self._call("describe the KMS key", self._client.describe_key,
                              KeyId=self._key_id)["KeyMetadata"]
        state = metadata.get("KeyState", "")
        if state != "Enabled":
            raise ServerLockError(f"KMS key {self._key_id!r} is {state or 'not usable'},"
                                  " not Enabled")
        usage = metadata.get("KeyUsage", "ENCRYPT_DECRYPT")
        spec = metadata.get("KeySpec", metadata.get("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"))
        if usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
            raise ServerLockError(f"KMS key {self._key_id!r} is {spec}/{usage};"
                                  " a SYMMETRIC_DEFAULT encryption key is needed")
        # Pin the resolved ARN: an alias later pointed elsewhere cannot redirect blobs.
        self._key_id = metadata.get("Arn", self._key_id)

    def seal(self, plaintext: bytes, keystore_id: str, purpose: str) -> bytes:
        context = lock_layering.server_lock_encryption_context(keystore_id, purpose)
        answer = self._call("encrypt with KMS", self._client.encrypt, KeyId=self._key_id,
                            Plaintext=plaintext, EncryptionContext=context)
        blob = answer["CiphertextBlob"]
        assert isinstance(blob, bytes)
        return blob

    def open(self, blob: bytes, keystore_id: str, purpose: str) -> bytes:
        context = lock_layering.server_lock_encryption_context(keystore_id, purpose)
        if not blob:
            raise LengthError("empty KMS ciphertext", requirement="LOCK-5")
        answer = self._call("decrypt with KMS", self._client.decrypt, KeyId=self._key_id,
                            CiphertextBlob=blob, EncryptionContext=context)
        plaintext = answer["Plaintext"]
        assert isinstance(plaintext, bytes)
        return plaintext

    def _call(self, what: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return function(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _KMS_AUTHENTICATION_ERRORS:
                raise AeadError(f"KMS refused the ciphertext ({code})",
                                requirement="LOCK-5") from None
            message = exc.response.get("Error", {}).get("Message", "")
            raise ServerLockError(f"cannot {what}: {code} {_one_line(message)}".rstrip()) from None
        except BotoCoreError as exc:
            raise ServerLockError(f"cannot {what}: {_one_line(exc)}") from None

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


# --- PKCS#11 --------------------------------------------------------------------------------

class Pkcs11ServerLock:
    """AES-GCM with a non-extractable AES key on a PKCS#11 token; one session, serialised
    (a PKCS#11 session must not run two operations at once)."""

    name = BACKEND_PKCS11

    def __init__(self, session: Any, key: Any, *, nonces: NonceSource = os.urandom) -> None:
        self._session = session
        self._key = key
        self._nonces = nonces
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, settings: ServerLockSettings, *,
                nonces: NonceSource = os.urandom) -> Pkcs11ServerLock:
        try:
            import pkcs11
            from pkcs11 import KeyType, ObjectClass
            from pkcs11 import exceptions as p11
        except ImportError:
            raise ServerLockError("the pkcs11 server lock needs python-pkcs11:"
                                  " pip install 'keyflows[pkcs11]'") from None
        if not Path(settings.pkcs11_lib).is_file():
            raise ServerLockError(f"PKCS#11 module {settings.pkcs11_lib!r} does not exist")
        try:
            library = pkcs11.lib(settings.pkcs11_lib)
            token = library.get_token(token_label=settings.pkcs11_token)
            try:
                session = token.open(user_pin=settings.pkcs11_pin)
            except p11.UserAlreadyLoggedIn:
                # Login state is per application and token: another lock of this process
                # already logged in, so this session shares that login.
                session = token.open()
        except p11.NoSuchToken:
            raise ServerLockError(f"no PKCS#11 token labelled {settings.pkcs11_token!r}") from None
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinLocked):
            raise ServerLockError("the PKCS#11 user PIN was refused") from None
        except (p11.PKCS11Error, OSError, RuntimeError) as exc:
            raise ServerLockError(f"cannot open the PKCS#11 token: {_describe(exc)}") from None
        try:
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                  label=settings.pkcs11_key_label)
        except p11.NoSuchKey:
            session.close()
            raise ServerLockError(f"no AES key labelled {settings.pkcs11_key_label!r} on token"
                                  f" {settings.pkcs11_token!r}") from None
        except p11.MultipleObjectsReturned:
            session.close()
            raise ServerLockError(f"more than one AES key labelled"
                                  f" {settings.pkcs11_key_label!r}; labels must be unique"
                                  ) from None
        lock = cls(session, key, nonces=nonces)
        lock.check_key()
        return lock

    def check_key(self) -> None:
        """LOCK-19: a 256-bit key that encrypts and decrypts AES-GCM round trip."""
        from pkcs11 import Attribute
        try:
            length = self._key[Attribute.VALUE_LEN]
        except Exception:  # some tokens hide VALUE_LEN; the round trip below still runs
            length = MASTER_KEY_LEN
        if length != MASTER_KEY_LEN:
            raise ServerLockError(f"the PKCS#11 key is {8 * length}-bit; AES-256 is needed")
        probe = b"keyflows server-lock probe"
        try:
            nonce = self._nonces(lock_layering.NONCE_LEN)
            sealed = self._gcm("encrypt", nonce, probe, b"probe")
            if self._gcm("decrypt", nonce, sealed, b"probe") != probe:
                raise ServerLockError("the PKCS#11 key does not round-trip AES-GCM")
        except AeadError:
            raise ServerLockError("the PKCS#11 key does not round-trip AES-GCM") from None

    def _gcm(self, direction: str, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11 import exceptions as p11
        from pkcs11.mechanisms import GCMParams
        params = GCMParams(nonce, aad, 8 * lock_layering.TAG_LEN)
        try:
            with self._lock:
                if direction == "encrypt":
                    out = self._key.encrypt(data, mechanism=Mechanism.AES_GCM,
                                            mechanism_param=params)
                else:
                    out = self._key.decrypt(data, mechanism=Mechanism.AES_GCM,
                                            mechanism_param=params)
        except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.DataInvalid,
                p11.GeneralError) as exc:
            if direction == "decrypt":
                # SoftHSM2 reports a tag mismatch as CKR_GENERAL_ERROR.
                raise AeadError("PKCS#11 AES-GCM authentication failed",
                                requirement="LOCK-5") from exc
            raise ServerLockError(f"PKCS#11 encrypt failed: {_describe(exc)}") from None
        except p11.PKCS11Error as exc:
            raise ServerLockError(f"PKCS#11 {direction} failed: {_describe(exc)}") from None
        assert isinstance(out, bytes)
        return out

    def seal(self, plaintext: bytes, keystore_id: str, purpose: str) -> bytes:
        aad = lock_layering.server_lock_aad(keystore_id, purpose)
        nonce = self._nonces(lock_layering.NONCE_LEN)
        return nonce + self._gcm("encrypt", nonce, plaintext, aad)

    def open(self, blob: bytes, keystore_id: str, purpose: str) -> bytes:
        aad = lock_layering.server_lock_aad(keystore_id, purpose)
        if len(blob) < lock_layering.SEALED_MIN_LEN:
            raise LengthError("sealed value shorter than nonce and tag", requirement="LOCK-5")
        nonce = blob[:lock_layering.NONCE_LEN]
        return self._gcm("decrypt", nonce, blob[lock_layering.NONCE_LEN:], aad)

    def close(self) -> None:
        with self._lock:
            try:
                self._session.close()
            except Exception:  # closing twice or after a token removal is harmless here
                pass


def _describe(exc: BaseException) -> str:
    text = _one_line(exc)
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]
