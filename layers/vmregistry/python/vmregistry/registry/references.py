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

* **a listing instead of reads, where storage allows**: from :data:`LISTING_MIN`
  distinct blobs on, when the backend's listing proves what an object holds
  (S3: a link written by one PUT has the MD5 of its body, the blob's size, as
  its ETag), the links are checked with sorted listings of the repository's
  ``_layers/`` (:data:`LISTED` keys a request, starting again at the next wanted
  link after each batch), so 4,096 links of one image cost about five requests
  instead of 4,096. A link whose ETag does not prove the declared size (a KMS
  bucket, another size) is read as above: the listing only ever saves work.

The count itself is capped by :data:`~vmregistry.oci.manifests.MAX_DESCRIPTORS`
before any lookup runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from vmregistry import paths
from vmregistry.digests import split
from vmregistry.errors import RegistryError
from vmregistry.oci.descriptors import Descriptor, invalid
from vmregistry.oci.manifests import ParsedManifest
from vmregistry.registry.blobs import BlobInfo, Blobs
from vmregistry.storage import Storage

__all__ = ["LISTED", "LISTING_MIN", "LOOKUPS", "check_references", "concurrently"]

LOOKUPS = 16
"""Storage lookups in flight at once for one request (see the module docstring)."""
LISTING_MIN = 64
"""Distinct blobs from which links are checked by listing, where storage lists content MD5s."""
LISTED = 1000
"""Keys one listing request returns (S3's most)."""

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


def _link_etag(size: int) -> str:
    """The MD5 of a link's body (its blob's size in decimal): its ETag in a listing (S3, one PUT)."""
    return hashlib.md5(str(size).encode(), usedforsecurity=False).hexdigest()


def _links_by_listing(storage: Storage, repository: str, wanted: Sequence[Descriptor]) -> dict[str, bool]:
    """Digest -> whether the listing proved the link holds the declared size; absent: no link."""
    by_algorithm: dict[str, list[tuple[str, Descriptor]]] = {}
    for descriptor in wanted:
        parsed = split(descriptor.digest)
        if parsed is not None:
            by_algorithm.setdefault(parsed.algorithm, []).append((parsed.hex, descriptor))
    seen: dict[str, bool] = {}
    for algorithm, items in by_algorithm.items():
        items.sort(key=lambda item: item[0])
        prefix = f"{paths.layers_prefix(repository)}{algorithm}/"
        index = 0
        while index < len(items):
            # Start just before the next wanted link (a key's own prefix sorts before it). After a full
            # batch, start again there: the next wanted link may be far, and a jump costs one request.
            listing = storage.scan(prefix, start_after=prefix + items[index][0][:-1], page_size=LISTED)
            ended = True
            for read, info in enumerate(listing, start=1):
                found = info.key[len(prefix) :]
                while index < len(items) and items[index][0] < found:
                    index += 1  # not in the listing: no link
                if index < len(items) and items[index][0] == found:
                    descriptor = items[index][1]
                    seen[descriptor.digest] = info.etag == _link_etag(descriptor.size)
                    index += 1
                if index >= len(items) or read >= LISTED:
                    ended = False
                    break
            if ended:
                break  # the listing ran out: no link for anything still wanted
    return seen


def check_references(storage: Storage, blobs: Blobs, repository: str, parsed: ParsedManifest) -> None:
    """Raise unless the repository holds every blob (with its declared size) and child manifest ``parsed`` names.

    MANIFEST_BLOB_UNKNOWN lists what is missing (the first 100, and how many);
    a blob stored with another size than its descriptor says is MANIFEST_INVALID.
    """
    to_read: list[Descriptor] = list(parsed.blobs)
    missing: list[str] = []
    if len(parsed.blobs) >= LISTING_MIN and storage.listing_proves_content:
        proven = _links_by_listing(storage, repository, parsed.blobs)
        missing = [d.digest for d in parsed.blobs if d.digest not in proven]
        to_read = [d for d in parsed.blobs if proven.get(d.digest) is False]
    wanted = [(False, blob) for blob in to_read] + [(True, child) for child in parsed.children]

    def look_up(item: tuple[bool, Descriptor]) -> BlobInfo | bool | None:
        is_manifest, descriptor = item
        if is_manifest:
            return storage.stat(paths.manifest_key(repository, descriptor.digest)) is not None
        return blobs.find(repository, descriptor.digest)

    found = concurrently(look_up, wanted)
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
