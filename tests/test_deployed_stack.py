"""The synthesized stack, deployed into an AWS emulator and driven like a client would drive AWS.

One deployment of the real CDK app into MiniStack (``tests/deployed.py``)
serves the whole module: API Gateway in front of one Lambda function per
operation, the REQUEST authorizer on every method, the ``blob_verify`` worker,
and a bucket whose presigned URLs are signature-checked, with IAM enforced for
every function's role. What it proves that the template tests cannot: the
handler strings, layers, environment and grants work together on a clean
interpreter; the gateway passes binary bodies, redirects and challenges
through untouched; the authorizer's identity sources and cache behave.

The emulator differs from AWS in ways listed in docs/deploy.md; the harness
bridges them, and nothing deployed is weakened for it. Raw requests send no
``Accept`` unless a test needs one, so bodies must survive API Gateway's binary
handling whatever the client sends.

``/v2``, the OCI Distribution API, runs on the same deployment. Raw HTTP
checks what the spec asks of each answer (status, ``Location``, ``Range``,
``Docker-Content-Digest``, the challenge) on the API's own URL, stage
included. oras-py, a real OCI client, pushes and pulls through the API's
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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import boto3
import pytest
from vmregistry import mediatypes
from vmregistry.oci import mediatypes as mt
from vmregistry.storage import MIN_PART_SIZE

from emulator.deploy import STACK, host_architecture
from emulator.process import REGION, ROOT_KEY
from infra.config import PYTHON_VERSION
from infra.functions import function_specs
from tests.deployed import MAX_DEPTH, VERIFY_INLINE_BYTES, DeployedStack, deployed_stack, resolve_localhost_names
from tests.httpclient import Reply
from tests.registry_flows import digest_of, make_manifest

MiB = 1024 * 1024
CONFIG = b'{"cpus": 2, "memoryMiB": 2048}'
WORKER_WAIT = 60.0
GATEWAY_CHALLENGE = 'Bearer realm="vmregistry",service="vmregistry"'
"""API Gateway's own 401: the realm and service, no scope (a gateway response's headers are fixed)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedStack]:
    with deployed_stack(tmp_path_factory.mktemp("deployed")) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def image(stack: DeployedStack) -> dict[str, str]:
    """``team/app:1``: the config blob (sent inline) and a manifest, pushed with raw requests."""
    put = stack.api("PUT", f"/v1/team/app/blobs/{digest_of(CONFIG)}", CONFIG)
    assert put.status == 201, put.body
    manifest = make_manifest((digest_of(CONFIG), len(CONFIG)), [])
    stored = put_manifest(stack, "team/app", "1", manifest)
    assert stored.status == 201, stored.body
    return {"repository": "team/app", "tag": "1", "digest": digest_of(manifest), "manifest": manifest.decode()}


def put_manifest(stack: DeployedStack, repository: str, reference: str, body: bytes, **headers: str) -> Reply:
    return stack.api(
        "PUT", f"/v1/{repository}/manifests/{reference}", body, {"Content-Type": mediatypes.MANIFEST, **headers}
    )


def test_every_function_runs_on_the_architecture_it_was_deployed_for(stack: DeployedStack) -> None:
    # GIVEN the stack deployed with -c architecture=<this machine's> (the emulator runs functions here)
    emulator = stack.deployment.emulator
    client = boto3.client(
        "lambda",
        endpoint_url=emulator.endpoint,
        verify=str(emulator.ca),
        region_name=REGION,
        aws_access_key_id=ROOT_KEY,
        aws_secret_access_key=ROOT_KEY,
    )
    pages = client.get_paginator("list_functions").paginate()
    functions = [f for page in pages for f in page["Functions"] if f["FunctionName"].startswith(f"{STACK}-")]
    # THEN every function of the route and worker tables exists, for that architecture and runtime
    assert len(functions) == len(function_specs())
    assert {(tuple(f["Architectures"]), f["Runtime"]) for f in functions} == {
        ((host_architecture(),), f"python{PYTHON_VERSION}")
    }
    # WHEN the API answers its version check (the authorizer and one function, with every layer)
    reply = stack.api("GET", "/v1/")
    # THEN the dependency layer's compiled wheels loaded on a clean interpreter
    assert reply.status == 200, reply.body
    assert reply.header("VmRegistry-API-Version") == "v1"


