"""The client against a registry behind a private CA: trusted with --ca-bundle, refused without.

The local server is put behind real TLS (its listening socket wrapped with a
certificate for 127.0.0.1 that a throwaway CA signed), and its presigned URLs
point at the same https origin, so a push and a pull cross TLS for the API
and the data plane alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from vmregistry.client import ClientError, RegistryClient, TransientError, UsageError, pull_image, push_image
from vmregistry.config import Settings
from vmregistry.local.app import LocalServer

from tests.conftest import VMREGISTRY


@dataclass(frozen=True)
class TlsRegistry:
    url: str
    ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("vmregistry test CA"))
        .issuer_name(_name("vmregistry test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[TlsRegistry]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    port = _free_port()
    url = f"https://127.0.0.1:{port}"
    server = LocalServer(Settings(fs_path=str(tmp_path / "storage"), public_url=url), port=port)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    try:
        yield TlsRegistry(url, ca_file)
    finally:
        server.shutdown()


def test_push_and_pull_over_tls_with_the_ca_bundle(tls_registry: TlsRegistry, tmp_path: Path) -> None:
    # GIVEN a disk image and a client that trusts the registry's CA
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    client = RegistryClient.connect(tls_registry.url, ca_bundle=str(tls_registry.ca_file))
    try:
        # WHEN it pushes and pulls through the API and the presigned data plane, both on https
        pushed = push_image(client, "tls/img", "v1", [disk])
        pulled = pull_image(client, "tls/img", "v1", tmp_path / "out")
    finally:
        client.close()
    # THEN the bytes come back whole, under the digest pushed
    assert pulled.digest == pushed.digest
    assert (tmp_path / "out" / "disk.img").read_bytes() == disk.read_bytes()


def test_an_untrusted_certificate_fails_at_once_with_what_to_do(tls_registry: TlsRegistry) -> None:
    # GIVEN a client with only the system's CAs and retries allowed
    client = RegistryClient.connect(tls_registry.url, retries=5)
    try:
        # WHEN it calls the registry THEN the failure names the certificate and the remedy
        with pytest.raises(ClientError, match="--ca-bundle") as raised:
            client.catalog()
    finally:
        client.close()
    # AND it is final: a certificate does not become trusted by asking again
    assert not isinstance(raised.value, TransientError)
    assert "certificate not trusted" in str(raised.value)


def test_an_unreadable_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "not-pem.txt").write_text("hello")
    for bundle in (tmp_path / "missing.pem", tmp_path / "not-pem.txt"):
        with pytest.raises(UsageError, match="cannot load the CA bundle"):
            RegistryClient.connect("https://127.0.0.1:9", ca_bundle=str(bundle))


def test_cli_takes_the_bundle_from_the_flag_or_the_environment(tls_registry: TlsRegistry, tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ["VMREGISTRY_CREDENTIALS"] = str(tmp_path / "no-credentials.json")
    flag = subprocess.run(
        [VMREGISTRY, "catalog", tls_registry.url, "--ca-bundle", str(tls_registry.ca_file)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    assert flag.returncode == 0, flag.stderr
    from_env = subprocess.run(
        [VMREGISTRY, "catalog", tls_registry.url],
        capture_output=True,
        text=True,
        env=environ | {"VMREGISTRY_CA_BUNDLE": str(tls_registry.ca_file)},
        check=False,
    )
    assert from_env.returncode == 0, from_env.stderr
    untrusted = subprocess.run(
        [VMREGISTRY, "catalog", tls_registry.url], capture_output=True, text=True, env=environ, check=False
    )
    assert untrusted.returncode == 1
    assert "--ca-bundle" in untrusted.stderr
