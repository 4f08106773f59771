"""Server-side copies inside the bucket: objects and parts made of other objects, no byte leaving S3.

* :func:`copy_object`: how :meth:`S3Storage.move <vmregistry.storage.s3.S3Storage.move>`
  copies. CopyObject stops at 5 GiB and copies at one stream's pace, so an
  object above :data:`COPY_SINGLE_LIMIT` is assembled from ranges of itself,
  copied in parallel: a VM disk of many GB moves within one API request.
* :func:`assemble`: an object made of whole objects or ranges of them, as a
  multipart upload of UploadPartCopy parts run in parallel (also how
  :mod:`vmregistry.storage.s3_zeros` doubles its fill objects). The object
  appears only when the upload completes; a failed one is aborted, so the key
  never holds a partial object.
* :func:`copy_part`: one UploadPartCopy into an upload in progress (a staged
  part moved in, a zero part copied from a fill object).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vmregistry.storage.base import MAX_PARTS
from vmregistry.storage.s3_client import abort_upload, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, UploadPartCopyRequestTypeDef

__all__ = ["COPY_PART_SIZE", "COPY_SINGLE_LIMIT", "Span", "assemble", "copy_object", "copy_part"]

COPY_SINGLE_LIMIT = 512 * 1024 * 1024
"""Objects up to this size are copied with one CopyObject; larger ones with parallel UploadPartCopy."""
COPY_PART_SIZE = 256 * 1024 * 1024
COPY_THREADS = 8

Span = tuple[int, int]
"""The first and last byte (inclusive) of a source to copy."""


def copy_part(
    client: S3Client, bucket: str, key: str, upload_id: str, number: int, source: str, span: Span | None = None
) -> str:
    """Part ``number`` of the upload becomes ``source`` (bytes ``span`` of it, if given); its ETag, quoted."""
    request: UploadPartCopyRequestTypeDef = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": number,
        "CopySource": {"Bucket": bucket, "Key": source},
    }
    if span is not None:
        request["CopySourceRange"] = f"bytes={span[0]}-{span[1]}"
    with s3_errors("UploadPartCopy", bucket, key):
        response = client.upload_part_copy(**request)
    return response["CopyPartResult"].get("ETag", "")


def assemble(client: S3Client, bucket: str, key: str, sources: Sequence[tuple[str, Span | None]]) -> None:
    """``key`` becomes ``sources`` (each a key, and a span of it or the whole) joined in order, atomically."""
    with s3_errors("CreateMultipartUpload", bucket, key):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def copy(number: int) -> CompletedPartTypeDef:
        source, span = sources[number - 1]
        return {"PartNumber": number, "ETag": copy_part(client, bucket, key, upload_id, number, source, span)}

    try:
        with ThreadPoolExecutor(min(COPY_THREADS, len(sources)), thread_name_prefix="s3-copy") as pool:
            parts = list(pool.map(copy, range(1, len(sources) + 1)))
        with s3_errors("CompleteMultipartUpload", bucket, key):
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        abort_upload(client, bucket, key, upload_id)
        raise


def copy_object(client: S3Client, bucket: str, source: str, destination: str, size: int) -> None:
    """Copy ``source`` (``size`` bytes) to ``destination``, atomically."""
    if size <= COPY_SINGLE_LIMIT:
        with s3_errors("CopyObject", bucket, destination):
            client.copy_object(Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": source})
        return
    part_size = max(COPY_PART_SIZE, math.ceil(size / MAX_PARTS))
    spans = [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]
    assemble(client, bucket, destination, [(source, span) for span in spans])