def test_push_and_pull_a_multipart_image_with_the_reference_client(stack: DeployedStack, tmp_path: Path) -> None:
    # GIVEN two disks: one joined and verified within the request (2 parts of 5 MiB), one larger
    # than the deployment's verifyInlineBytes, which the blob_verify worker verifies after a 202
    small = tmp_path / "small.raw"
    small.write_bytes(os.urandom(6 * MiB))
    large = tmp_path / "large.raw"
    large.write_bytes(os.urandom(VERIFY_INLINE_BYTES + 3 * MiB))
    # WHEN the reference client pushes them through API Gateway, Lambda and presigned part URLs ...
    pushed = stack.cli("push", stack.reference("team/vm:1"), "--disk", str(small), "--disk", str(large),
                       "--part-size", "5", "-q")  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1]
    # ... and pulls the image back (307 redirects followed to the bucket, in ranges)
    pulled = stack.cli("pull", stack.reference("team/vm:1"), "-o", str(tmp_path / "out"), "-q")
    assert pulled.returncode == 0, pulled.stderr
    # THEN both disks came back byte for byte, under the manifest digest the push printed
    assert (tmp_path / "out" / "small.raw").read_bytes() == small.read_bytes()
    assert (tmp_path / "out" / "large.raw").read_bytes() == large.read_bytes()
    head = stack.api("HEAD", "/v1/team/vm/manifests/1")
    assert head.status == 200
    assert head.header("Docker-Content-Digest") == digest


