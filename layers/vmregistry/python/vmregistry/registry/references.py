"""What a manifest PUT must find in the repository first: its blobs and, for an index, its manifests.

A manifest is stored only if everything it references is already in the
repository, so a pull never meets a dangling reference. The cost of that check
grows with what the client lists (issue 19), so it is bounded three ways:

* **distinct**: :func:`~vmregistry.oci.manifests.parse_manifest` already
  reduced the document to its distinct blobs and child manifests, so a layer
  listed 4,096 times costs one lookup;
* **one round trip each**: a blob's lookup reads its repository link, whose
  body is the blob's size, so the existence check and the size check are one
  read (:meth:`Blobs.find <vmregistry.registry.blobs.Blobs.find>`); a child
  manifest is one ``stat``;
* **concurrently, within a bound**: lookups run :data:`LOOKUPS` at a time.
  Storage answers each in milliseconds (S3 from Lambda 5-20 ms, LocalStack here
  ~5 ms), so the cap's 4,096 distinct blobs cost about 4,096 / 16 x 5-20 ms =
  1.3-5 s instead of 20-80 s one after the other, within API Gateway's 29 s.
  16 is also the S3 client's connection pool (``storage/s3_client.py``): more
  threads would only queue for connections.

The count itself is capped by :data:`~vmregistry.oci.manifests.MAX_DESCRIPTORS`
before any lookup runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from vmregistry import paths
from vmregistry.errors import RegistryError
from vmregistry.oci.descriptors import Descriptor, invalid
from vmregistry.oci.manifests import ParsedManifest
from vmregistry.registry.blobs import BlobInfo, Blobs
from vmregistry.storage import Storage

__all__ = ["LOOKUPS", "check_references", "concurrently"]

LOOKUPS = 16
"""Storage lookups in flight at once for one request (see the module docstring)."""

_T = TypeVar("_T")
_R = TypeVar("_R")


def concurrently(function: Callable[[_T], _R], items: Sequence[_T], limit: int = LOOKUPS) -> list[_R]:
    """``[function(item) for item in items]``, at most ``limit`` at a time; the first exception propagates."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(limit, len(items)), thread_name_prefix="lookup") as pool:
        return list(pool.map(function, items))


def _missing(digests: Iterable[str]) -> RegistryError:
    found = sorted(digests)
    return RegistryError(
        "MANIFEST_BLOB_UNKNOWN",
        "push every blob (and, for an index, every manifest) before the manifest that references it",
        {"digests": found[:100], "count": len(found)},
    )


def check_references(storage: Storage, blobs: Blobs, repository: str, parsed: ParsedManifest) -> None:
    """Raise unless the repository holds every blob (with its declared size) and child manifest ``parsed`` names.

    MANIFEST_BLOB_UNKNOWN lists what is missing (the first 100, and how many);
    a blob stored with another size than its descriptor says is MANIFEST_INVALID.
    """
    wanted = [(False, blob) for blob in parsed.blobs] + [(True, child) for child in parsed.children]

    def look_up(item: tuple[bool, Descriptor]) -> BlobInfo | bool | None:
        is_manifest, descriptor = item
        if is_manifest:
            return storage.stat(paths.manifest_key(repository, descriptor.digest)) is not None
        return blobs.find(repository, descriptor.digest)

    found = concurrently(look_up, wanted)
    missing: list[str] = []
    for (_, descriptor), result in zip(wanted, found, strict=True):
        if result is None or result is False:
            missing.append(descriptor.digest)
        elif isinstance(result, BlobInfo) and result.size != descriptor.size:
            raise invalid(
                "a descriptor's size differs from the stored blob",
                digest=descriptor.digest,
                declared=descriptor.size,
                stored=result.size,
            )
    if missing:
        raise _missing(missing)
