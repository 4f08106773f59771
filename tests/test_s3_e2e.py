"""End to end on S3: ``vmregistry serve -storage s3`` against LocalStack, bytes through presigned URLs.

The registry process never sees a blob's bytes here: the client sends them to
LocalStack through the URLs the registry signed, and LocalStack (signature
validation on) is what refuses a tampered or expired URL or a body whose
SHA-256 differs from the one signed in. What the bucket holds is inspected
directly, so "never visible" means never under ``blobs/`` at all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from vmregistry import paths
from vmregistry.auth.tokens import generate_key_pair, mint_token
from vmregistry.storage import MIN_PART_SIZE
from vmregistry.storage.s3 import S3Storage
from vmregistry.storage.s3_client import make_client

from loopback.processes import free_port
from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.localstack import ACCESS_KEY, REGION, SECRET_KEY, LocalStack, new_bucket_name, s3_env
from tests.registry_flows import (
    digest_of,
    make_manifest,
    pull_blob,
    push_inline,
    push_single,
    put_manifest,
    send_parts,
    start_multipart,
)


@dataclass
class S3Registry:
    server: RunningServer
    bucket: S3Storage
    """The same bucket, read directly: what is really stored."""
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def blob_keys(self) -> list[str]:
        return list(self.bucket.list(paths.BLOBS_PREFIX))

    def open_multipart_uploads(self) -> list[str]:
        uploads = self.bucket.client.list_multipart_uploads(Bucket=self.bucket.bucket).get("Uploads", [])
        return [u.get("Key", "") for u in uploads]


def inspector(localstack: LocalStack, bucket: str) -> S3Storage:
    client = make_client(region=REGION, endpoint=localstack.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return S3Storage(client, bucket)


def launch(tmp: Path, localstack: LocalStack, *args: str, env: dict[str, str] | None = None) -> S3Registry:
    bucket = new_bucket_name("e2e")
    environ = {**s3_env(localstack.endpoint, bucket), **(env or {})}
    server = start_server(tmp, *args, env=environ)
    return S3Registry(server, inspector(localstack, bucket), environ)


@pytest.fixture(scope="module")
def registry(localstack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Registry]:
    """A registry on S3 with a bucket of its own, shared by this module's tests."""
    running = launch(tmp_path_factory.mktemp("s3-e2e"), localstack)
    yield running
    stop_server(running.server)


