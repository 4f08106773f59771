"""Protocol flows a client performs, written once for the end-to-end tests of every backend.

These speak raw HTTP (:mod:`tests.httpclient`) so each test sees exactly what
the registry answered; the reference client has its own tests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vmregistry import mediatypes

from tests.httpclient import Reply, request

__all__ = ["digest_of", "make_manifest", "pull_blob", "push_inline", "push_multipart", "push_single", "put_manifest"]


RESENDS = 10
"""How often a single-PUT flow resends when racing uploads of the same blob keep replacing it."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_inline(url: str, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    reply = request("PUT", f"{url}/v1/{repo}/blobs/{digest}", data)
    assert reply.status == 201, reply.body
    return digest


def push_single(url: str, repo: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    """The single presigned PUT flow: declare, upload to the URL, complete."""
    digest = digest_of(data)
    started = request("POST", f"{url}/v1/{repo}/blobs/uploads/?digest={digest}&size={len(data)}", headers=headers)
    assert started.status == 202, started.body
    session = started.json()
    assert session["mode"] == "single"
    upload = session["upload"]
    # A concurrent upload of the same blob may replace ours between PUT and completion; the
    # registry then asks for the bytes again (it links only what this session sent).
    for _ in range(RESENDS):
        sent = request(upload["method"], upload["url"], data, upload["headers"])
        assert sent.status == 200, sent.body
        done = request("PUT", f"{url}{session['location']}?digest={digest}", headers=headers)
        if done.status != 400 or done.error_codes != ["BLOB_UPLOAD_INVALID"]:
            break
    assert done.status == 201, done.body
    assert done.header("Docker-Content-Digest") == digest
    return digest


def start_multipart(url: str, repo: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    started = request("POST", f"{url}/v1/{repo}/blobs/uploads/", headers=headers)
    assert started.status == 202, started.body
    session: dict[str, Any] = started.json()
    assert session["mode"] == "multipart"
    return session


def send_parts(url: str, session: dict[str, Any], chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
    """Upload ``chunks`` as parts 1..N through presigned part URLs."""
    urls = request("PATCH", f"{url}{session['location']}?part=1-{len(chunks)}", headers=headers)
    assert urls.status == 202, urls.body
    for part, chunk in zip(urls.json()["parts"], chunks, strict=True):
        sent = request(part["method"], part["url"], chunk, part["headers"])
        assert sent.status == 200, sent.body


def push_multipart(url: str, repo: str, data: bytes, part_size: int, headers: dict[str, str] | None = None) -> str:
    digest = digest_of(data)
    session = start_multipart(url, repo, headers)
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    send_parts(url, session, chunks, headers)
    done = request("PUT", f"{url}{session['location']}?digest={digest}", headers=headers)
    assert done.status == 201, done.body
    return digest


def pull_blob(url: str, repo: str, digest: str, range_header: str | None = None) -> Reply:
    """GET the blob, then follow the 307 without the registry's headers, as S3 requires."""
    redirect = request("GET", f"{url}/v1/{repo}/blobs/{digest}")
    assert redirect.status == 307, redirect.body
    location = redirect.header("Location")
    assert location is not None
    return request("GET", location, headers={"Range": range_header} if range_header else None)


def make_manifest(config: tuple[str, int], disks: list[tuple[str, int]], **extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.MANIFEST,
        "config": {"mediaType": mediatypes.CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": mediatypes.DISK, "digest": d, "size": s} for d, s in disks],
        **extra,
    }
    return json.dumps(document, indent=2).encode()


def put_manifest(url: str, repo: str, reference: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return request(
        "PUT",
        f"{url}/v1/{repo}/manifests/{reference}",
        body,
        {"Content-Type": mediatypes.MANIFEST, **(headers or {})},
    )
