"""``/v1`` through the deployed stack: the reference client, the worker, redirects, every routed depth, the catalog.

What a client of the registry's own API meets in AWS: functions on the
architecture they were built for, a multipart image pushed and pulled with the
reference client, the 202 path through the ``blob_verify`` worker, ranges and
signatures on the bucket's redirect targets, names of every depth the stack
routes (and the gateway's refusal of a deeper one), and a catalog filtered by
the token.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
from vmregistry.storage import MIN_PART_SIZE

from emulator.deploy import STACK, host_architecture
from infra.config import PYTHON_VERSION
from infra.functions import function_specs
from tests.deployed import MAX_DEPTH, VERIFY_INLINE_BYTES, DeployedStack
from tests.deployed_stack.helpers import CONFIG, MiB, link_target, put_manifest
from tests.registry_flows import digest_of

WORKER_WAIT = 60.0


def test_every_function_runs_on_the_architecture_it_was_deployed_for(stack: DeployedStack) -> None:
    # GIVEN the stack deployed with -c architecture=<this machine's> (the emulator runs functions here)
    pages = stack.deployment.emulator.client("lambda").get_paginator("list_functions").paginate()
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