def interrupted_put(url: str, body: bytes, sent: int) -> None:
    """A client that dies mid-body: announces ``len(body)`` bytes, sends ``sent`` of them, hangs up."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30) as sock:
        head = f"PUT {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body[:sent])


# -- pushing and pulling ------------------------------------------------------------------


def test_single_presigned_put_then_pull_with_range(registry: S3Registry) -> None:
    # GIVEN a 7 MiB blob pushed through one presigned PUT straight to S3
    data = os.urandom(7 * 1024 * 1024 + 11)
    digest = push_single(registry.url, "vm/alpine", data)
    # THEN S3 holds it under its digest, and nothing is left in the staging area
    assert registry.blob_keys() == [paths.blob_key(digest)]
    assert [k for k in registry.bucket.list(paths.UPLOADS_PREFIX) if digest[7:] in k] == []
    # AND HEAD answers from metadata, without a redirect
    head = request("HEAD", f"{registry.url}/v1/vm/alpine/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(data))
    # WHEN it is pulled by following the 307 to S3 THEN the bytes match, whole and by range
    whole = pull_blob(registry.url, "vm/alpine", digest)
    assert whole.status == 200
    assert whole.body == data
    ranged = pull_blob(registry.url, "vm/alpine", digest, "bytes=5242870-5242899")
    assert ranged.status == 206
    assert ranged.body == data[5242870:5242900]
    location = request("GET", f"{registry.url}/v1/vm/alpine/blobs/{digest}").header("Location") or ""
    assert location.startswith(registry.env["VMREGISTRY_S3_ENDPOINT"])


def test_multipart_with_a_part_resumed_after_an_interrupted_client(registry: S3Registry) -> None:
    # GIVEN a 12 MiB blob to send as three parts through presigned part URLs
    data = os.urandom(2 * MIN_PART_SIZE + 2 * 1024 * 1024)
    chunks = [data[:MIN_PART_SIZE], data[MIN_PART_SIZE : 2 * MIN_PART_SIZE], data[2 * MIN_PART_SIZE :]]
    digest = digest_of(data)
    session = start_multipart(registry.url, "vm/fedora")
    urls = request("PATCH", f"{registry.url}{session['location']}?part=1-3")
    assert urls.status == 202, urls.body
    part_urls = urls.json()["parts"]
    assert request("PUT", part_urls[0]["url"], chunks[0]).status == 200
    # WHEN the client dies halfway through part 2
    interrupted_put(part_urls[1]["url"], chunks[1], len(chunks[1]) // 2)
    # THEN the session, read back from S3, holds part 1 whole; part 2 is absent or short (LocalStack,
    # unlike AWS, keeps a truncated part): either way the sizes tell a client what to send again
    status = request("GET", f"{registry.url}{session['location']}")
    assert status.status == 200, status.body
    stored = {p["number"]: p["size"] for p in status.json()["parts"]}
    assert stored[1] == len(chunks[0])
    assert stored.get(2, 0) < len(chunks[1])
    # WHEN a new client resumes: fresh URLs for every part not stored whole, then completes
    resend = [n for n, chunk in enumerate(chunks, 1) if stored.get(n) != len(chunk)]
    assert resend == [2, 3]
    again = request("PATCH", f"{registry.url}{session['location']}?part=2-3")
    assert again.status == 202, again.body
    for part, chunk in zip(again.json()["parts"], chunks[1:], strict=True):
        assert request(part["method"], part["url"], chunk, part["headers"]).status == 200
    done = request("PUT", f"{registry.url}{session['location']}?digest={digest}")
    assert done.status == 201, done.body
    # THEN the verified blob is published and pulls back byte for byte, no multipart upload left open
    assert pull_blob(registry.url, "vm/fedora", digest).body == data
    assert (
        pull_blob(registry.url, "vm/fedora", digest, f"bytes={MIN_PART_SIZE - 5}-{MIN_PART_SIZE + 4}").body
        == (data[MIN_PART_SIZE - 5 : MIN_PART_SIZE + 5])
    )
    assert "uploads/" + session["uuid"] + "/data" not in registry.open_multipart_uploads()


# -- what S3 refuses -------------------------------------------------------------------------


def test_tampered_presigned_urls_are_refused(registry: S3Registry) -> None:
    # GIVEN a pushed blob and a fresh single-PUT session for another one
    data = os.urandom(1024)
    digest = push_single(registry.url, "vm/tamper", data)
    location = request("GET", f"{registry.url}/v1/vm/tamper/blobs/{digest}").header("Location") or ""
    other = os.urandom(1024)
    started = request("POST", f"{registry.url}/v1/vm/tamper/blobs/uploads/?digest={digest_of(other)}&size=1024")
    upload = started.json()["upload"]
    # WHEN the GET URL is pointed at another object, or its signature altered THEN S3 refuses it
    parts = urlsplit(location)
    other_char = "1" if parts.path.endswith("0") else "0"  # really another object
    assert request("GET", parts._replace(path=parts.path[:-1] + other_char).geturl()).status == 403
    assert request("GET", location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status == 403
    # WHEN the PUT URL is pointed at another blob's key THEN S3 refuses it and that blob is untouched
    put = urlsplit(upload["url"])
    assert put.path.endswith(paths.blob_key(digest_of(other)))
    forged = put._replace(path=put.path.replace(paths.blob_key(digest_of(other)), paths.blob_key(digest)))
    assert request("PUT", forged.geturl(), other, upload["headers"]).status == 403
    assert pull_blob(registry.url, "vm/tamper", digest).body == data
    # AND the signed checksum and marker headers cannot be dropped
    assert request("PUT", upload["url"], other).status == 403
    assert paths.blob_key(digest_of(other)) not in registry.blob_keys()
    assert request("DELETE", f"{registry.url}{started.json()['location']}").status == 204


def test_expired_presigned_urls_are_refused(localstack: LocalStack, tmp_path: Path) -> None:
    # GIVEN a registry whose presigned URLs live one second
    running = launch(tmp_path, localstack, "-presign-expires", "1")
    try:
        data = os.urandom(2048)
        digest = push_inline(running.url, "vm/short", data)
        location = request("GET", f"{running.url}/v1/vm/short/blobs/{digest}").header("Location") or ""
        started = request("POST", f"{running.url}/v1/vm/short/blobs/uploads/?digest={digest_of(b'x')}&size=1")
        upload = started.json()["upload"]
        # WHEN the URLs are used after they expired
        time.sleep(2.5)
        # THEN S3 refuses both
        assert request("GET", location).status == 403
        assert request("PUT", upload["url"], b"x", upload["headers"]).status == 403
        # AND a client asking the session again gets a fresh URL that works
        fresh = request("GET", f"{running.url}{started.json()['location']}").json()["upload"]
        assert request("PUT", fresh["url"], b"x", fresh["headers"]).status == 200
    finally:
        stop_server(running.server)


def test_a_body_with_the_wrong_digest_never_becomes_visible(registry: S3Registry) -> None:
    # GIVEN a single-PUT session declared for one content
    declared = os.urandom(4096)
    digest = digest_of(declared)
    started = request("POST", f"{registry.url}/v1/vm/evil/blobs/uploads/?digest={digest}&size=4096")
    upload = started.json()["upload"]
    # WHEN other bytes of the same size are sent to the URL THEN S3 itself refuses them
    refused = request("PUT", upload["url"], os.urandom(4096), upload["headers"])
    assert refused.status == 400
    assert b"BadDigest" in refused.body
    # AND completing finds nothing to publish
    done = request("PUT", f"{registry.url}{started.json()['location']}?digest={digest}")
    assert done.status == 400
    assert request("HEAD", f"{registry.url}/v1/vm/evil/blobs/{digest}").status == 404
    # GIVEN a multipart session fed other bytes than the digest it completes with
    session = start_multipart(registry.url, "vm/evil")
    send_parts(registry.url, session, [os.urandom(MIN_PART_SIZE), b"tail"])
    done = request("PUT", f"{registry.url}{session['location']}?digest={digest}")
    # THEN completion verifies the whole object, refuses it and discards the upload
    assert done.status == 400
    assert done.error_codes == ["DIGEST_INVALID"]
    assert request("HEAD", f"{registry.url}/v1/vm/evil/blobs/{digest}").status == 404
    assert paths.blob_key(digest) not in registry.blob_keys()
    assert list(registry.bucket.list(paths.upload_prefix(session["uuid"]))) == []


def test_a_manifest_referencing_a_missing_blob_is_refused(registry: S3Registry) -> None:
    # GIVEN a config blob that exists and a disk that was never pushed
    config = json.dumps({"cpus": 1}).encode()
    config_digest = push_inline(registry.url, "vm/partial", config)
    missing = digest_of(b"never pushed")
    manifest = make_manifest((config_digest, len(config)), [(missing, 12)])
    # WHEN the manifest is pushed THEN it is refused with the unknown digest named
    reply = put_manifest(registry.url, "vm/partial", "v1", manifest)
    assert reply.status == 400
    assert reply.error_codes == ["MANIFEST_BLOB_UNKNOWN"]
    assert missing in json.dumps(reply.json())
    # AND no tag appeared
    assert request("GET", f"{registry.url}/v1/vm/partial/manifests/v1").status == 404
    # WHEN the blob is pushed THEN the same manifest is accepted and read back from S3
    disk = b"x" * 12
    disk_digest = push_inline(registry.url, "vm/partial", disk)
    manifest = make_manifest((config_digest, len(config)), [(disk_digest, len(disk))])
    assert put_manifest(registry.url, "vm/partial", "v1", manifest).status == 201
    assert request("GET", f"{registry.url}/v1/vm/partial/manifests/v1").body == manifest


# -- authentication and the redirect ----------------------------------------------------------


def test_push_and_pull_with_a_bearer_token(localstack: LocalStack, tmp_path: Path) -> None:
    # GIVEN a registry that requires RS256 tokens, and a token that may push and pull vm/secure
    private_pem, public_pem = generate_key_pair()
    (tmp_path / "auth.pub").write_bytes(public_pem)
    running = launch(tmp_path, localstack, "-auth-public-key", str(tmp_path / "auth.pub"))
    try:
        token = mint_token(private_pem, subject="ci", scopes=["repository:vm/secure:pull,push"])
        bearer = {"Authorization": f"Bearer {token}"}
        data = os.urandom(MIN_PART_SIZE + 100)
        assert request("HEAD", f"{running.url}/v1/vm/secure/blobs/{digest_of(data)}").status == 401
        # WHEN it pushes through the presigned PUT, sending the token to the registry only
        digest = push_single(running.url, "vm/secure", data, headers=bearer)
        # THEN the pull's redirect, followed without the registry's Authorization header, serves the bytes
        redirect = request("GET", f"{running.url}/v1/vm/secure/blobs/{digest}", headers=bearer)
        assert redirect.status == 307
        location = redirect.header("Location") or ""
        assert "X-Amz-Signature=" in location
        followed = request("GET", location, headers={"Range": "bytes=0-9"})
        assert followed.status == 206
        assert followed.body == data[:10]
        # AND without the token the registry refuses to hand out the URL at all
        assert request("GET", f"{running.url}/v1/vm/secure/blobs/{digest}").status == 401
    finally:
        stop_server(running.server)


# -- trouble with S3 ----------------------------------------------------------------------------


def test_a_missing_bucket_is_a_clear_503_and_a_log_line(localstack: LocalStack, tmp_path: Path) -> None:
    # GIVEN a registry told not to create its bucket, which does not exist
    running = launch(tmp_path, localstack, "-s3-skip-bucket-creation")
    try:
        # WHEN a client pushes a blob
        reply = request("PUT", f"{running.url}/v1/vm/x/blobs/{digest_of(b'abc')}", b"abc")
        # THEN it gets a JSON error saying what is wrong, not a stack trace
        assert reply.status == 503
        assert reply.error_codes == ["UNAVAILABLE"]
        assert "does not exist" in reply.json()["errors"][0]["message"]
        assert "does not exist" in running.server.logs()
        assert "Traceback" not in running.server.logs()
    finally:
        stop_server(running.server)


def test_an_unreachable_endpoint_is_a_clear_503(tmp_path: Path) -> None:
    # GIVEN a registry whose S3 endpoint has nothing listening (LocalStack does not check
    # credentials on ordinary requests, so "access denied" cannot be provoked here)
    closed = f"http://127.0.0.1:{free_port()}"
    server = start_server(tmp_path, "-s3-skip-bucket-creation", env=s3_env(closed, new_bucket_name()))
    try:
        # WHEN a client asks for a blob, after botocore's retries with backoff
        reply = request("GET", f"{server.url}/v1/vm/x/blobs/{digest_of(b'abc')}")
        # THEN the answer says S3 cannot be reached, and the log says it once, without a traceback
        assert reply.status == 503
        assert reply.error_codes == ["UNAVAILABLE"]
        assert "cannot reach S3" in reply.json()["errors"][0]["message"]
        assert "cannot reach S3" in server.logs()
        assert "Traceback" not in server.logs()
    finally:
        stop_server(server)


# -- upkeep -------------------------------------------------------------------------------------


def test_sweep_uploads_aborts_abandoned_multipart_uploads(registry: S3Registry, tmp_path: Path) -> None:
    # GIVEN an abandoned multipart session with a part stored
    session = start_multipart(registry.url, "vm/abandoned")
    send_parts(registry.url, session, [b"some bytes"])
    key = paths.upload_data_key(session["uuid"])
    assert key in registry.open_multipart_uploads()
    # WHEN the sweep runs for sessions older than zero hours
    swept = subprocess.run(
        [VMREGISTRY, "sweep-uploads", "-older-than", "0"],
        env={k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")} | registry.env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert swept.returncode == 0, swept.stderr
    # THEN the multipart upload and the session are gone, and the session is unknown to the API
    assert key not in registry.open_multipart_uploads()
    assert list(registry.bucket.list(paths.upload_prefix(session["uuid"]))) == []
    assert request("GET", f"{registry.url}{session['location']}").status == 404


def test_the_shared_s3_server_fixture_serves_a_push_and_a_pull(s3_server: RunningServer) -> None:
    # GIVEN the S3-backed server other test modules (the client's) use
    data = os.urandom(MIN_PART_SIZE + 1)
    # WHEN a blob is pushed through the presigned PUT THEN it pulls back through the 307
    digest = push_single(s3_server.url, "shared/check", data)
    assert pull_blob(s3_server.url, "shared/check", digest).body == data
