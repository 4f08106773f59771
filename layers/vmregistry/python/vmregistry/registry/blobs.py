"""Blobs as a repository sees them: content addressed globally, visible per repository.

A blob's bytes live once under ``blobs/<algorithm>/<hex>``; a repository holds
a blob only through its link (``repositories/<name>/_layers/<algorithm>/<hex>``),
so a token that may pull one repository cannot read another repository's blobs
by guessing digests.
"""

from __future__ import annotations

from typing import NamedTuple

from vmregistry import paths
from vmregistry.config import Settings
from vmregistry.digests import Digest, digest_of, hasher, split
from vmregistry.errors import RegistryError
from vmregistry.registry.body import Body
from vmregistry.storage import ObjectNotFound, Storage

__all__ = ["STREAM_READ", "BlobInfo", "Blobs", "Download", "hash_object", "too_large"]

STREAM_READ = 1024 * 1024
"""How much of a stored object is read at a time as a stream: an S3 body read in larger pieces is
copied two or three times on its way up (http.client, urllib3), which a server's memory pays for."""


class BlobInfo(NamedTuple):
    digest: str
    size: int


class Download(NamedTuple):
    """Where the bytes come from: a presigned URL, or (no redirect possible) the bytes."""

    info: BlobInfo
    url: str | None = None
    data: bytes | None = None


class Blobs:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings

    def find(self, repository: str, digest: str) -> BlobInfo | None:
        try:
            size = int(self.storage.read(paths.layer_key(repository, digest)))
        except (ObjectNotFound, ValueError):
            return None
        return BlobInfo(digest, size)

    def stat(self, repository: str, digest: str) -> BlobInfo:
        info = self.find(repository, digest)
        if info is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest, "repository": repository})
        return info

    def link(self, repository: str, digest: str, size: int) -> BlobInfo:
        """Make a stored blob visible in ``repository`` (after its bytes were verified)."""
        self.storage.write(paths.layer_key(repository, digest), str(size).encode())
        return BlobInfo(digest, size)

    def download(self, repository: str, digest: str) -> Download:
        info = self.stat(repository, digest)
        key = paths.blob_key(digest)
        url = self.storage.presign_get(key, self.settings.presign_expires)
        if url is not None:
            return Download(info, url=url)
        if info.size > self.settings.inline_limit:
            raise RegistryError(
                "UNSUPPORTED",
                "this storage backend cannot redirect and the blob is too large to return inline",
                {"size": info.size, "inlineLimit": self.settings.inline_limit},
            )
        try:
            return Download(info, data=self.storage.read(key))
        except ObjectNotFound:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest}) from None

    def put(self, repository: str, digest: str, body: Body) -> BlobInfo:
        """Store a blob sent whole in one request, after checking that it hashes to ``digest``.

        The body's size is not limited here: in AWS it is what API Gateway let
        through, locally it was streamed into storage (staged) and costs a move.
        """
        parsed = split(digest)
        algorithm = parsed.algorithm if parsed else "sha256"
        if algorithm == "sha256":
            actual = f"sha256:{body.sha256}"
        elif body.data is not None:
            actual = digest_of(body.data, algorithm)
        else:
            actual = str(Digest(algorithm, hash_object(self.storage, body.key or "", algorithm)))
        if actual != digest:
            raise RegistryError("DIGEST_INVALID", detail={"expected": digest, "actual": actual})
        if body.data is not None:
            self.storage.write(paths.blob_key(digest), body.data)
        else:
            self.storage.move(body.key or "", paths.blob_key(digest))
        return self.link(repository, digest, body.size)

    def put_inline(self, repository: str, digest: str, data: bytes) -> BlobInfo:
        """:meth:`put` of bytes in memory."""
        return self.put(repository, digest, Body(data))

    def delete(self, repository: str, digest: str) -> None:
        """Unlink the blob from ``repository``; bytes other repositories link stay."""
        if not self.storage.delete(paths.layer_key(repository, digest)):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest, "repository": repository})


def hash_object(storage: Storage, key: str, algorithm: str) -> str:
    """The hex digest of a stored object, read back as a stream."""
    digest = hasher(algorithm)
    stream = storage.open(key)
    try:
        while chunk := stream.read(STREAM_READ):
            digest.update(chunk)
    finally:
        stream.close()
    return digest.hexdigest()


def too_large(size: int, limit: int) -> RegistryError:
    return RegistryError(
        "TOO_LARGE",
        f"request bodies are limited to {limit} bytes; send larger blobs with the upload flow"
        " (POST /v1/<name>/blobs/uploads/, then the presigned URLs it returns)",
        {"size": size, "limit": limit},
    )
