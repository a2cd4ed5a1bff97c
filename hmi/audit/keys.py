"""The terminal's Ed25519 signing key: creation (mode 0600), loading and fingerprints."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

SIGNATURE_BYTES = 64


class KeyFileError(Exception):
    """A key file is missing, unreadable, too widely readable or not an Ed25519 key."""


def key_id_for(public_raw: bytes) -> str:
    """Key fingerprint: the first 16 bytes of SHA-256 over the raw 32-byte public key, hex."""
    return hashlib.sha256(public_raw).hexdigest()[:32]


def public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class PublicKey:
    """A verification key with its fingerprint."""

    key_id: str
    raw: bytes

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != 32:
            raise KeyFileError(f"an Ed25519 public key has 32 bytes, got {len(raw)}")
        return cls(key_id_for(raw), raw)

    @classmethod
    def from_pem_file(cls, path: Path) -> PublicKey:
        try:
            loaded = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read public key {path}: {exc}") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise KeyFileError(f"{path} is not an Ed25519 public key")
        return cls.from_raw(public_raw(loaded))

    def verify(self, signature: bytes, message: bytes) -> bool:
        return verify_raw(self.raw, signature, message)


def verify_raw(public: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 (RFC 8032) verification of a detached signature with a raw 32-byte key.

    libsodium does the arithmetic: it verifies about twice as fast as OpenSSL on the same core,
    which is what bounds a full re-verification of the audit trail."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public)
    except (BadSignatureError, ValueError):
        return False
    return True


class Signer:
    """Signs with the terminal's private key; the key never leaves this object.

    Key files are read and written with ``cryptography`` (PEM, PKCS#8); the signing itself is
    libsodium's, which signs a row hash in a little over half of OpenSSL's time on the audit
    trail's hot path. Ed25519 signatures are deterministic, so both give the same bytes."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public, self._secret = crypto_sign_seed_keypair(seed)
        if public != public_raw(private_key.public_key()):
            raise KeyFileError("the signing key does not match its own public key")
        self.public = PublicKey.from_raw(public)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        return crypto_sign(message, self._secret)[:SIGNATURE_BYTES]

    def __repr__(self) -> str:  # never show key material
        return f"Signer(key_id={self.key_id!r})"


def create_key_pair(private_path: Path, public_path: Path) -> Signer:
    """Create a new key: private PEM (PKCS#8) with mode 0600, public PEM beside it."""
    if private_path.exists():
        raise KeyFileError(f"refusing to overwrite the existing key {private_path}")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem(key.public_key()))
    return Signer(key)


def load_signer(private_path: Path) -> Signer:
    """Load the terminal's key; refuse a key file that others can read."""
    try:
        mode = private_path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise KeyFileError(f"the terminal signing key {private_path} is missing") from None
    if mode & 0o077:
        raise KeyFileError(
            f"the terminal signing key {private_path} is readable by others (mode {mode:o});"
            " it must be 0600"
        )
    try:
        loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the terminal signing key {private_path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{private_path} is not an Ed25519 private key")
    return Signer(loaded)


def write_secret_file(path: Path, data: bytes) -> None:
    """Write a secret (e.g. the site key) with mode 0600, refusing to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def verify_signature(public: PublicKey, signature: bytes, message: bytes) -> bool:
    return public.verify(signature, message)
