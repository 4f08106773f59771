"""A real OCI client, oras-py, against ``vmregistry serve`` with authentication on.

The registry runs with the development token endpoint (``-token-users``), so
oras goes through Docker's token flow for real: a 401 with a challenge naming
the realm and the scope, a token for that scope from the realm with Basic
credentials, and, when a pull token meets a push (its HEAD came first), a 403
``insufficient_scope`` whose challenge makes it fetch a push token. Keys are
real RSA keys, tokens real RS256 JWTs. (skopeo and podman are not on PyPI:
``make conformance`` runs them.)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import oras.client  # type: ignore[import-untyped]
import pytest
from vmregistry import mediatypes
from vmregistry.client import RegistryClient, push_image

from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import digest_of

PASSWORD = "looking-glass"
MiB = 1024 * 1024


@dataclass
class Registry:
    server: RunningServer

    @property
    def host(self) -> str:
        return self.server.url.removeprefix("http://")

    def oras(self, user: str) -> oras.client.OrasClient:
        client = oras.client.OrasClient(hostname=self.host, insecure=True)
        client.auth.set_basic_auth(user, PASSWORD)
        return client

    def token(self, user: str, scope: str) -> str:
        import base64

        basic = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        reply = request(
            "GET",
            f"{self.server.url}/auth/token?service=vmregistry&scope={scope}",
            headers={"Authorization": f"Basic {basic}"},
        )
        assert reply.status == 200, reply.body
        token: str = reply.json()["token"]
        return token


def _cli(home: Path, *args: str, stdin: str = "") -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    done = subprocess.run(
        [VMREGISTRY, *args], cwd=home, env=environ, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("oras-registry")
    _cli(home, "keygen", "-dir", str(home), "-bits", "2048")
    users = home / "users.json"
    for name, scope in (("alice", "repository:oras/**:*"), ("bob", "repository:oras/**:pull")):
        _cli(home, "add-user", "-users", str(users), "-name", name, "-scope", scope, stdin=f"{PASSWORD}\n")
    running = start_server(home, "-auth-public-key", "auth.pub", "-token-users", str(users), "-token-key", "auth.key")
    yield Registry(running)
    stop_server(running)


@pytest.fixture(autouse=True)
def _no_docker_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """oras reads docker's config for credentials: the tests' own only."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.chdir(tmp_path)  # oras pushes files from below the working directory


def test_oras_pushes_and_pulls_an_artifact_through_the_token_flow(registry: Registry, tmp_path: Path) -> None:
    # GIVEN an artifact of two files, one pushed in 1 MiB chunks (oras's chunked upload)
    (tmp_path / "report.json").write_bytes(b'{"findings": []}')
    (tmp_path / "model.bin").write_bytes(os.urandom(3 * MiB + 17))
    target = f"{registry.host}/oras/artifacts/scan:v1"
    files = ["report.json:application/vnd.example.report+json", "model.bin:application/vnd.example.model"]
    # WHEN alice pushes with only her password (oras asks the realm the challenges name)
    pushed = registry.oras("alice").push(target=target, files=files, do_chunked=True, chunk_size=MiB)
    assert pushed.status_code == 201, pushed.text
    # AND pulls it into another directory
    out = tmp_path / "pulled"
    registry.oras("alice").pull(target=target, outdir=str(out))
    # THEN the files come back byte for byte, and the tag lists through /v1 too
    for name in ("report.json", "model.bin"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes()
    token = registry.token("alice", "repository:oras/artifacts/scan:pull")
    listed = request(
        "GET", f"{registry.server.url}/v1/oras/artifacts/scan/tags/list", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.json() == {"name": "oras/artifacts/scan", "tags": ["v1"]}


def test_oras_pulls_a_vm_image_pushed_by_vmregistry_push(registry: Registry, tmp_path: Path) -> None:
    # GIVEN a VM image pushed with the reference client (the seed's /v1 manifest)
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(os.urandom(6 * MiB))
    with RegistryClient.connect(
        registry.server.url, token=registry.token("alice", "repository:oras/vm:pull,push")
    ) as client:
        push_image(client, "oras/vm", "24.04", [disk])
    # WHEN an OCI client reads it through /v2
    target = f"{registry.host}/oras/vm:24.04"
    manifest = registry.oras("bob").get_manifest(target)
    out = tmp_path / "pulled"
    registry.oras("bob").pull(target=target, outdir=str(out))
    # THEN it is an OCI image manifest whose artifactType names the VM image, and the disk comes out whole
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == mediatypes.MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mediatypes.DISK]
    assert (out / "disk.qcow2").read_bytes() == disk.read_bytes()


def test_a_pull_only_user_cannot_push(registry: Registry, tmp_path: Path) -> None:
    # GIVEN bob, who may only pull
    (tmp_path / "note.txt").write_text("hello")
    # WHEN he pushes THEN the registry refuses with 403 and a challenge naming the scope he lacks
    with pytest.raises(ValueError, match="DENIED"):
        registry.oras("bob").push(target=f"{registry.host}/oras/notes:v1", files=["note.txt:text/plain"])
    token = registry.token("bob", "repository:oras/notes:pull,push")
    refused = request(
        "POST", f"{registry.server.url}/v2/oras/notes/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status == 403
    assert refused.error_codes == ["DENIED"]
    challenge = refused.header("WWW-Authenticate") or ""
    assert 'scope="repository:oras/notes:pull,push"' in challenge
    assert 'error="insufficient_scope"' in challenge
    assert request("GET", f"{registry.server.url}/v2/oras/notes/tags/list").status == 401
    assert digest_of(b"hello") not in json.dumps(os.listdir(registry.server.storage))
