"""The hostile table: broken requests, each with the status and error code a real server must answer.

One row per client mistake, by theme: names, digests, uploads, manifests,
listing and routing, JSON nested too deep, the same on ``/v2``, and the data
plane's signatures. Every request either needs no prior state or relies only on
:data:`CONFIG`, pushed to :data:`REPO` before the table runs
(``tests/test_e2e_bad_input.py``), so the storage root afterwards holds that
blob and its link and nothing else.
"""

from __future__ import annotations

import json

from vmregistry import mediatypes
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.manifests import MAX_DESCRIPTORS

from tests.registry_flows import digest_of, make_manifest

__all__ = ["CASES", "CONFIG", "CONFIG_DIGEST", "REPO"]

REPO = "good/repo"
CONFIG = b'{"cpus": 1}'
CONFIG_DIGEST = digest_of(CONFIG)
MISSING = "sha256:" + "0" * 64
UNKNOWN_UUID = "12345678-1234-4234-8234-123456789abc"


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