def test_a_large_multipart_upload_is_answered_202_and_published_by_the_worker(stack: DeployedStack) -> None:
    # GIVEN a blob above verifyInlineBytes, sent in two parts to presigned part URLs
    data = os.urandom(VERIFY_INLINE_BYTES + MiB)
    digest = digest_of(data)
    started = stack.api("POST", "/v1/team/worker/blobs/uploads/")
    assert started.status == 202, started.body
    location = started.header("Location") or ""
    parts = stack.api("PATCH", f"{location}?part=1-2")
    assert parts.status == 202, parts.body
    for part, chunk in zip(parts.json()["parts"], (data[:MIN_PART_SIZE], data[MIN_PART_SIZE:]), strict=True):
        sent = stack.fetch(part["method"], part["url"], chunk, part["headers"])
        assert sent.status == 200, sent.body
    # WHEN the upload is completed
    done = stack.api("PUT", f"{location}?digest={digest}")
    # THEN the API answers 202 at once: the worker function, invoked asynchronously, verifies it
    assert done.status == 202, done.body
    assert done.json()["state"] == "verifying"
    deadline = time.monotonic() + WORKER_WAIT
    while (status := stack.api("GET", location)).status == 200 and time.monotonic() < deadline:
        assert status.json()["state"] == "verifying", status.body
        time.sleep(0.5)
    # ... and publishes it: the session is gone (404) and the blob is there, with its size
    assert status.status == 404, status.body
    head = stack.api("HEAD", f"/v1/team/worker/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(data))


def test_range_requests_work_on_the_redirect_target_and_tampered_urls_are_refused(stack: DeployedStack) -> None:
    # GIVEN a blob of 5 MiB + 1 KiB, uploaded with the single presigned PUT flow
    data = os.urandom(MIN_PART_SIZE + 1024)
    digest = digest_of(data)
    started = stack.api("POST", f"/v1/team/range/blobs/uploads/?digest={digest}&size={len(data)}")
    assert started.status == 202, started.body
    upload = started.json()["upload"]
    assert stack.fetch(upload["method"], upload["url"], data, upload["headers"]).status == 200
    assert stack.api("PUT", f"{started.header('Location')}?digest={digest}").status == 201
    # WHEN the blob is fetched: API Gateway passes the function's 307 through untouched
    redirect = stack.api("GET", f"/v1/team/range/blobs/{digest}")
    assert redirect.status == 307, redirect.body
    target = redirect.header("Location") or ""
    assert target.startswith(stack.deployment.emulator.endpoint + "/" + stack.deployment.bucket + "/")
    # THEN the bucket serves a range of it, with no credentials but the URL's signature
    ranged = stack.fetch("GET", target, headers={"Range": "bytes=5242870-5242889"})
    assert ranged.status == 206, ranged.body
    assert ranged.body == data[5242870:5242890]
    assert ranged.header("Content-Range") == f"bytes 5242870-5242889/{len(data)}"
    # ... and refuses the same URL with its signature changed, or without one
    signature = target[-64:]
    tampered = target[:-64] + ("0" if signature[0] != "0" else "1") + signature[1:]
    assert stack.fetch("GET", tampered).status == 403
    assert stack.fetch("GET", target.split("?", 1)[0]).status == 403


@pytest.mark.parametrize("depth", range(1, MAX_DEPTH + 1))
def test_repository_names_of_every_served_depth_hold_manifests_and_tags(
    stack: DeployedStack, image: dict[str, str], depth: int
) -> None:
    # GIVEN a name of `depth` components (the stack declares routes for 1..maxRepositoryDepth)
    repository = "/".join(["depth", "a", "b", "c", "d", "e", "f", "g"][:depth]) if depth > 1 else "solo"
    manifest = image["manifest"].encode()
    # WHEN the config blob is mounted from team/app and the manifest stored under two tags
    mounted = stack.api("POST", f"/v1/{repository}/blobs/uploads/?mount={digest_of(CONFIG)}&from=team/app")
    assert mounted.status == 201, mounted.body
    for tag in ("v1", "v2"):
        stored = put_manifest(stack, repository, tag, manifest)
        assert stored.status == 201, stored.body
    # THEN the manifest reads back by tag and by digest, and its tags list page by page
    by_tag = stack.api("GET", f"/v1/{repository}/manifests/v2")
    assert (by_tag.status, by_tag.body) == (200, manifest)
    assert stack.api("GET", f"/v1/{repository}/manifests/{image['digest']}").body == manifest
    first = stack.api("GET", f"/v1/{repository}/tags/list?n=1")
    assert first.json() == {"name": repository, "tags": ["v1"]}
    following = urljoin(stack.base + "/", link_target(first.header("Link")))
    assert stack.fetch("GET", following, headers=stack.bearer()).json() == {"name": repository, "tags": ["v2"]}


def link_target(link: str | None) -> str:
    assert link is not None
    assert link.endswith('>; rel="next"'), link
    return link[1 : link.index(">")]


def test_a_name_deeper_than_the_maximum_is_refused_by_the_gateway(stack: DeployedStack) -> None:
    # GIVEN a name one component deeper than maxRepositoryDepth: no API Gateway resource serves it
    reply = stack.api("GET", "/v1/" + "/".join("abcdefghi"[: MAX_DEPTH + 1]) + "/tags/list")
    # THEN API Gateway itself refuses it with a 4xx, before any function runs (AWS: 403
    # "Missing Authentication Token", its answer for a path without a resource)
    assert reply.status in (403, 404), reply.body


def test_the_catalog_lists_only_what_the_token_may_pull_page_by_page(
    stack: DeployedStack, image: dict[str, str]
) -> None:
    # GIVEN repositories team/app and team/vm among others, and a token that may pull team/** only
    token = stack.bearer("repository:team/**:pull")
    # WHEN the catalog is read two names at a time, following Link
    names: list[str] = []
    page = stack.api("GET", "/v1/_catalog?n=2", headers=token)
    while True:
        assert page.status == 200, page.body
        names += page.json()["repositories"]
        if page.header("Link") is None:
            break
        page = stack.fetch("GET", urljoin(stack.base + "/", link_target(page.header("Link"))), headers=token)
    # THEN it holds exactly the team repositories, sorted, each once
    assert names == sorted(set(names))
    assert image["repository"] in names
    assert all(name.startswith("team/") for name in names)


# --- the authorizer, through API Gateway -----------------------------------------------------------


def test_no_token_gets_the_gateways_401_with_the_registrys_challenge(stack: DeployedStack) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", token=False)
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == GATEWAY_CHALLENGE
    assert reply.error_codes == ["UNAUTHORIZED"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 1_000_000_000}, "expired"),
        ({"iss": "https://someone-else.example"}, "wrong issuer"),
        ({"aud": "another-service"}, "wrong audience"),
    ],
)
def test_tokens_the_authorizer_cannot_accept_get_401(stack: DeployedStack, claims: dict[str, object], why: str) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", headers=stack.bearer("repository:team/app:pull", **claims))
    assert reply.status == 401, why
    assert reply.error_codes == ["UNAUTHORIZED"]


