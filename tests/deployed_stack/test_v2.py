"""``/v2``, the OCI Distribution API, through the same gateway, functions and bucket.

Raw HTTP checks what the spec asks of each answer (status, ``Location``,
``Range``, ``Docker-Content-Digest``, the challenge) on the API's own URL,
stage included. oras-py, a real OCI client, pushes and pulls through the API's
custom domain instead (``registry.localhost``, the stage mapped at its root:
``emulator/domain.py``): OCI clients look for ``/v2/`` at the root of a host
and cannot be given the stage's path, which is also why an AWS deployment
needs a custom domain for them (docs/deploy.md). The stack has no token
endpoint, so oras is handed a token; Docker's token flow itself is
``tests/test_v2_clients.py``'s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
from vmregistry import mediatypes
from vmregistry.oci import mediatypes as mt

from tests.deployed import DeployedStack, resolve_localhost_names
from tests.deployed_stack.helpers import CONFIG, GATEWAY_CHALLENGE, MISSING, OCTETS, UNKNOWN_UUID, MiB, link_target
from tests.httpclient import Reply
from tests.registry_flows import digest_of, make_manifest

OCI_ACCEPTS = (
    mt.OCI_MANIFEST,
    # what oras and skopeo send: several types, the manifest's not first
    f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST};q=0.9",
    "*/*",
)
"""``Accept`` values of OCI clients. API Gateway decodes a base64 body only for an ``Accept`` that matches a
binary media type, so each must still get the manifest's own bytes."""
EMPTY_CONFIG = b"{}"
"""The OCI empty descriptor's blob (``application/vnd.oci.empty.v1+json``): an artifact's config."""


@dataclass(frozen=True)
class OciImage:
    repository: str
    layer: bytes
    manifest: bytes
    stored: Reply
    """The answer to the manifest's PUT (by tag ``v1``)."""

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def push_blob_v2(stack: DeployedStack, repository: str, data: bytes) -> Reply:
    """OCI's monolithic push: ``POST ?digest=`` with the body."""
    return stack.api("POST", f"/v2/{repository}/blobs/uploads/?digest={digest_of(data)}", data, OCTETS)


def oci_manifest(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": mt.OCI_LAYER, "digest": digest_of(layer), "size": len(layer)} for layer in layers],
        **extra,
    }
    return json.dumps(document, ensure_ascii=False).encode()


def put_manifest_v2(stack: DeployedStack, repository: str, reference: str, body: bytes, **headers: str) -> Reply:
    return stack.api(
        "PUT", f"/v2/{repository}/manifests/{reference}", body, {"Content-Type": mt.OCI_MANIFEST, **headers}
    )


@pytest.fixture(scope="module")
def oci_image(stack: DeployedStack) -> OciImage:
    """``oci/app:v1``: an OCI image manifest (with text beyond ASCII) over the empty config and one layer."""
    layer = os.urandom(1024)
    for blob in (EMPTY_CONFIG, layer):
        assert push_blob_v2(stack, "oci/app", blob).status == 201
    description = {"org.opencontainers.image.description": "Prüfbild für die Tests ✓"}
    manifest = oci_manifest(EMPTY_CONFIG, [layer], annotations=description)
    return OciImage("oci/app", layer, manifest, put_manifest_v2(stack, "oci/app", "v1", manifest))


def test_v2_answers_its_version_check_and_the_gateway_challenges_without_a_token(stack: DeployedStack) -> None:
    # WHEN an OCI client checks the API with a token THEN the function answers as the spec says
    checked = stack.api("GET", "/v2/")
    assert (checked.status, checked.json()) == (200, {})
    assert checked.header("Docker-Distribution-API-Version") == "registry/2.0"
    # ... and without one API Gateway answers 401 itself, with the realm and service clients ask
    refused = stack.api("GET", "/v2/", token=False)
    assert refused.status == 401
    assert refused.header("WWW-Authenticate") == GATEWAY_CHALLENGE
    assert refused.error_codes == ["UNAUTHORIZED"]


