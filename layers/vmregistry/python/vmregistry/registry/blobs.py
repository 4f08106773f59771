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
from vmregistry.digests import digest_of, split
from vmregistry.errors import RegistryError
from vmregistry.storage import ObjectNotFound, Storage

__all__ = ["BlobInfo", "Blobs", "Download", "too_large"]


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

    def put_inline(self, repository: str, digest: str, data: bytes) -> BlobInfo:
        """Store a small blob sent in the request body, verifying its digest first."""
        if len(data) > self.settings.inline_limit:
            raise too_large(len(data), self.settings.inline_limit)
        parsed = split(digest)
        actual = digest_of(data, parsed.algorithm if parsed else "sha256")
        if actual != digest:
            raise RegistryError("DIGEST_INVALID", detail={"expected": digest, "actual": actual})
        self.storage.write(paths.blob_key(digest), data)
        return self.link(repository, digest, len(data))

    def delete(self, repository: str, digest: str) -> None:
        """Unlink the blob from ``repository``; bytes other repositories link stay."""
        if not self.storage.delete(paths.layer_key(repository, digest)):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest, "repository": repository})


def too_large(size: int, limit: int) -> RegistryError:
    return RegistryError(
        "TOO_LARGE",
        f"request bodies are limited to {limit} bytes; send larger blobs with the upload flow"
        " (POST /v1/<name>/blobs/uploads/, then the presigned URLs it returns)",
        {"size": size, "limit": limit},
    )