def test_a_token_signed_by_another_key_gets_401(stack: DeployedStack) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    stranger = serialization.load_pem_private_key(stack.keys.other_private_pem, password=None)
    forged = jwt.encode(stack.keys.claims(["repository:**:pull,push,delete"]), stranger, algorithm="RS256")  # type: ignore[arg-type]
    reply = stack.api("GET", "/v1/team/app/tags/list", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status == 401


def test_a_token_for_another_repository_gets_403_insufficient_scope(
    stack: DeployedStack, image: dict[str, str]
) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", headers=stack.bearer("repository:other/app:pull"))
    assert reply.status == 403
    assert reply.error_codes == ["DENIED"]
    assert 'error="insufficient_scope"' in (reply.header("WWW-Authenticate") or "")


def test_a_pull_only_token_reads_but_cannot_push_or_delete(stack: DeployedStack, image: dict[str, str]) -> None:
    # GIVEN a token that may only pull team/app
    pull_only = stack.bearer("repository:team/app:pull")
    path = f"/v1/team/app/manifests/{image['tag']}"
    # THEN it reads the manifest ...
    assert stack.api("GET", path, headers=pull_only).status == 200
    # ... but the same token on the same path with PUT or DELETE is denied by the gateway (the
    # authorizer's cache is keyed by method and path too, so the GET's Allow is not reused)
    assert put_manifest(stack, "team/app", image["tag"], image["manifest"].encode(), **pull_only).status == 403
    assert stack.api("DELETE", path, headers=pull_only).status == 403
    assert stack.api("POST", "/v1/team/app/blobs/uploads/", headers=pull_only).status == 403
    # ... and the manifest is still there
    assert stack.api("GET", path).status == 200


# --- bad input through the gateway: a clear 4xx from the registry, never a gateway 5xx --------------

MISSING = "sha256:" + "0" * 64
UNKNOWN_UUID = "12345678-1234-4234-8234-123456789abc"

BAD_INPUT: list[tuple[str, str, str, bytes, int, str]] = [
    ("short digest", "GET", "/v1/team/app/blobs/sha256:abc", b"", 400, "DIGEST_INVALID"),
    ("unknown blob", "GET", f"/v1/team/app/blobs/{MISSING}", b"", 404, "BLOB_UNKNOWN"),
    ("wrong inline body", "PUT", f"/v1/team/app/blobs/{MISSING}", b"not zeros", 400, "DIGEST_INVALID"),
    # Lambda takes bodies up to ~4.4 MB whole (6 MB payload, base64): checked against the digest, not refused.
    ("4 MiB body, wrong digest", "PUT", f"/v1/team/app/blobs/{MISSING}", bytes(4 * MiB + 1), 400, "DIGEST_INVALID"),
    ("unknown upload", "GET", f"/v1/team/app/blobs/uploads/{UNKNOWN_UUID}", b"", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("bad upload size", "POST", f"/v1/team/app/blobs/uploads/?digest={MISSING}&size=-1", b"", 400, "SIZE_INVALID"),
    ("manifest not JSON", "PUT", "/v1/team/app/manifests/broken", b"{not json", 400, "MANIFEST_INVALID"),
    ("unknown manifest", "GET", "/v1/team/app/manifests/nope", b"", 404, "MANIFEST_UNKNOWN"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_gets_the_registrys_4xx_through_the_gateway(
    stack: DeployedStack, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    reply = stack.api(method, path, body or None, {"Content-Type": "application/octet-stream"} if body else None)
    assert (reply.status, reply.error_codes) == (status, [code]), reply.body[:500]


def test_a_binary_body_needs_a_content_type_to_pass_the_gateway_intact(stack: DeployedStack) -> None:
    # GIVEN bytes that are not UTF-8, sent inline
    data = bytes(range(256)) * 4
    path = f"/v1/team/binary/blobs/{digest_of(data)}"
    # WHEN they are sent without a Content-Type, API Gateway hands them to the function as text
    # (binaryMediaTypes match on the request's Content-Type), so they arrive changed ...
    mangled = stack.api("PUT", path, data)
    # THEN the registry refuses them as not matching the digest, and stores nothing
    assert (mangled.status, mangled.error_codes) == (400, ["DIGEST_INVALID"])
    assert stack.api("HEAD", path).status == 404
    # ... while with a Content-Type, as the reference client sends, they arrive byte for byte
    sent = stack.api("PUT", path, data, {"Content-Type": "application/octet-stream"})
    assert sent.status == 201, sent.body
    assert stack.api("HEAD", path).status == 200


def test_an_uppercase_name_is_refused_before_any_function_runs(stack: DeployedStack) -> None:
    # The authorizer denies names outside the grammar (it decides per repository), so the
    # gateway answers 403 in the registry's error format; no handler sees the request.
    reply = stack.api("GET", "/v1/Team/App/tags/list")
    assert reply.status == 403
    assert json.loads(reply.body)["errors"][0]["code"] == "DENIED"


# --- /v2, the OCI Distribution API, through the same gateway, functions and bucket ------------------

OCI_ACCEPTS = (
    mt.OCI_MANIFEST,
    # what oras and skopeo send: several types, the manifest's not first
    f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST};q=0.9",
    "*/*",
)
"""``Accept`` values of OCI clients. API Gateway decodes a base64 body only for an ``Accept`` that matches a
binary media type, so each must still get the manifest's own bytes."""
OCTETS = {"Content-Type": "application/octet-stream"}
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
