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
handling whatever the client sends. ``/v2`` checks belong here too, on the
same ``stack`` fixture (``stack.api`` takes any path under the stage).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import boto3
import pytest
from vmregistry import mediatypes
from vmregistry.storage import MIN_PART_SIZE

from emulator.deploy import STACK, host_architecture
from emulator.process import REGION, ROOT_KEY
from infra.config import PYTHON_VERSION
from infra.functions import function_specs
from tests.deployed import MAX_DEPTH, VERIFY_INLINE_BYTES, DeployedStack, deployed_stack
from tests.httpclient import Reply
from tests.registry_flows import digest_of, make_manifest

MiB = 1024 * 1024
CONFIG = b'{"cpus": 2, "memoryMiB": 2048}'
WORKER_WAIT = 60.0


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
    assert reply.header("WWW-Authenticate") == 'Bearer realm="vmregistry",service="vmregistry"'
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
