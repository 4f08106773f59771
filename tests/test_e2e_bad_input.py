"""Every client mistake gets the right 4xx and a JSON error body, and nothing is written or lost.

One table of broken requests against a real server. After the table, the
storage root holds only what the valid setup requests put there, and nothing
at all was written outside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from vmregistry import mediatypes, paths
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.manifests import MAX_DESCRIPTORS

from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import digest_of, make_manifest, push_inline, put_manifest

REPO = "good/repo"
CONFIG = b'{"cpus": 1}'
CONFIG_DIGEST = digest_of(CONFIG)
MISSING = "sha256:" + "0" * 64
UNKNOWN_UUID = "12345678-1234-4234-8234-123456789abc"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("hostile"))
    push_inline(running.url, REPO, CONFIG)
    yield running
    stop_server(running)


def manifest(**changes: object) -> bytes:
    document = json.loads(make_manifest((CONFIG_DIGEST, len(CONFIG)), []))
    document.update(changes)
    return json.dumps(document).encode()


def oci_manifest(**changes: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": len(CONFIG)},
        "layers": [],
    }
    document.update(changes)
    return json.dumps(document).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


OCI = {"Content-Type": mt.OCI_MANIFEST}
GOOD_OCI_DIGEST = digest_of(oci_manifest())


# (id, method, path, body, headers, status, code)
CASES: list[tuple[str, str, str, bytes, dict[str, str], int, str]] = [
    # Names
    ("uppercase name", "GET", "/v1/Team/repo/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("dot-dot name", "GET", "/v1/team/../etc/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("encoded dot-dot", "HEAD", f"/v1/%2e%2e/%2e%2e/blobs/{MISSING}", b"", {}, 400, ""),
    ("double slash", "GET", "/v1/team//repo/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("leading separator", "GET", "/v1/-team/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("non-ascii name", "GET", "/v1/t%C3%A9am/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("overlong name", "GET", "/v1/" + "a" * 256 + "/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("underscore component", "GET", "/v1/team/_blobs/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("reserved component", "GET", "/v1/team/manifests/tags/list", b"", {}, 400, "NAME_INVALID"),
    # Digests
    ("unknown algorithm", "GET", "/v1/good/repo/blobs/md5:" + "a" * 32, b"", {}, 400, "DIGEST_INVALID"),
    ("unknown sha512 blob", "GET", "/v1/good/repo/blobs/sha512:" + "a" * 128, b"", {}, 404, "BLOB_UNKNOWN"),
    ("uppercase digest", "GET", "/v1/good/repo/blobs/sha256:" + "A" * 64, b"", {}, 400, "DIGEST_INVALID"),
    ("short digest", "GET", "/v1/good/repo/blobs/sha256:abc", b"", {}, 400, "DIGEST_INVALID"),
    ("no algorithm", "DELETE", "/v1/good/repo/blobs/" + "a" * 64, b"", {}, 400, "DIGEST_INVALID"),
    ("digest with path", "PUT", "/v1/good/repo/blobs/sha256:..%2f..%2fx", b"x", {}, 404, "NOT_FOUND"),
    ("unknown blob", "HEAD", f"/v1/good/repo/blobs/{MISSING}", b"", {}, 404, ""),
    ("unknown blob get", "GET", f"/v1/good/repo/blobs/{MISSING}", b"", {}, 404, "BLOB_UNKNOWN"),
    ("wrong inline body", "PUT", f"/v1/good/repo/blobs/{MISSING}", b"not zeros", {}, 400, "DIGEST_INVALID"),
    (
        "streamed blob with the wrong digest",
        "PUT",
        f"/v1/good/repo/blobs/{MISSING}",
        b"\0" * (10 * 1024 * 1024 + 1),
        {},
        400,
        "DIGEST_INVALID",
    ),
    (
        "manifest over gateway limit",
        "PUT",
        "/v1/good/repo/manifests/t",
        b"\0" * (10 * 1024 * 1024 + 1),
        {},
        413,
        "TOO_LARGE",
    ),
    # Uploads
    ("unknown upload", "GET", f"/v1/good/repo/blobs/uploads/{UNKNOWN_UUID}", b"", {}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("malformed upload id", "PATCH", "/v1/good/repo/blobs/uploads/..%2f..%2fsecret", b"x", {}, 404, ""),
    (
        "upload id traversal",
        "PUT",
        "/v1/good/repo/blobs/uploads/not-a-uuid?digest=" + MISSING,
        b"",
        {},
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    (
        "cancel unknown upload",
        "DELETE",
        f"/v1/good/repo/blobs/uploads/{UNKNOWN_UUID}",
        b"",
        {},
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    ("monolithic without digest", "POST", "/v1/good/repo/blobs/uploads/", b"data", {}, 400, "DIGEST_INVALID"),
    ("bad size", "POST", f"/v1/good/repo/blobs/uploads/?digest={MISSING}&size=-1", b"", {}, 400, "SIZE_INVALID"),
    ("bad mode", "POST", "/v1/good/repo/blobs/uploads/?mode=teleport", b"", {}, 400, "BLOB_UPLOAD_INVALID"),
    (
        "single without size",
        "POST",
        f"/v1/good/repo/blobs/uploads/?digest={MISSING}&mode=single",
        b"",
        {},
        400,
        "BLOB_UPLOAD_INVALID",
    ),
    (
        "single over 5 GiB",
        "POST",
        f"/v1/good/repo/blobs/uploads/?digest={MISSING}&size={6 << 30}&mode=single",
        b"",
        {},
        400,
        "SIZE_INVALID",
    ),
    (
        "mount bad digest",
        "POST",
        "/v1/good/repo/blobs/uploads/?mount=nope&from=good/repo",
        b"",
        {},
        400,
        "DIGEST_INVALID",
    ),
    (
        "mount bad source",
        "POST",
        f"/v1/good/repo/blobs/uploads/?mount={MISSING}&from=BAD",
        b"",
        {},
        400,
        "NAME_INVALID",
    ),
    # Manifests
    ("bad tag", "PUT", "/v1/good/repo/manifests/-tag", manifest(), {}, 400, "TAG_INVALID"),
    ("overlong tag", "GET", "/v1/good/repo/manifests/" + "t" * 129, b"", {}, 400, "TAG_INVALID"),
    ("reserved tag", "PUT", "/v1/good/repo/manifests/manifest.json", manifest(), {}, 400, "TAG_INVALID"),
    ("unknown manifest", "GET", "/v1/good/repo/manifests/nope", b"", {}, 404, "MANIFEST_UNKNOWN"),
    ("unknown manifest delete", "DELETE", f"/v1/good/repo/manifests/{MISSING}", b"", {}, 404, "MANIFEST_UNKNOWN"),
    ("not json", "PUT", "/v1/good/repo/manifests/t", b"{not json", {}, 400, "MANIFEST_INVALID"),
    ("not utf-8", "PUT", "/v1/good/repo/manifests/t", b"\xff\xfe{}", {}, 400, "MANIFEST_INVALID"),
    ("json array", "PUT", "/v1/good/repo/manifests/t", b"[]", {}, 400, "MANIFEST_INVALID"),
    ("schema version 1", "PUT", "/v1/good/repo/manifests/t", manifest(schemaVersion=1), {}, 400, "MANIFEST_INVALID"),
    (
        "schema version true",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(schemaVersion=True),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "unknown media type",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(mediaType="application/x-evil"),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    ("layers not a list", "PUT", "/v1/good/repo/manifests/t", manifest(layers={}), {}, 400, "MANIFEST_INVALID"),
    (
        "bad layer type",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(layers=[{"mediaType": "text/plain", "digest": CONFIG_DIGEST, "size": len(CONFIG)}]),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "negative size",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(config={"mediaType": mediatypes.CONFIG, "digest": CONFIG_DIGEST, "size": -1}),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "size mismatch",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(config={"mediaType": mediatypes.CONFIG, "digest": CONFIG_DIGEST, "size": 999}),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "missing blob",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(layers=[{"mediaType": mediatypes.DISK, "digest": MISSING, "size": 1}]),
        {},
        400,
        "MANIFEST_BLOB_UNKNOWN",
    ),
    ("blob of another repo", "PUT", "/v1/other/repo/manifests/t", manifest(), {}, 400, "MANIFEST_BLOB_UNKNOWN"),
    ("digest reference mismatch", "PUT", f"/v1/good/repo/manifests/{MISSING}", manifest(), {}, 400, "DIGEST_INVALID"),
    (
        "wrong content type",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(),
        {"Content-Type": "text/plain"},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "oversized manifest",
        "PUT",
        "/v1/good/repo/manifests/t",
        manifest(pad="x" * (4 * 1024 * 1024)),
        {},
        413,
        "TOO_LARGE",
    ),
    # Listing and routing
    ("bad page size", "GET", "/v1/_catalog?n=ten", b"", {}, 400, "PAGINATION_NUMBER_INVALID"),
    ("negative page size", "GET", "/v1/good/repo/tags/list?n=-1", b"", {}, 400, "PAGINATION_NUMBER_INVALID"),
    ("unknown repository tags", "GET", "/v1/never/pushed/tags/list", b"", {}, 404, "NAME_UNKNOWN"),
    ("unknown route", "GET", "/v1/good/repo/secrets", b"", {}, 404, "NOT_FOUND"),
    ("outside v1", "GET", "/etc/passwd", b"", {}, 404, "NOT_FOUND"),
    ("wrong method", "POST", "/v1/_catalog", b"", {}, 405, "UNSUPPORTED"),
    ("bad content length", "PUT", f"/v1/good/repo/blobs/{MISSING}", b"", {"Content-Length": "abc"}, 400, "BAD_REQUEST"),
    # JSON nested deeper than any parser should recurse: a 400 on either API, never a 500
    ("nested 10,000 deep", "PUT", "/v1/good/repo/manifests/t", nested(10_000), {}, 400, "MANIFEST_INVALID"),
    ("v2 nested 10,000 deep", "PUT", "/v2/good/repo/manifests/t", nested(10_000), OCI, 400, "MANIFEST_INVALID"),
    (
        "v2 nested field",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(extra=json.loads(nested(100))),
        OCI,
        400,
        "MANIFEST_INVALID",
    ),
    # /v2: names, digests, uploads
    ("v2 uppercase name", "GET", "/v2/Team/repo/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("v2 reserved component", "GET", "/v2/team/referrers/tags/list", b"", {}, 400, "NAME_INVALID"),
    ("v2 unknown algorithm", "GET", "/v2/good/repo/blobs/md5:" + "a" * 32, b"", {}, 400, "DIGEST_INVALID"),
    ("v2 short digest", "HEAD", "/v2/good/repo/blobs/sha256:abc", b"", {}, 400, ""),
    ("v2 unknown blob", "GET", f"/v2/good/repo/blobs/{MISSING}", b"", {}, 404, "BLOB_UNKNOWN"),
    ("v2 has no blob put", "PUT", f"/v2/good/repo/blobs/{MISSING}", b"x", {}, 405, "UNSUPPORTED"),
    ("v2 unknown upload", "GET", f"/v2/good/repo/blobs/uploads/{UNKNOWN_UUID}", b"", {}, 404, "BLOB_UPLOAD_UNKNOWN"),
    (
        "v2 chunk to unknown upload",
        "PATCH",
        f"/v2/good/repo/blobs/uploads/{UNKNOWN_UUID}",
        b"x",
        {"Content-Range": "0-0"},
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    ("v2 close without digest", "PUT", f"/v2/good/repo/blobs/uploads/{UNKNOWN_UUID}", b"", {}, 400, "DIGEST_INVALID"),
    (
        "v2 monolithic wrong digest",
        "POST",
        f"/v2/good/repo/blobs/uploads/?digest={MISSING}",
        b"not zeros",
        {},
        400,
        "DIGEST_INVALID",
    ),
    ("v2 monolithic without digest", "POST", "/v2/good/repo/blobs/uploads/", b"data", {}, 400, "DIGEST_INVALID"),
    ("v2 mount bad digest", "POST", "/v2/good/repo/blobs/uploads/?mount=nope", b"", {}, 400, "DIGEST_INVALID"),
    # /v2: manifests
    ("v2 not json", "PUT", "/v2/good/repo/manifests/t", b"{not json", OCI, 400, "MANIFEST_INVALID"),
    (
        "v2 duplicate key",
        "PUT",
        "/v2/good/repo/manifests/t",
        b'{"schemaVersion": 2, "schemaVersion": 2}',
        OCI,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "v2 schema 1",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(mediaType=mt.DOCKER_SCHEMA1),
        {},
        400,
        "MANIFEST_INVALID",
    ),
    ("v2 seed form", "PUT", "/v2/good/repo/manifests/t", manifest(), {}, 400, "MANIFEST_INVALID"),
    (
        "v2 content type mismatch",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(),
        {"Content-Type": mt.OCI_INDEX},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "v2 missing blob",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(layers=[{"mediaType": mt.OCI_LAYER, "digest": MISSING, "size": 1}]),
        OCI,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    ),
    (
        "v2 missing index child",
        "PUT",
        "/v2/good/repo/manifests/t",
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_INDEX,
                "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": MISSING, "size": 1}],
            }
        ).encode(),
        {"Content-Type": mt.OCI_INDEX},
        400,
        "MANIFEST_BLOB_UNKNOWN",
    ),
    (
        "v2 over the descriptor cap",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(layers=[{"mediaType": mt.OCI_LAYER, "digest": CONFIG_DIGEST, "size": 1}] * (MAX_DESCRIPTORS + 1)),
        OCI,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "v2 bad subject",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(subject={"mediaType": mt.OCI_MANIFEST, "digest": "sha256:nope", "size": 1}),
        OCI,
        400,
        "MANIFEST_INVALID",
    ),
    ("v2 digest mismatch", "PUT", f"/v2/good/repo/manifests/{MISSING}", oci_manifest(), OCI, 400, "DIGEST_INVALID"),
    (
        "v2 bad tag parameter",
        "PUT",
        f"/v2/good/repo/manifests/{GOOD_OCI_DIGEST}?tag=-bad",
        oci_manifest(),
        OCI,
        400,
        "TAG_INVALID",
    ),
    (
        "v2 oversized manifest",
        "PUT",
        "/v2/good/repo/manifests/t",
        oci_manifest(pad="x" * (4 * 1024 * 1024)),
        OCI,
        413,
        "TOO_LARGE",
    ),
    ("v2 unknown manifest", "GET", "/v2/good/repo/manifests/nope", b"", {}, 404, "MANIFEST_UNKNOWN"),
    # /v2: referrers and listing
    ("v2 referrers bad digest", "GET", "/v2/good/repo/referrers/sha256:abc", b"", {}, 400, "DIGEST_INVALID"),
    ("v2 referrers bad last", "GET", f"/v2/good/repo/referrers/{MISSING}?last=x", b"", {}, 400, "DIGEST_INVALID"),
    ("v2 bad page size", "GET", "/v2/_catalog?n=ten", b"", {}, 400, "PAGINATION_NUMBER_INVALID"),
    ("v2 unknown repository tags", "GET", "/v2/never/pushed/tags/list", b"", {}, 404, "NAME_UNKNOWN"),
    ("v2 wrong method", "DELETE", "/v2/", b"", {}, 405, "UNSUPPORTED"),
    # Data plane
    ("unsigned data request", "GET", "/_data/get?key=blobs/sha256/" + "0" * 64, b"", {}, 403, "SIGNATURE_INVALID"),
    (
        "forged signature",
        "PUT",
        "/_data/put?key=../../x&sha256=00&X-Vmr-Expires=9999999999&X-Vmr-Signature=00",
        b"x",
        {},
        403,
        "SIGNATURE_INVALID",
    ),
    ("unknown data operation", "DELETE", "/_data/get?key=x", b"", {}, 403, "SIGNATURE_INVALID"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_client_mistakes_get_a_clear_4xx(
    hostile: RunningServer, method: str, path: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    reply = request(method, hostile.url + path, body or None, headers)
    assert reply.status == status, reply.body[:500]
    if method != "HEAD":
        errors = reply.json()["errors"]
        assert errors, "an error response carries at least one error"
        assert all(set(e) == {"code", "message", "detail"} and e["message"] for e in errors)
        if code:
            assert errors[0]["code"] == code


def test_nothing_was_written_outside_the_storage_root(hostile: RunningServer) -> None:
    # GIVEN the whole hostile table has run against this server (module-scoped fixture, tests run in order)
    workdir = hostile.storage.parent
    # THEN the server's working directory holds only the storage root and logs
    assert sorted(p.name for p in workdir.iterdir() if not p.name.startswith("server-")) == ["storage"]
    # AND the storage root holds only the setup's blob and its link, with no temporary files left
    files = sorted(str(p.relative_to(hostile.storage)) for p in hostile.storage.rglob("*") if p.is_file())
    assert files == [
        paths.blob_key(CONFIG_DIGEST),
        paths.layer_key(REPO, CONFIG_DIGEST),
    ]


def test_the_data_plane_is_authorized_by_its_signature_alone(hostile: RunningServer) -> None:
    # GIVEN a valid presigned URL from a redirect, and one whose signature was tampered with
    redirect = request("GET", f"{hostile.url}/v1/{REPO}/blobs/{CONFIG_DIGEST}")
    location = redirect.header("Location")
    assert location is not None
    tampered = location.replace("X-Vmr-Signature=", "X-Vmr-Signature=0")
    # WHEN both are fetched with a bearer token attached, as OCI clients do when they follow a
    # redirect to the host and port they sent it to
    followed = request("GET", location, headers={"Authorization": "Bearer registry-token"})
    forged = request("GET", tampered, headers={"Authorization": "Bearer registry-token"})
    # THEN the token neither helps nor hurts: the signature decides
    assert followed.status == 200
    assert followed.body == CONFIG
    assert forged.status == 403
    assert forged.json()["errors"][0]["code"] == "SIGNATURE_INVALID"


def test_manifest_of_another_repository_is_not_visible(hostile: RunningServer) -> None:
    body = make_manifest((CONFIG_DIGEST, len(CONFIG)), [])
    assert put_manifest(hostile.url, REPO, "scoped", body).status == 201
    assert request("GET", f"{hostile.url}/v1/other/repo/manifests/scoped").status == 404
    assert request("DELETE", f"{hostile.url}/v1/{REPO}/manifests/{digest_of(body)}").status == 202
    assert not (hostile.storage / paths.manifests_prefix(REPO)).exists()
    assert not (hostile.storage / paths.CATALOG_PREFIX).exists()
