"""A self-signed TLS certificate for a server the harness starts beyond loopback.

:func:`make_server_certificate` writes ``cert.pem`` and ``key.pem`` (0600)
for a host (an IP address or a name, in the subjectAltName so clients can
verify it) and returns where they are with the certificate's SHA-256
fingerprint, which the command prints so that people and other clients can
check what they connect to (``openssl x509 -noout -fingerprint -sha256``
shows the same text).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..secret import write_private

VALID_DAYS = 30


@dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path
    fingerprint: str  # "SHA256:AB:CD:..." as openssl prints it, without the label


def fingerprint_of(pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, as colon-separated upper-case hex."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def make_server_certificate(directory: str | os.PathLike[str], host: str, *, name: str = "server") -> ServerCertificate:
    """A new EC P-256 key and a self-signed certificate for ``host``, written under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"embserve-hil {name} {host}")])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return ServerCertificate(cert_path, key_path, fingerprint_of(pem))
