"""Certificates, users and client trust for the simulator, as a real PLC's OPC UA server has them.

The simulator creates its own self-signed application certificate on first run (key file mode
0600) and keeps it, so a client that trusted it once keeps trusting it. Client certificates are
accepted only if they are in the trusted directory; a refused certificate is copied to the
rejected directory so an administrator can move it across, the usual OPC UA workflow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plc_sim._ua import ServiceError

log = logging.getLogger(__name__)

APPLICATION_URI = "urn:line-hmi:plc-sim"
CERTIFICATE_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=7)


class SimulatorSecurityError(Exception):
    """Key material or credentials for the simulator cannot be created or read."""


@dataclass(frozen=True)
class PkiLayout:
    """Where the simulator keeps its own key pair and the client certificates it trusts."""

    root: Path

    @property
    def certificate(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def private_key(self) -> Path:
        return self.root / "own" / "key.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def create_dirs(self) -> None:
        for folder in (self.certificate.parent, self.trusted, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lower-case hex: how people compare certificates."""
    return hashlib.sha256(der).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _needs_new_certificate(path: Path, hosts: list[str]) -> bool:
    try:
        cert = x509.load_der_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return True
    if cert.not_valid_after_utc - _RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    names = set(san.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return APPLICATION_URI not in uris or not set(hosts) <= names


def ensure_server_certificate(pki: PkiLayout, host: str) -> Path:
    """Create (or renew) the self-signed server certificate; return its path (DER)."""
    pki.create_dirs()
    hosts = sorted({host, "localhost", socket.gethostname()})
    if pki.private_key.is_file():
        try:
            loaded = serialization.load_pem_private_key(pki.private_key.read_bytes(), None)
        except (ValueError, TypeError) as exc:
            raise SimulatorSecurityError(f"cannot read {pki.private_key}: {exc}") from None
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise SimulatorSecurityError(f"{pki.private_key} is not an RSA private key")
        key = loaded
    else:
        key = cert_gen.generate_private_key()
        _write_private(pki.private_key, cert_gen.dump_private_key_as_pem(key))
    if not _needs_new_certificate(pki.certificate, hosts):
        return pki.certificate
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(APPLICATION_URI)]
    for name in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        "line-hmi PLC simulator",
        {"organizationName": "line-hmi"},
        alt_names,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=CERTIFICATE_DAYS,
    )
    tmp = pki.certificate.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    tmp.replace(pki.certificate)
    log.info("created server certificate %s", pki.certificate)
    return pki.certificate


def trust_client_certificate(pki: PkiLayout, source: Path) -> Path:
    """Copy a client certificate into the trusted directory (PEM or DER accepted)."""
    data = source.read_bytes()
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
    except ValueError as exc:
        raise SimulatorSecurityError(f"{source} is not an X.509 certificate: {exc}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    pki.create_dirs()
    target = pki.trusted / f"{fingerprint(der)[:16]}.der"
    target.write_bytes(der)
    return target


def load_or_create_password(path: Path) -> str:
    """Read the password file; create it with a random password (mode 0600) if missing."""
    if not path.exists():
        _write_private(path, (secrets.token_urlsafe(18) + "\n").encode())
        log.info("created password file %s", path)
    try:
        password = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorSecurityError(f"cannot read password file {path}: {exc}") from None
    if not password:
        raise SimulatorSecurityError(f"password file {path} is empty")
    return password


class PasswordUserManager:
    """Username/password users; anyone else (including anonymous) gets no session."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not username or password is None:
            return None
        expected = self._users.get(username)
        if expected is None:
            # the same work whether or not the user exists
            hmac.compare_digest(password.encode(), password.encode())
            return None
        if not hmac.compare_digest(password.encode(), expected.encode()):
            log.warning("wrong password for user %r", username)
            return None
        return User(role=UserRole.User, name=username)


class TrustedClientValidator:
    """Accept a client certificate only if it is valid and in the trusted directory.

    The trusted directory is re-read on every new session so that moving a certificate from
    ``rejected/`` to ``trusted/`` takes effect without a restart.
    """

    def __init__(self, pki: PkiLayout) -> None:
        self._pki = pki

    async def __call__(self, cert: x509.Certificate, app: Any) -> None:
        store = TrustStore([self._pki.trusted], [])
        await store.load()
        options = CertificateValidatorOptions.TRUSTED_VALIDATION | (
            CertificateValidatorOptions.PEER_CLIENT
        )
        try:
            await CertificateValidator(options, store).validate(cert, app)
        except ServiceError:
            der = cert.public_bytes(serialization.Encoding.DER)
            self._pki.rejected.mkdir(parents=True, exist_ok=True)
            target = self._pki.rejected / f"{fingerprint(der)[:16]}.der"
            target.write_bytes(der)
            log.warning(
                "refused client certificate %s (%s); to allow it, move %s into %s",
                fingerprint(der),
                app.ApplicationUri,
                target,
                self._pki.trusted,
            )
            raise


def copy_certificate(source: Path, target: Path) -> None:
    """Export the server certificate (DER) where a client will pick it up and trust it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
