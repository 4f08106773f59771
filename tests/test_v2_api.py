"""/v2, the OCI Distribution API, over HTTP against a real local server: what the conformance suite does not check.

``make conformance`` runs the spec's own suite (every family) against the same
server; these tests pin down what is this registry's own: uploads that resume
after a 416 and join chunks of any size into storage's parts, a VM image that
is the same image through both APIs (docs/oci.md), referrers that follow
pushes and deletes, tag parameters, anonymous mounts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vmregistry import mediatypes, paths
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.vmimage import to_oci, to_seed
from vmregistry.wire import OCI_CHUNK_LENGTH

from tests.conftest import RunningServer
from tests.httpclient import Reply, request
from tests.registry_flows import digest_of, make_manifest, push_inline, put_manifest

MiB = 1024 * 1024


def _follow(reply: Reply, base: str) -> bytes:
    location = reply.header("Location") or ""
    fetched = request("GET", location if location.startswith("http") else base + location)
    assert fetched.status == 200, fetched.body
    return fetched.body


def _push_blob(url: str, repo: str, data: bytes) -> str:
    """OCI's monolithic push: POST ?digest= with the body."""
    digest = digest_of(data)
    reply = request(
        "POST", f"{url}/v2/{repo}/blobs/uploads/?digest={digest}", data, {"Content-Type": "application/octet-stream"}
    )
    assert reply.status == 201, reply.body
    return digest


def _oci_image(url: str, repo: str, config: bytes = b"{}", extra: dict[str, Any] | None = None) -> bytes:
    config_digest = _push_blob(url, repo, config)
    layer = os.urandom(100)
    layer_digest = _push_blob(url, repo, layer)
    document = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}],
        **(extra or {}),
    }
    return json.dumps(document).encode()


def _put(url: str, repo: str, reference: str, body: bytes, media_type: str = mt.OCI_MANIFEST) -> Reply:
    return request("PUT", f"{url}/v2/{repo}/manifests/{reference}", body, {"Content-Type": media_type})


def test_the_api_version_check(server: RunningServer) -> None:
    reply = request("GET", f"{server.url}/v2/")
    assert reply.status == 200
    assert reply.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert reply.json() == {}


