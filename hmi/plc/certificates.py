"""This terminal's OPC UA client certificate and the explicit trust of the PLC's certificate.

The HMI never trusts a PLC certificate on its own: the certificate is trusted because a file
an administrator put in place (``[plc] server_certificate``) holds exactly that certificate,
or because an administrator reviewed its fingerprint and the calling service recorded the
decision and wrote the file with :func:`trust_server_certificate`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hmi.plc.errors import PlcSecurityError
from hmi.plc.types import ServerCertificate

CLIENT_CERTIFICATE_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=7)


def parse_certificate(data: bytes) -> x509.Certificate:
    """Load a PEM or DER certificate; raise ``ValueError`` if it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def describe_certificate(data: bytes) -> ServerCertificate:
    """What an administrator needs to decide on a certificate: fingerprint, subject, expiry."""
    cert = parse_certificate(data)
    der = cert.public_bytes(serialization.Encoding.DER)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return ServerCertificate(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        not_valid_after=cert.not_valid_after_utc,
        application_uri=uris[0] if uris else None,
    )


def load_trusted_certificate(path: Path) -> ServerCertificate | None:
    """The trusted PLC certificate, or ``None`` if no trust decision has been made yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlcSecurityError(f"cannot read the trusted PLC certificate {path}: {exc}") from None
    try:
        return describe_certificate(data)
    except ValueError:
        raise PlcSecurityError(f"{path} is not a certificate (PEM or DER expected)") from None


def trust_server_certificate(certificate: ServerCertificate, path: Path) -> Path:
    """Record a trust decision: write the reviewed certificate (DER) as the trusted one.

    The caller (a service) checks the administrator's permission and records the decision,
    with the fingerprint, in the audit trail before calling this.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(certificate.der)
    tmp.replace(path)
    return path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _usable(cert_path: Path, key: rsa.RSAPrivateKey, application_uri: str) -> bool:
    try:
        cert = parse_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return False
    if cert.public_key() != key.public_key():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return application_uri in san.get_values_for_type(x509.UniformResourceIdentifier)


def ensure_client_certificate(cert_path: Path, key_path: Path, application_uri: str) -> bool:
    """Create this terminal's client key (mode 0600) and self-signed certificate if needed.

    Returns ``True`` when a new certificate was written: the PLC must then be told to trust it.
    """
    if key_path.exists():
        try:
            # only compared with the certificate here; asyncua loads it again, fully checked
            loaded = serialization.load_pem_private_key(
                key_path.read_bytes(), None, unsafe_skip_rsa_key_validation=True
            )
        except (OSError, ValueError, TypeError) as exc:
            raise PlcSecurityError(f"cannot read the client key {key_path}: {exc}") from None
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise PlcSecurityError(f"{key_path} is not an RSA key")
        key = loaded
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    if _usable(cert_path, key, application_uri):
        return False
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "line-hmi terminal"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "line-hmi"),
        ]
    )
    hostname = socket.gethostname()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CLIENT_CERTIFICATE_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, algorithm=hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cert_path.with_name(cert_path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    tmp.replace(cert_path)
    return True
