"""Zero parts on S3: server-side copies of all-zero objects kept in the bucket, so no zero crosses the network.

A zero part (:meth:`Storage.multipart_zero_part <vmregistry.storage.base.Storage.multipart_zero_part>`)
is one ``UploadPartCopy`` of the first ``size`` bytes of a fill object,
``fill/zeros-<n>`` (:func:`vmregistry.paths.fill_key`), ``n`` the power of two
at or above ``size``, from 8 MiB to :data:`~vmregistry.storage.base.MAX_ZERO_PART_SIZE`.
Only the smallest is ever uploaded (8 MiB, once per bucket); each larger one is
the one below doubled, by a multipart upload of two part copies, so building
the largest (1 GiB) moves API calls, not bytes. They are built on first need
by whichever request needs them: two requests that race write the same bytes,
and an S3 write is atomic. Each process remembers the fill objects it has seen;
one that vanished (a bucket emptied by hand) is built again on the next miss.

Fill objects are never garbage: nothing lists or collects ``fill/``. S3 does
store each zero part's bytes in the object (an S3 object has no holes): what
is saved is the network and the client's time, not the bucket's storage.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import TYPE_CHECKING

from vmregistry import paths
from vmregistry.storage.base import MAX_ZERO_PART_SIZE, ObjectNotFound, UploadedPart
from vmregistry.storage.s3_client import s3_errors
from vmregistry.storage.s3_copy import assemble, copy_part

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["FILL_BASE", "fill_size", "zero_part"]

FILL_BASE = 8 * 1024 * 1024
"""The one fill object that is uploaded; every other is built from it in the bucket."""

_seen: set[tuple[str, int]] = set()
_lock = threading.Lock()


def fill_size(size: int) -> int:
    """The fill object a zero part of ``size`` bytes is copied from: a power of two, at least :data:`FILL_BASE`."""
    if not 1 <= size <= MAX_ZERO_PART_SIZE:
        raise ValueError(f"a zero part has 1 to {MAX_ZERO_PART_SIZE} bytes")
    n = FILL_BASE
    while n < size:
        n *= 2
    return n


def _exists(client: S3Client, bucket: str, key: str, size: int) -> bool:
    try:
        with s3_errors("HeadObject", bucket, key):
            return client.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
    except ObjectNotFound:
        return False


def _build(client: S3Client, bucket: str, size: int) -> str:
    """``fill/zeros-<size>``, made if missing (its half first)."""
    key = paths.fill_key(size)
    if (bucket, size) in _seen or _exists(client, bucket, key, size):
        _seen.add((bucket, size))
        return key
    if size == FILL_BASE:
        zeros = bytes(size)
        checksum = base64.b64encode(hashlib.sha256(zeros).digest()).decode("ascii")
        with s3_errors("PutObject", bucket, key):
            client.put_object(Bucket=bucket, Key=key, Body=zeros, ChecksumSHA256=checksum)
    else:
        half = _build(client, bucket, size // 2)
        assemble(client, bucket, key, [(half, None), (half, None)])
    _seen.add((bucket, size))
    return key


def zero_part(client: S3Client, bucket: str, key: str, upload_id: str, number: int, size: int) -> UploadedPart:
    """Part ``number`` of the upload becomes ``size`` zero bytes, copied inside S3."""
    fill = fill_size(size)
    for attempt in range(2):
        with _lock:  # one builder per process; the copies themselves run in parallel
            source = _build(client, bucket, fill)
        try:
            etag = copy_part(client, bucket, key, upload_id, number, source, (0, size - 1))
        except ObjectNotFound:
            # The upload is gone (say so), or the fill object is (forget it, build it again once).
            if attempt or _exists(client, bucket, source, fill):
                raise
            _seen.discard((bucket, fill))
            continue
        return UploadedPart(number, size, etag.strip('"'))
    raise AssertionError("unreachable: the second attempt returns or raises")
