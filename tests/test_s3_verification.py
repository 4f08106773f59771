"""Completing a multipart upload on S3: the whole-object SHA-256 check, and what a client sees meanwhile.

S3 has no SHA-256 of a multipart object, so completion streams it through
hashlib, which for a big VM image can outlast one API request. While that
runs, the session says ``"state": "verifying"`` (GET on it answers, instead of
failing on the already-joined multipart upload) and a second completion is
refused; the blob becomes visible only once the hash matched.

To observe the "meanwhile" without timing, the backend here is the real S3
backend on LocalStack whose :meth:`open` waits for the test's signal before
the hashing starts.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from vmregistry import paths
from vmregistry.config import Settings
from vmregistry.errors import RegistryError
from vmregistry.registry import Registry
from vmregistry.registry.blobs import BlobInfo
from vmregistry.registry.uploads import UploadStatus
from vmregistry.storage import MIN_PART_SIZE
from vmregistry.storage.s3 import S3Storage
from vmregistry.storage.s3_client import make_client

from tests.localstack import ACCESS_KEY, REGION, SECRET_KEY, LocalStack, new_bucket_name

WAIT = 60.0


class GatedS3(S3Storage):
    """The S3 backend, holding every :meth:`open` until :attr:`release` is set."""

    def __init__(self, localstack: LocalStack) -> None:
        client = make_client(region=REGION, endpoint=localstack.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        super().__init__(client, new_bucket_name("verify"), create_bucket=True, region=REGION)
        self.opened = threading.Event()
        self.release = threading.Event()

    def open(self, key: str):  # type: ignore[no-untyped-def]
        self.opened.set()
        assert self.release.wait(WAIT), "the test never released the hash"
        return super().open(key)


@pytest.fixture
def gated(localstack: LocalStack) -> Iterator[tuple[Registry, GatedS3]]:
    storage = GatedS3(localstack)
    yield Registry(storage, Settings(storage="s3", s3_bucket=storage.bucket)), storage
    storage.release.set()
    storage.delete_prefix("")


def start_two_part_upload(registry: Registry, repository: str, data: bytes) -> str:
    """A multipart session whose two parts are in S3, as a client's presigned part PUTs leave them."""
    started = registry.uploads.start(repository, mode="multipart")
    assert isinstance(started, UploadStatus)
    session = started.session
    assert session.multipart_id is not None
    key = paths.upload_data_key(session.uuid)
    registry.storage.multipart_put_part(key, session.multipart_id, 1, data[:MIN_PART_SIZE])
    registry.storage.multipart_put_part(key, session.multipart_id, 2, data[MIN_PART_SIZE:])
    return session.uuid


@pytest.mark.parametrize("honest", [True, False], ids=["right-digest", "wrong-digest"])
def test_a_session_reports_verifying_until_the_blob_is_published(gated: tuple[Registry, GatedS3], honest: bool) -> None:
    registry, storage = gated
    # GIVEN a two-part upload, completed with its digest (or with another one)
    data = os.urandom(MIN_PART_SIZE + 1000)
    digest = "sha256:" + hashlib.sha256(data if honest else b"other").hexdigest()
    upload_id = start_two_part_upload(registry, "vm/big", data)
    with ThreadPoolExecutor(1) as pool:
        completing: Future[BlobInfo | UploadStatus] = pool.submit(
            registry.uploads.complete, "vm/big", upload_id, digest
        )
        # WHEN the parts are joined and the hash is under way
        assert storage.opened.wait(WAIT)
        # THEN the session says so, the blob is not visible, and a second completion is refused
        status = registry.uploads.status("vm/big", upload_id)
        assert status.session.state == "verifying"
        assert registry.blobs.find("vm/big", digest) is None
        with pytest.raises(RegistryError) as second:
            registry.uploads.complete("vm/big", upload_id, digest)
        assert second.value.code == "BLOB_UPLOAD_INVALID"
        # WHEN the hash finishes
        storage.release.set()
        if honest:
            # THEN the blob is published under its digest and the session is gone
            assert completing.result(WAIT) == BlobInfo(digest, len(data))
            assert registry.blobs.find("vm/big", digest) == BlobInfo(digest, len(data))
        else:
            # THEN the upload is discarded and nothing appears under any digest
            with pytest.raises(RegistryError) as refused:
                completing.result(WAIT)
            assert refused.value.code == "DIGEST_INVALID"
            assert list(storage.list("blobs/")) == []
    with pytest.raises(RegistryError) as gone:
        registry.uploads.status("vm/big", upload_id)
    assert gone.value.code == "BLOB_UPLOAD_UNKNOWN"