def test_v2_a_blob_pushed_whole_is_read_through_a_redirect_that_honours_range(stack: DeployedStack) -> None:
    # GIVEN 1 MiB of bytes that are not text
    data = os.urandom(MiB)
    digest = digest_of(data)
    # WHEN they are pushed in one POST ?digest=
    pushed = push_blob_v2(stack, "oci/whole", data)
    # THEN the blob is published at once, and HEAD reports it
    assert pushed.status == 201, pushed.body
    assert pushed.header("Location") == f"/{stack.deployment.stage}/v2/oci/whole/blobs/{digest}"
    assert pushed.header("Docker-Content-Digest") == digest
    head = stack.api("HEAD", f"/v2/oci/whole/blobs/{digest}")
    assert (head.status, head.header("Content-Length"), head.header("Docker-Content-Digest")) == (200, str(MiB), digest)
    # ... and GET redirects to the bucket, which serves a range of it
    redirect = stack.api("GET", f"/v2/oci/whole/blobs/{digest}")
    assert redirect.status == 307, redirect.body
    ranged = stack.fetch("GET", redirect.header("Location") or "", headers={"Range": "bytes=1000-1999"})
    assert (ranged.status, ranged.body) == (206, data[1000:2000])


def test_v2_a_blob_larger_than_a_part_is_pushed_in_chunks_that_fit_a_lambda_payload(stack: DeployedStack) -> None:
    # GIVEN a blob of 6 MiB + 1 KiB: more than one 5 MiB part, sent as chunks of at most OCI-Chunk-Min-Length
    data = os.urandom(6 * MiB + 1024)
    digest = digest_of(data)
    started = stack.api("POST", "/v2/oci/chunks/blobs/uploads/")
    assert started.status == 202, started.body
    assert (started.header("Range"), started.header("OCI-Chunk-Min-Length")) == ("0-0", str(4 * MiB))
    location = started.header("Location") or ""

    def patch(start: int, end: int) -> Reply:
        return stack.api("PATCH", location, data[start:end], {**OCTETS, "Content-Range": f"{start}-{end - 1}"})

    # WHEN the first 4 MiB arrive, then a chunk that skips ahead, then the next 2 MiB
    assert (first := patch(0, 4 * MiB)).status == 202, first.body
    assert first.header("Range") == f"0-{4 * MiB - 1}"
    skipped = patch(5 * MiB, 6 * MiB)
    assert (second := patch(4 * MiB, 6 * MiB)).status == 202, second.body
    # THEN the chunk out of order was refused with where the upload stands, and the status says so too
    assert (skipped.status, skipped.error_codes) == (416, ["RANGE_INVALID"])
    assert skipped.header("Range") == f"0-{4 * MiB - 1}"
    resumed = stack.api("GET", location)
    assert (resumed.status, resumed.header("Range")) == (204, f"0-{6 * MiB - 1}")
    # WHEN the last kilobyte comes with the closing PUT
    closed = stack.api(
        "PUT", f"{location}?digest={digest}", data[6 * MiB :], {**OCTETS, "Content-Range": f"{6 * MiB}-{len(data) - 1}"}
    )
    # THEN the blob is verified and published within the request, whole, and the session is gone
    assert closed.status == 201, closed.body
    assert closed.header("Docker-Content-Digest") == digest
    redirect = stack.api("GET", f"/v2/oci/chunks/blobs/{digest}")
    assert stack.fetch("GET", redirect.header("Location") or "").body == data
    assert stack.api("GET", location).status == 404


def test_v2_a_manifest_reads_back_byte_for_byte_by_tag_and_digest_whatever_oci_clients_accept(
    stack: DeployedStack, oci_image: OciImage
) -> None:
    # GIVEN oci/app:v1, stored by tag through the gateway
    stored = oci_image.stored
    assert stored.status == 201, stored.body
    assert stored.header("Docker-Content-Digest") == oci_image.digest
    assert stored.header("Location") == f"/{stack.deployment.stage}/v2/oci/app/manifests/{oci_image.digest}"
    assert stored.header("OCI-Tag") == "v1"
    for reference in ("v1", oci_image.digest):
        for accept in OCI_ACCEPTS:
            # WHEN an OCI client fetches it
            got = stack.api("GET", f"/v2/oci/app/manifests/{reference}", headers={"Accept": accept})
            # THEN it gets the bytes pushed (the UTF-8 text intact), their media type and digest
            assert (got.status, got.body) == (200, oci_image.manifest), (reference, accept)
            assert got.header("Content-Type") == mt.OCI_MANIFEST
            assert got.header("Docker-Content-Digest") == oci_image.digest
        # ... and HEAD says the same without the body
        head = stack.api("HEAD", f"/v2/oci/app/manifests/{reference}", headers={"Accept": OCI_ACCEPTS[1]})
        assert (head.status, head.body, head.header("Docker-Content-Digest")) == (200, b"", oci_image.digest)
        assert head.header("Content-Type") == mt.OCI_MANIFEST


