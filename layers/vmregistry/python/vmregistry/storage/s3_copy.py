"""Server-side copies inside the bucket: how :meth:`S3Storage.move <vmregistry.storage.s3.S3Storage.move>` copies.

CopyObject stops at 5 GiB and copies at one stream's pace, so an object above
:data:`COPY_SINGLE_LIMIT` is copied as a multipart upload whose UploadPartCopy
parts run in parallel: a VM disk of many GB moves within one API request. The
destination appears only when the upload completes; a failed copy is aborted,
so it never holds a partial object.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vmregistry.storage.base import MAX_PARTS, ObjectNotFound
from vmregistry.storage.s3_client import s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["COPY_PART_SIZE", "COPY_SINGLE_LIMIT", "copy_object"]

COPY_SINGLE_LIMIT = 512 * 1024 * 1024
"""Objects up to this size are copied with one CopyObject; larger ones with parallel UploadPartCopy."""
COPY_PART_SIZE = 256 * 1024 * 1024
COPY_THREADS = 8


def copy_object(client: S3Client, bucket: str, source: str, destination: str, size: int) -> None:
    """Copy ``source`` (``size`` bytes) to ``destination``, atomically."""
    if size <= COPY_SINGLE_LIMIT:
        with s3_errors("CopyObject", bucket, destination):
            client.copy_object(Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": source})
        return
    part_size = max(COPY_PART_SIZE, math.ceil(size / MAX_PARTS))
    ranges = [(n + 1, start, min(start + part_size, size) - 1) for n, start in enumerate(range(0, size, part_size))]
    with s3_errors("CreateMultipartUpload", bucket, destination):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=destination)["UploadId"]

    def copy(spec: tuple[int, int, int]) -> CompletedPartTypeDef:
        number, first, last = spec
        with s3_errors("UploadPartCopy", bucket, destination):
            response = client.upload_part_copy(
                Bucket=bucket,
                Key=destination,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": source},
                CopySourceRange=f"bytes={first}-{last}",
            )
        return {"PartNumber": number, "ETag": response["CopyPartResult"].get("ETag", "")}

    try:
        with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="s3-copy") as pool:
            parts = list(pool.map(copy, ranges))
        with s3_errors("CompleteMultipartUpload", bucket, destination):
            client.complete_multipart_upload(
                Bucket=bucket, Key=destination, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        try:
            with s3_errors("AbortMultipartUpload", bucket, destination):
                client.abort_multipart_upload(Bucket=bucket, Key=destination, UploadId=upload_id)
        except ObjectNotFound:
            pass
        raise
