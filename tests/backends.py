"""Storage backends for the conformance suite: one constructor fixture per backend.

Each backend comes with what its presigned URLs need to be fetched for real
(the filesystem backend's data plane runs in a local server on a loopback
port). Adding a backend is one more entry in :data:`BACKENDS` and a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from vmregistry.config import Settings
from vmregistry.local.app import LocalServer
from vmregistry.storage import Storage

__all__ = ["BACKENDS", "backend"]


@contextmanager
def filesystem_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Storage]:
    server = LocalServer(Settings(fs_path=str(tmp_path / "root")), port=0)
    server.start()
    try:
        yield server.storage
        # Atomic writes leave no temporary file behind, even when they fail.
        hidden = list((tmp_path / "root" / ".tmp").iterdir())
        hidden += list((tmp_path / "root" / ".multipart").iterdir())
        hidden += list((tmp_path / "root" / ".markers").iterdir())
        assert hidden == [], f"temporary files left behind: {hidden}"
    finally:
        server.shutdown()


@contextmanager
def s3_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Storage]:
    """A fresh bucket on the session's LocalStack (signature validation on); presigned URLs go to it."""
    from vmregistry.storage.s3 import S3Storage
    from vmregistry.storage.s3_client import make_client

    from tests.localstack import ACCESS_KEY, REGION, SECRET_KEY, LocalStack, new_bucket_name

    localstack: LocalStack = request.getfixturevalue("localstack")
    client = make_client(region=REGION, endpoint=localstack.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    storage = S3Storage(client, new_bucket_name("conf"), create_bucket=True, region=REGION)
    yield storage
    # Multipart uploads are invisible to list(): a test must not leave one open either.
    open_uploads = client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
    assert open_uploads == [], f"multipart uploads left open: {[u.get('Key') for u in open_uploads]}"


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], AbstractContextManager[Storage]]] = {
    "filesystem": filesystem_backend,
    "s3": s3_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, empty backend; the test fails if it leaves any object behind."""
    with BACKENDS[request.param](tmp_path, request) as storage:
        yield storage
        leftovers = list(storage.list(""))
        assert leftovers == [], f"the test left objects behind: {leftovers[:10]}"