def test_v2_referrers_list_a_manifest_with_a_subject_filtered_by_artifact_type(
    stack: DeployedStack, oci_image: OciImage
) -> None:
    # GIVEN an SBOM artifact whose subject is oci/app:v1, pushed by digest
    sbom_type = "application/vnd.example.sbom.v1+json"
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": oci_image.digest, "size": len(oci_image.manifest)}
    sbom = oci_manifest(EMPTY_CONFIG, [EMPTY_CONFIG], artifactType=sbom_type, subject=subject)
    stored = put_manifest_v2(stack, "oci/app", digest_of(sbom), sbom)
    assert stored.status == 201, stored.body
    assert stored.header("OCI-Subject") == oci_image.digest
    listed = f"/v2/oci/app/referrers/{oci_image.digest}"
    entry = {"artifactType": sbom_type, "digest": digest_of(sbom), "mediaType": mt.OCI_MANIFEST, "size": len(sbom)}
    # WHEN its subject's referrers are listed, unfiltered and filtered by artifactType
    everything = stack.api("GET", listed)
    matching = stack.api("GET", f"{listed}?artifactType={quote(sbom_type, safe='')}")
    other = stack.api("GET", f"{listed}?artifactType={quote('application/vnd.example.signature', safe='')}")
    # THEN each is an image index: the SBOM, the SBOM again (saying the filter applied), nothing
    for reply, manifests in ((everything, [entry]), (matching, [entry]), (other, [])):
        assert reply.status == 200, reply.body
        assert reply.header("Content-Type") == mt.OCI_INDEX
        assert reply.json() == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    assert everything.header("OCI-Filters-Applied") is None
    assert matching.header("OCI-Filters-Applied") == other.header("OCI-Filters-Applied") == "artifactType"


def test_v2_tags_and_the_catalog_page_with_n_last_and_link(stack: DeployedStack, oci_image: OciImage) -> None:
    # GIVEN oci/app's manifest pushed again by digest with three tag parameters
    tagged = put_manifest_v2(stack, "oci/app", f"{oci_image.digest}?tag=v2&tag=v3&tag=v4", oci_image.manifest)
    assert tagged.status == 201, tagged.body
    assert tagged.header("OCI-Tag") == "v2, v3, v4"
    # WHEN its tags are read three at a time THEN Link leads to the rest
    first = stack.api("GET", "/v2/oci/app/tags/list?n=3")
    assert first.json() == {"name": "oci/app", "tags": ["v1", "v2", "v3"]}
    rest = stack.fetch("GET", urljoin(stack.base + "/", link_target(first.header("Link"))), headers=stack.bearer())
    assert (rest.json(), rest.header("Link")) == ({"name": "oci/app", "tags": ["v4"]}, None)
    assert stack.api("GET", "/v2/oci/app/tags/list?n=2&last=v2").json()["tags"] == ["v3", "v4"]
    # WHEN the catalog is read one name at a time with a token for oci/** only
    token = stack.bearer("repository:oci/**:pull")
    names: list[str] = []
    page = stack.api("GET", "/v2/_catalog?n=1", headers=token)
    while page.status == 200 and len(names) < 50:
        names += page.json()["repositories"]
        if (link := page.header("Link")) is None:
            break
        page = stack.fetch("GET", urljoin(stack.base + "/", link_target(link)), headers=token)
    # THEN it lists each oci repository once, in order, and nothing else
    assert page.status == 200, page.body
    assert names == sorted(set(names))
    assert oci_image.repository in names
    assert all(name.startswith("oci/") for name in names)


