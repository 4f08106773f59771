"""Bodies the server itself sends to S3: a stream of any size, as one PUT or a multipart upload.

Local mode with ``-storage s3`` receives a blob PUT or an upload chunk of any
size (:meth:`S3Storage.receive <vmregistry.storage.s3.S3Storage.receive>`).
It cannot hand the stream to one PutObject: S3 wants the length first, takes
at most 5 GiB per PUT, and botocore reads a body twice (to sign its SHA-256 over
plain HTTP, then to send it). So the body is cut into parts held in memory one
at a time: a body that fits in the first part is one PutObject whose
``x-amz-checksum-sha256`` S3 verifies; a longer one becomes a multipart upload,
one part uploading while the next is read, hashed as it is read, and completed
only if the whole hashes as required (otherwise aborted: nothing appears).

Part sizes grow with the part number (:func:`part_size`): 8 MiB for the first
1,000 parts, doubling every 1,000, so 10,000 parts reach past S3's 5 TiB
object limit while a body of a few GB never holds more than two 8 MiB parts.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from vmregistry.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    ChecksumMismatch,
    MultipartUpload,
    ObjectInfo,
    ObjectNotFound,
    Readable,
)
from vmregistry.storage.s3_client import abort_upload, blob, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["FIRST_PART_SIZE", "list_uploads", "part_size", "stream_put"]

FIRST_PART_SIZE = 8 * 1024 * 1024
PARTS_PER_SIZE = 1000


def part_size(number: int) -> int:
    """The size of part ``number`` (1-based) of a streamed body."""
    return min(FIRST_PART_SIZE << ((number - 1) // PARTS_PER_SIZE), MAX_PART_SIZE)


def _read(source: Readable, size: int) -> bytearray:
    """Up to ``size`` bytes: fewer only where the stream ends (a bytearray: a copy to bytes would double the part)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = source.readinto(view[got:])
        if not n:
            break
        got += n
    view.release()
    del buffer[got:]
    return buffer


class _Reader:
    """The body cut into parts, hashed as it is read; EOFError if it ends before ``length``."""

    def __init__(self, source: Readable, length: int | None) -> None:
        self.source = source
        self.length = length
        self.digest = hashlib.sha256()
        self.total = 0

    def part(self, number: int) -> bytearray:
        want = part_size(number)
        if self.length is not None:
            want = min(want, self.length - self.total)
        data = _read(self.source, want) if want > 0 else bytearray()
        if self.length is not None and len(data) < want:
            raise EOFError(f"the body ended {self.length - self.total - len(data)} bytes early")
        self.digest.update(data)
        self.total += len(data)
        return data

    def check(self, sha256: str | None) -> str:
        actual = self.digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise ChecksumMismatch(f"expected sha256:{sha256}, received sha256:{actual}")
        return actual


def stream_put(
    client: S3Client, bucket: str, key: str, source: Readable, length: int | None, sha256: str | None
) -> ObjectInfo:
    reader = _Reader(source, length)
    first = reader.part(1)
    if len(first) < part_size(1) or reader.total == length:
        actual = reader.check(sha256)
        checksum = base64.b64encode(bytes.fromhex(actual)).decode("ascii")
        with s3_errors("PutObject", bucket, key):
            response = client.put_object(Bucket=bucket, Key=key, Body=blob(first), ChecksumSHA256=checksum)
        return ObjectInfo(key, len(first), time.time(), response.get("ETag", "").strip('"'), actual)
    with s3_errors("CreateMultipartUpload", bucket, key):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def upload(number: int, data: bytearray) -> CompletedPartTypeDef:
        with s3_errors("UploadPart", bucket, key):
            response = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=blob(data)
            )
        return {"PartNumber": number, "ETag": response.get("ETag", "")}

    try:
        parts: list[CompletedPartTypeDef] = []
        with ThreadPoolExecutor(1, thread_name_prefix="s3-stream") as pool:
            # One part uploads while the next is read: two parts in memory at most.
            pending: Future[CompletedPartTypeDef] = pool.submit(upload, 1, first)
            del first
            number = 1
            while reader.total != length:
                number += 1
                if number > MAX_PARTS:
                    raise ValueError("the body is larger than one S3 object can be")
                data = reader.part(number)
                if not data:
                    break
                parts.append(pending.result())
                pending = pool.submit(upload, number, data)
                del data
            parts.append(pending.result())
        actual = reader.check(sha256)
        with s3_errors("CompleteMultipartUpload", bucket, key):
            completed = client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        abort_upload(client, bucket, key, upload_id)
        raise
    return ObjectInfo(key, reader.total, time.time(), completed.get("ETag", "").strip('"'), actual)


def list_uploads(client: S3Client, bucket: str, prefix: str) -> Iterator[MultipartUpload]:
    """Multipart uploads in progress under ``prefix``, each dated by its last part (or its start)."""
    with s3_errors("ListMultipartUploads", bucket, prefix):
        uploads = [
            (u["Key"], u["UploadId"], u["Initiated"].timestamp())
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
            for u in page.get("Uploads", [])
        ]
    for key, upload_id, modified in uploads:
        try:
            with s3_errors("ListParts", bucket, key):
                for page in client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
                    modified = max([modified, *(p["LastModified"].timestamp() for p in page.get("Parts", []))])
        except ObjectNotFound:
            continue  # completed or aborted meanwhile
        yield MultipartUpload(key, upload_id, modified)
