"""This terminal's client certificate and the explicit trust of a PLC certificate."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from hmi.plc.certificates import (
    describe_certificate,
    ensure_client_certificate,
    load_trusted_certificate,
    trust_server_certificate,
)
from hmi.plc.errors import PlcSecurityError

URI = "urn:line-hmi:hmi"


def test_client_certificate_is_created_once_with_a_private_key_file(tmp_path: Path) -> None:
    cert, key = tmp_path / "own" / "cert.der", tmp_path / "own" / "key.pem"
    assert ensure_client_certificate(cert, key, URI) is True
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = cert.read_bytes()
    assert ensure_client_certificate(cert, key, URI) is False
    assert cert.read_bytes() == first
    parsed = x509.load_der_x509_certificate(first)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert URI in san.get_values_for_type(x509.UniformResourceIdentifier)
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_a_new_application_uri_gets_a_new_certificate_for_the_same_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.der", tmp_path / "key.pem"
    ensure_client_certificate(cert, key, URI)
    key_before = key.read_bytes()
    assert ensure_client_certificate(cert, key, "urn:line-hmi:kiosk-02") is True
    assert key.read_bytes() == key_before
    assert describe_certificate(cert.read_bytes()).application_uri == "urn:line-hmi:kiosk-02"


def test_trust_is_a_file_written_from_a_reviewed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.der", tmp_path / "key.pem"
    ensure_client_certificate(cert, key, URI)
    reviewed = describe_certificate(cert.read_bytes())
    assert len(reviewed.sha256) == 64 and "line-hmi" in reviewed.subject
    trusted_path = tmp_path / "trusted" / "server.der"
    assert load_trusted_certificate(trusted_path) is None
    trust_server_certificate(reviewed, trusted_path)
    loaded = load_trusted_certificate(trusted_path)
    assert loaded is not None and loaded.sha256 == reviewed.sha256


def test_a_garbage_trust_file_is_an_error_not_a_silent_distrust(tmp_path: Path) -> None:
    path = tmp_path / "server.der"
    path.write_bytes(b"not a certificate")
    with pytest.raises(PlcSecurityError, match="not a certificate"):
        load_trusted_certificate(path)
