"""Throwaway self-signed certificates for tests that serve https (``cryptography``).

A certificate is its own issuer and a CA, so a client trusts it by loading it as its only CA file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, as PEM files."""

    certfile: Path
    keyfile: Path


def self_signed(folder: Path, *hosts: str) -> Certificate:
    """A new key and a certificate for ``hosts`` (names or addresses; none: 127.0.0.1 and localhost),
    valid for a day, written to new files in ``folder``."""
    hosts = hosts or ("127.0.0.1", "localhost")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.UTC)
    names = [_subject_name(host) for host in hosts]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    stem = secrets.token_hex(4)  # several certificates may share a folder
    made = Certificate(folder / f"{stem}.crt", folder / f"{stem}.key")
    made.certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    made.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made


def _subject_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
