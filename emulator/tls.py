"""A throwaway certificate authority and a certificate for the emulator's loopback endpoint.

The emulator serves HTTPS, like every AWS endpoint the stack talks to: the
bucket's policy denies any request not made over TLS (``enforce_ssl``), and
under IAM enforcement the emulator applies it, so plain HTTP would fail where
AWS succeeds. Clients trust the CA with their usual knobs (``--ca-bundle``,
``AWS_CA_BUNDLE``, ``NODE_EXTRA_CA_CERTS``); a self-signed leaf alone is not
enough, because OpenSSL and Node refuse a leaf as its own trust anchor.

Layout, in the emulator's state folder::

    tls/
    ├── ca.pem          the CA certificate: what clients trust
    ├── server.pem      the server certificate, then the CA (the chain the emulator serves)
    └── server.key      its private key (mode 0600)
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CUSTOM_DOMAIN", "HOST_NAMES", "TlsFiles", "issue"]

CUSTOM_DOMAIN = "registry.localhost"
"""The API's custom domain on the emulator (:mod:`emulator.domain`): ``/v2`` at its root, for OCI clients."""

HOST_NAMES = ("localhost", "*.execute-api.localhost", CUSTOM_DOMAIN)
"""DNS names besides 127.0.0.1: the API's host-based form is ``<api-id>.execute-api.localhost``."""

VALIDITY = datetime.timedelta(days=30)


class TlsFiles(NamedTuple):
    ca: Path
    chain: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(folder: Path) -> TlsFiles:
    """Create the CA and the server certificate in ``folder`` (replacing any there)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("vmregistry emulator CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names += [x509.DNSName(name) for name in HOST_NAMES]
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(pem))
    files.chain.write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    files.key.touch(mode=0o600)
    files.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files
