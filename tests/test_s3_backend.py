"""What only the S3 backend has: its bucket, its settings, its copy strategy, its error table.

The storage contract itself is checked by ``test_storage_conformance.py``
(which runs against S3 too); these tests cover the S3-specific decisions,
against LocalStack's S3.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from vmregistry.config import Settings
from vmregistry.storage import StorageUnavailable, s3_copy
from vmregistry.storage.s3 import S3Storage
from vmregistry.storage.s3_client import make_client

from loopback.processes import free_port
from tests.httpclient import request
from tests.localstack import ACCESS_KEY, REGION, SECRET_KEY, LocalStack, new_bucket_name, s3_env


def storage_for(localstack: LocalStack, bucket: str, *, create: bool) -> S3Storage:
    client = make_client(region=REGION, endpoint=localstack.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return S3Storage(client, bucket, create_bucket=create, region=REGION)


def test_from_settings_creates_the_bucket_unless_told_not_to(s3_settings: dict[str, str]) -> None:
    # GIVEN settings naming a bucket that does not exist, with creation skipped
    skipped = Settings.from_env({**s3_settings, "VMREGISTRY_S3_SKIP_BUCKET_CREATION": "true"})
    storage = S3Storage.from_settings(skipped)
    # THEN the first use says clearly that the bucket is missing
    with pytest.raises(StorageUnavailable, match="does not exist"):
        list(storage.list("uploads/"))
    # WHEN the same settings allow creation THEN the bucket is created at start and works
    created = S3Storage.from_settings(Settings.from_env(s3_settings))
    created.write("k", b"v")
    assert created.read("k") == b"v"
    # AND starting again on the existing bucket is fine
    again = S3Storage.from_settings(Settings.from_env(s3_settings))
    assert again.delete("k") is True


def test_from_settings_requires_a_bucket() -> None:
    with pytest.raises(ValueError, match="s3-bucket"):
        S3Storage.from_settings(Settings(storage="s3"))


def test_endpoint_set_means_path_style_urls(s3_settings: dict[str, str]) -> None:
    # GIVEN a backend on an S3-compatible endpoint
    storage = S3Storage.from_settings(Settings.from_env(s3_settings))
    bucket = s3_settings["VMREGISTRY_S3_BUCKET"]
    # THEN presigned URLs address the bucket in the path, not in the host name
    url = storage.presign_get("blobs/sha256/" + "0" * 64, 60) or ""
    assert url.startswith(f"{s3_settings['VMREGISTRY_S3_ENDPOINT']}/{bucket}/blobs/sha256/")


def test_presigned_put_signs_the_sha256_and_stat_reports_it(localstack: LocalStack) -> None:
    # GIVEN a presigned PUT bound to a digest
    storage = storage_for(localstack, new_bucket_name("sha"), create=True)
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).hexdigest()
    presigned = storage.presign_put("staged", 60, sha256=digest, size=len(data))
    assert presigned is not None
    # THEN the checksum is a signed header the client must send
    assert "x-amz-checksum-sha256" in presigned.url.lower()
    assert set(presigned.headers) == {"x-amz-checksum-sha256"}
    # WHEN the right body is sent THEN S3 stores it and stat knows its SHA-256 without re-reading
    assert request("PUT", presigned.url, data, dict(presigned.headers)).status == 200
    info = storage.stat("staged")
    assert info is not None
    assert info.sha256 == digest
    # AND a move keeps the bytes
    storage.move("staged", "final")
    assert storage.read("final") == data
    storage.delete_prefix("")


def test_large_moves_use_a_parallel_multipart_copy(localstack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN thresholds scaled down so a 12 MiB object takes the >5 GiB path (three 5 MiB copy parts)
    monkeypatch.setattr(s3_copy, "COPY_SINGLE_LIMIT", 1024 * 1024)
    monkeypatch.setattr(s3_copy, "COPY_PART_SIZE", 5 * 1024 * 1024)
    storage = storage_for(localstack, new_bucket_name("copy"), create=True)
    data = os.urandom(12 * 1024 * 1024 + 7)
    storage.write("uploads/u/data", data)
    # WHEN it is moved
    storage.move("uploads/u/data", "blobs/sha256/x")
    # THEN the destination holds exactly the bytes, assembled from parts, and the source is gone
    info = storage.stat("blobs/sha256/x")
    assert info is not None
    assert info.size == len(data)
    assert (info.etag or "").endswith("-3")
    assert storage.read("blobs/sha256/x") == data
    assert storage.stat("uploads/u/data") is None
    assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []
    storage.delete_prefix("")


def test_unreachable_endpoint_is_storage_unavailable() -> None:
    # GIVEN an endpoint with nothing listening
    closed = f"http://127.0.0.1:{free_port()}"
    settings = Settings.from_env({**s3_env(closed, new_bucket_name()), "VMREGISTRY_S3_SKIP_BUCKET_CREATION": "1"})
    storage = S3Storage.from_settings(settings)
    # THEN every operation fails with the contract's exception, never botocore's
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        storage.stat("k")
    # AND creating the bucket at start fails the same way
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        storage.ensure_bucket()
