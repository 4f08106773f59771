"""The client against a registry behind a private CA: trusted with --ca-bundle, refused without.

The local server is put behind real TLS (its listening socket wrapped with a
certificate for 127.0.0.1 that a throwaway CA signed), and its presigned URLs
point at the same https origin, so a push and a pull cross TLS for the API
and the data plane alike.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry.client import ClientError, RegistryClient, TransientError, UsageError, pull_image, push_image

from tests.conftest import VMREGISTRY
from tests.tlskit import TlsRegistry, serving_tls


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[TlsRegistry]:
    with serving_tls(tmp_path) as registry:
        yield registry


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