def test_a_chunked_upload_resumes_after_a_416_and_joins_chunks_of_any_size(server: RunningServer) -> None:
    repo = "v2/chunks"
    data = os.urandom(23 * MiB + 12345)
    digest = digest_of(data)
    # GIVEN an upload session, which says where it continues and what chunk length to use
    started = request("POST", f"{server.url}/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert started.status == 202
    location = started.header("Location") or ""
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    assert (started.header("Range"), started.header("OCI-Chunk-Min-Length")) == ("0-0", str(OCI_CHUNK_LENGTH))

    def patch(start: int, end: int) -> Reply:
        headers = {"Content-Range": f"{start}-{end}", "Content-Type": "application/octet-stream"}
        return request("PATCH", server.url + location, data[start : end + 1], headers)

    # WHEN a small chunk arrives (it waits), then one that skips ahead
    assert patch(0, MiB - 1).header("Range") == f"0-{MiB - 1}"
    skipped = patch(2 * MiB, 3 * MiB - 1)
    # THEN the skip is a 416 that says where the upload stands, as does a status request
    assert skipped.status == 416
    assert skipped.error_codes == ["RANGE_INVALID"]
    assert (skipped.header("Range"), skipped.header("Location")) == (f"0-{MiB - 1}", location)
    status = request("GET", server.url + location)
    assert (status.status, status.header("Range")) == (204, f"0-{MiB - 1}")
    # WHEN the client resumes there with a big chunk (joined with the waiting one into 8 MiB parts),
    # a tiny one (it waits), and the last one in the closing PUT
    assert patch(MiB, 21 * MiB - 1).header("Range") == f"0-{21 * MiB - 1}"
    assert patch(21 * MiB, 21 * MiB + 99).header("Range") == f"0-{21 * MiB + 99}"
    closing = request(
        "PUT",
        f"{server.url}{location}?digest={digest}",
        data[21 * MiB + 100 :],
        {"Content-Range": f"{21 * MiB + 100}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    # THEN the blob is published under its digest with exactly these bytes, and nothing of the session is left
    assert closing.status == 201, closing.body
    assert closing.header("Location") == f"/v2/{repo}/blobs/{digest}"
    assert closing.header("Docker-Content-Digest") == digest
    head = request("HEAD", f"{server.url}/v2/{repo}/blobs/{digest}")
    assert (head.status, head.header("Content-Length")) == (200, str(len(data)))
    assert _follow(request("GET", f"{server.url}/v2/{repo}/blobs/{digest}"), server.url) == data
    uuid = location.rsplit("/", 1)[1]
    assert not (server.storage / paths.upload_prefix(uuid)).exists()
    assert request("GET", server.url + location).status == 404


def test_a_wrong_digest_publishes_nothing_and_ends_the_session(server: RunningServer) -> None:
    repo = "v2/wrong"
    started = request("POST", f"{server.url}/v2/{repo}/blobs/uploads/")
    location = started.header("Location") or ""
    assert (
        request("PATCH", server.url + location, b"some bytes", {"Content-Type": "application/octet-stream"}).status
        == 202
    )
    claimed = digest_of(b"other bytes")
    refused = request("PUT", f"{server.url}{location}?digest={claimed}")
    assert refused.status == 400
    assert refused.error_codes == ["DIGEST_INVALID"]
    assert request("HEAD", f"{server.url}/v2/{repo}/blobs/{claimed}").status == 404
    assert request("GET", server.url + location).status == 404


def test_mounts_from_a_repository_anonymously_and_of_a_missing_blob(server: RunningServer) -> None:
    data = os.urandom(64)
    digest = _push_blob(server.url, "v2/mount-source", data)
    # WHEN mounted from the repository that holds it THEN 201 and it is there
    mounted = request("POST", f"{server.url}/v2/v2/mount-a/blobs/uploads/?mount={digest}&from=v2/mount-source")
    assert (mounted.status, mounted.header("Docker-Content-Digest")) == (201, digest)
    # WHEN mounted without naming a source (this server has no authentication: the caller may pull anything)
    anonymous = request("POST", f"{server.url}/v2/v2/mount-b/blobs/uploads/?mount={digest}")
    assert anonymous.status == 201
    assert request("HEAD", f"{server.url}/v2/v2/mount-b/blobs/{digest}").status == 200
    # WHEN the source does not hold the blob THEN an upload session starts instead
    missing = request("POST", f"{server.url}/v2/v2/mount-c/blobs/uploads/?mount={digest}&from=v2/mount-a/nothing")
    assert missing.status == 202
    assert request("HEAD", f"{server.url}/v2/v2/mount-c/blobs/{digest}").status == 404


def _seed_image(url: str, repo: str) -> bytes:
    config = b'{"os":"linux"}'
    disk = os.urandom(1000)
    config_digest, disk_digest = push_inline(url, repo, config), push_inline(url, repo, disk)
    # The seed client's serialisation: sorted keys, no spaces (client/_image.py).
    document = json.loads(make_manifest((config_digest, len(config)), [(disk_digest, len(disk))]))
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_a_vm_image_pushed_through_v1_is_an_oci_image_through_v2(server: RunningServer) -> None:
    # GIVEN a VM image pushed the seed's way (the form `vmregistry push` writes)
    repo = "v2/vm-from-v1"
    seed = _seed_image(server.url, repo)
    assert put_manifest(server.url, repo, "24.04", seed).status == 201
    oci = to_oci(seed)
    assert oci is not None
    # WHEN an OCI client reads the tag through /v2
    got = request("GET", f"{server.url}/v2/{repo}/manifests/24.04", headers={"Accept": mt.OCI_MANIFEST})
    # THEN it gets the OCI form, an image manifest whose artifactType names the VM image
    assert got.status == 200
    assert got.body == oci
    assert got.header("Content-Type") == mt.OCI_MANIFEST
    assert got.header("Docker-Content-Digest") == digest_of(oci)
    assert json.loads(oci)["artifactType"] == mediatypes.MANIFEST
    # AND that digest resolves through both APIs, as the seed's digest does
    for api, digest, body in (("v2", digest_of(oci), oci), ("v1", digest_of(oci), oci), ("v2", digest_of(seed), seed)):
        by_digest = request("GET", f"{server.url}/{api}/{repo}/manifests/{digest}")
        assert (by_digest.status, by_digest.body) == (200, body), (api, digest)
    # AND /v1 still reads the seed form, byte for byte
    assert request("GET", f"{server.url}/v1/{repo}/manifests/24.04").body == seed
    assert request("GET", f"{server.url}/v2/{repo}/tags/list").json() == {"name": repo, "tags": ["24.04"]}
    # WHEN the OCI form is deleted through /v2 THEN the image is gone in both spellings, and its tag
    assert request("DELETE", f"{server.url}/v2/{repo}/manifests/{digest_of(oci)}").status == 202
    for api, digest in (("v1", digest_of(seed)), ("v2", digest_of(oci)), ("v1", "24.04")):
        assert request("GET", f"{server.url}/{api}/{repo}/manifests/{digest}").status == 404


def test_a_vm_image_pushed_through_v2_is_listed_and_pulled_through_v1(server: RunningServer) -> None:
    # GIVEN a VM image in its OCI form, pushed by an OCI tool
    repo = "v2/vm-from-v2"
    oci = to_oci(_seed_image(server.url, repo))
    assert oci is not None
    assert _put(server.url, repo, "stable", oci).status == 201
    # WHEN the seed client lists and reads it through /v1
    tags = request("GET", f"{server.url}/v1/{repo}/tags/list").json()
    got = request("GET", f"{server.url}/v1/{repo}/manifests/stable", headers={"Accept": mediatypes.MANIFEST})
    # THEN it is there, in the seed's form, with the digest of what it received
    assert tags == {"name": repo, "tags": ["stable"]}
    assert got.status == 200
    assert got.body == to_seed(oci)
    assert got.header("Content-Type") == mediatypes.MANIFEST
    assert got.header("Docker-Content-Digest") == digest_of(got.body)


def test_each_api_takes_its_own_spelling(server: RunningServer) -> None:
    repo = "v2/spellings"
    seed = _seed_image(server.url, repo)
    # /v2 refuses the seed's manifest type (OCI tools could not copy it), /v1 refuses OCI documents
    refused = _put(server.url, repo, "x", seed, mediatypes.MANIFEST)
    assert (refused.status, refused.error_codes) == (400, ["MANIFEST_INVALID"])
    assert "OCI form" in refused.json()["errors"][0]["message"]
    oci_image = _oci_image(server.url, repo)
    refused = put_manifest(server.url, repo, "y", oci_image)
    assert (refused.status, refused.error_codes) == (400, ["MANIFEST_INVALID"])


def test_referrers_follow_pushes_and_deletes(server: RunningServer) -> None:
    repo = "v2/referred-to"
    subject = _oci_image(server.url, repo)
    assert _put(server.url, repo, "app", subject).status == 201
    descriptor = {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(subject), "size": len(subject)}
    empty = _push_blob(server.url, repo, b"{}")
    referrers = {}
    for kind in ("application/vnd.example.sbom", "application/vnd.example.signature"):
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": kind,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
                "layers": [{"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2}],
                "subject": descriptor,
                "annotations": {"org.example.kind": kind},
            }
        ).encode()
        pushed = _put(server.url, repo, digest_of(body), body)
        # THEN each push names its subject
        assert (pushed.status, pushed.header("OCI-Subject")) == (201, digest_of(subject))
        referrers[kind] = digest_of(body)
    url = f"{server.url}/v2/{repo}/referrers/{digest_of(subject)}"
    listed = request("GET", url)
    assert listed.header("Content-Type") == mt.OCI_INDEX
    assert {m["digest"]: m["artifactType"] for m in listed.json()["manifests"]} == {v: k for k, v in referrers.items()}
    filtered = request("GET", f"{url}?artifactType=application/vnd.example.sbom")
    assert filtered.header("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [referrers["application/vnd.example.sbom"]]
    # WHEN a referrer is deleted THEN it leaves the list; an unknown subject has an empty one, not a 404
    assert (
        request("DELETE", f"{server.url}/v2/{repo}/manifests/{referrers['application/vnd.example.sbom']}").status == 202
    )
    assert [m["digest"] for m in request("GET", url).json()["manifests"]] == [
        referrers["application/vnd.example.signature"]
    ]
    unknown = request("GET", f"{server.url}/v2/{repo}/referrers/{digest_of(b'nothing')}")
    assert (unknown.status, unknown.json()["manifests"]) == (200, [])


def test_tag_parameters_tag_a_push_by_digest(server: RunningServer) -> None:
    repo = "v2/tag-params"
    body = _oci_image(server.url, repo)
    digest = digest_of(body)
    pushed = _put(server.url, repo, f"{digest}?tag=a&tag=b", body)
    assert pushed.status == 201
    assert sorted(t.strip() for t in (pushed.header("OCI-Tag") or "").split(",")) == ["a", "b"]
    assert request("GET", f"{server.url}/v2/{repo}/tags/list").json()["tags"] == ["a", "b"]
    many = "&".join(f"tag=t{i}" for i in range(65))
    refused = _put(server.url, repo, f"{digest}?{many}", body)
    assert (refused.status, refused.error_codes) == (400, ["TAG_INVALID"])
    assert refused.json()["errors"][0]["detail"] == {"limit": 64}