def test_v2_deletes_answer_202_and_what_they_removed_is_gone(stack: DeployedStack, oci_image: OciImage) -> None:
    # GIVEN oci/gone holding oci/app's blobs (mounted) and its manifest under tag t
    for blob in (EMPTY_CONFIG, oci_image.layer):
        mounted = stack.api("POST", f"/v2/oci/gone/blobs/uploads/?mount={digest_of(blob)}&from=oci/app")
        assert mounted.status == 201, mounted.body
    assert put_manifest_v2(stack, "oci/gone", "t", oci_image.manifest).status == 201
    manifests, layer = "/v2/oci/gone/manifests", f"/v2/oci/gone/blobs/{digest_of(oci_image.layer)}"
    # WHEN the tag is deleted THEN it is gone, the manifest is not
    assert stack.api("DELETE", f"{manifests}/t").status == 202
    assert stack.api("GET", f"{manifests}/t").error_codes == ["MANIFEST_UNKNOWN"]
    assert stack.api("GET", f"{manifests}/{oci_image.digest}").status == 200
    # WHEN the manifest and a blob are deleted THEN both are gone from oci/gone, not from oci/app
    assert stack.api("DELETE", f"{manifests}/{oci_image.digest}").status == 202
    assert stack.api("GET", f"{manifests}/{oci_image.digest}").status == 404
    assert stack.api("DELETE", layer).status == 202
    assert stack.api("HEAD", layer).status == 404
    assert stack.api("HEAD", f"/v2/oci/app/blobs/{digest_of(oci_image.layer)}").status == 200
    # WHEN an upload is cancelled THEN it is gone too
    started = stack.api("POST", "/v2/oci/gone/blobs/uploads/")
    assert stack.api("DELETE", started.header("Location") or "").status == 204
    assert stack.api("GET", started.header("Location") or "").error_codes == ["BLOB_UPLOAD_UNKNOWN"]


def test_a_vm_image_pushed_by_vmregistry_push_is_pulled_through_v2_in_its_oci_form(
    stack: DeployedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a VM image pushed with the reference client through /v1
    disk = tmp_path / "root.qcow2"
    disk.write_bytes(os.urandom(256 * 1024))
    pushed = stack.cli("push", stack.reference("oci/vm:1"), "--disk", str(disk), "-q")
    assert pushed.returncode == 0, pushed.stderr
    seed_digest = pushed.stdout.strip().splitlines()[-1]
    # WHEN an OCI client reads it through /v2 THEN it gets the OCI form, under that form's own digest
    got = stack.api("GET", "/v2/oci/vm/manifests/1", headers={"Accept": OCI_ACCEPTS[1]})
    assert got.status == 200, got.body
    assert got.header("Content-Type") == mt.OCI_MANIFEST
    assert got.header("Docker-Content-Digest") == digest_of(got.body) != seed_digest
    document = got.json()
    assert (document["mediaType"], document["artifactType"]) == (mt.OCI_MANIFEST, mediatypes.MANIFEST)
    assert [layer["mediaType"] for layer in document["layers"]] == [mediatypes.DISK]
    # ... while the seed's digest still names the seed's bytes, through either API
    by_seed_digest = stack.api("GET", f"/v2/oci/vm/manifests/{seed_digest}")
    assert by_seed_digest.body == stack.api("GET", f"/v1/oci/vm/manifests/{seed_digest}").body
    assert digest_of(by_seed_digest.body) == seed_digest
    # WHEN oras pulls it from the API's custom domain THEN the disk comes out whole, under its title
    resolve_localhost_names(monkeypatch)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    stack.oras("repository:oci/vm:pull").pull(
        target=f"{stack.deployment.oci_host}/oci/vm:1", outdir=str(tmp_path / "out")
    )
    assert (tmp_path / "out" / "root.qcow2").read_bytes() == disk.read_bytes()


def test_oras_pushes_an_artifact_in_chunks_and_pulls_it_back_from_the_custom_domain(
    stack: DeployedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN oras-py on the API's custom domain (/v2 at the root, as OCI clients need), with a push token
    resolve_localhost_names(monkeypatch)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.chdir(tmp_path)  # oras pushes files named relative to the working directory
    (tmp_path / "notes.json").write_bytes('{"note": "über"}'.encode())
    (tmp_path / "model.bin").write_bytes(os.urandom(5 * MiB + 17))
    files = ["notes.json:application/vnd.example.notes+json", "model.bin:application/vnd.example.model"]
    target = f"{stack.deployment.oci_host}/oci/artifact:v1"
    client = stack.oras("repository:oci/artifact:pull,push")
    # WHEN it pushes them, the larger in chunks of OCI-Chunk-Min-Length, and pulls them elsewhere
    pushed = client.push(target=target, files=files, do_chunked=True, chunk_size=4 * MiB)
    assert pushed.status_code == 201, pushed.text
    client.pull(target=target, outdir=str(tmp_path / "out"))
    # THEN both files come back byte for byte, and the Location it was given has no stage in it
    for name in ("notes.json", "model.bin"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / name).read_bytes()
    assert pushed.headers["Location"].startswith("/v2/oci/artifact/manifests/sha256:")


def lacking(scope: str) -> str:
    """The function's 403 challenge: the scope a client should ask its token endpoint for."""
    return f'{GATEWAY_CHALLENGE},scope="{scope}",error="insufficient_scope"'


V2_AUTH: list[tuple[str, str, dict[str, object], str, str, int, str]] = [
    # id, the token's scope, its other claims, method, path, status, WWW-Authenticate
    ("pull-only token pushes a blob", "repository:oci/app:pull", {}, "POST", "/v2/oci/app/blobs/uploads/", 403,
     lacking("repository:oci/app:pull,push")),
    ("pull-only token stores a manifest", "repository:oci/app:pull", {}, "PUT", "/v2/oci/app/manifests/v9", 403,
     lacking("repository:oci/app:pull,push")),
    ("pull,push token deletes", "repository:oci/app:pull,push", {}, "DELETE", "/v2/oci/app/manifests/v1", 403,
     lacking("repository:oci/app:delete")),
    ("another repository's token", "repository:oci/other:pull", {}, "GET", "/v2/oci/app/tags/list", 403,
     lacking("repository:oci/app:pull")),
    ("expired token", "repository:oci/app:pull", {"exp": 1_000_000_000}, "GET", "/v2/oci/app/tags/list", 401,
     GATEWAY_CHALLENGE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scope", "claims", "method", "path", "status", "challenge"), [c[1:] for c in V2_AUTH], ids=[c[0] for c in V2_AUTH]
)
def test_v2_refusals_name_the_scope_to_ask_for(
    stack: DeployedStack,
    oci_image: OciImage,
    scope: str,
    claims: dict[str, object],
    method: str,
    path: str,
    status: int,
    challenge: str,
) -> None:
    # GIVEN oci/app:v1, and a token that does not allow the request (a 401 comes from the gateway, which
    # cannot name the scope; a 403 from the function, which the authorizer lets a verified token reach on /v2)
    body = oci_image.manifest if method == "PUT" else None
    headers = {**stack.bearer(scope, **claims), **({"Content-Type": mt.OCI_MANIFEST} if body else {})}
    # WHEN the request is sent THEN it is refused with the challenge an OCI client needs for a better token
    refused = stack.api(method, path, body, headers)
    assert (refused.status, refused.header("WWW-Authenticate")) == (status, challenge)
    assert refused.error_codes == ["UNAUTHORIZED" if status == 401 else "DENIED"]
    # ... and nothing changed
    assert stack.api("GET", "/v2/oci/app/manifests/v1").status == 200
    assert stack.api("GET", "/v2/oci/app/manifests/v9").status == 404


SEED_MANIFEST = make_manifest((digest_of(CONFIG), len(CONFIG)), [])
V2_BAD_INPUT: list[tuple[str, str, str, bytes, int, str]] = [
    ("short digest", "GET", "/v2/oci/app/blobs/sha256:abc", b"", 400, "DIGEST_INVALID"),
    ("unknown blob", "GET", f"/v2/oci/app/blobs/{MISSING}", b"", 404, "BLOB_UNKNOWN"),
    ("monolithic body, wrong digest", "POST", f"/v2/oci/app/blobs/uploads/?digest={MISSING}", b"not zeros", 400,
     "DIGEST_INVALID"),
    ("unknown upload", "GET", f"/v2/oci/app/blobs/uploads/{UNKNOWN_UUID}", b"", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("the seed's manifest type", "PUT", "/v2/oci/app/manifests/seed", SEED_MANIFEST, 400, "MANIFEST_INVALID"),
    ("a manifest over blobs never pushed", "PUT", "/v2/oci/app/manifests/missing", oci_manifest(b"{}", [b"gone"]),
     400, "MANIFEST_BLOB_UNKNOWN"),
    ("referrers of a short digest", "GET", "/v2/oci/app/referrers/sha256:abc", b"", 400, "DIGEST_INVALID"),
    ("negative page size", "GET", "/v2/_catalog?n=-1", b"", 400, "PAGINATION_NUMBER_INVALID"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"), [case[1:] for case in V2_BAD_INPUT], ids=[c[0] for c in V2_BAD_INPUT]
)
def test_v2_bad_input_gets_the_registrys_4xx_through_the_gateway(
    stack: DeployedStack, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    reply = stack.api(method, path, body or None, OCTETS if body else None)
    assert (reply.status, reply.error_codes) == (status, [code]), reply.body[:500]
