"""The S3 backend: the storage contract on one bucket, for AWS S3 and S3-compatible stores.

Why it looks the way it does:

* Bytes never pass through Lambda. Downloads are presigned GETs (``Range``
  works on them as on any GET); uploads are presigned PUTs or presigned
  UploadPart requests. A single PUT signs ``x-amz-checksum-sha256`` (the
  base64 of the expected digest), so S3 itself refuses a body with another
  digest (400 ``BadDigest``) and nothing lands.
* Multipart uploads have no whole-object SHA-256 in S3, so
  :meth:`multipart_complete` returns ``sha256=None`` and the domain streams
  :meth:`open` through hashlib before the object is moved under its digest.
* A zero part is an UploadPartCopy from an all-zero object in the bucket
  (:mod:`vmregistry.storage.s3_zeros`): declared zeros never cross the network.
* :meth:`receive` (local mode's streamed bodies) goes up from the server as
  one PUT or a multipart upload (:mod:`vmregistry.storage.s3_stream`).
* :meth:`move` is a server-side copy (:mod:`vmregistry.storage.s3_copy`:
  CopyObject, or parallel UploadPartCopy for a large object), then a delete.
  A copy is atomic: the destination never holds a partial object.
* Every boto3 failure goes through :mod:`vmregistry.storage.s3_client`, which
  turns it into the contract's exceptions; retries with backoff are
  botocore's.
* boto3 is imported here and in ``s3_client`` only, and the factory imports
  this module only for ``-storage s3``: filesystem processes and cold starts
  that never touch S3 do not pay for it.

Object ETags are stored without their quotes (``UploadedPart.etag`` travels in
JSON to clients); they are quoted again when S3 needs them.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vmregistry.config import Settings
from vmregistry.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_PUT_SIZE,
    ChecksumMismatch,
    MultipartUpload,
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Readable,
    Storage,
    UploadedPart,
)
from vmregistry.storage.s3_client import (
    abort_upload,
    blob,
    ensure_bucket,
    error_code,
    make_client,
    s3_errors,
    translate,
)
from vmregistry.storage.s3_copy import copy_object, copy_part
from vmregistry.storage.s3_stream import list_uploads, stream_put
from vmregistry.storage.s3_zeros import zero_part

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef, PaginatorConfigTypeDef

__all__ = ["S3Storage"]

DELETE_BATCH = 1000
LIST_BATCH = 1000
"""S3's most keys per ListObjectsV2 request."""


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag is not None else None


def _hex_to_b64(sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


def _b64_to_hex(value: str | None) -> str | None:
    """A full-object ``ChecksumSHA256`` as hex; ``None`` for composite (``...-N``) or absent ones."""
    if not value or "-" in value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


# User metadata naming the presigned PUT that wrote an object (sent as x-amz-meta-vmr-marker).
_MARKER = "vmr-marker"


class _Body:
    """A GetObject body whose read errors are the contract's, not botocore's."""

    def __init__(self, body: Any, bucket: str, key: str) -> None:
        self._body = body
        self._bucket = bucket
        self._key = key

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "GetObject", self._bucket, self._key) from exc
        return data

    def close(self) -> None:
        self._body.close()


class S3Storage(Storage):
    name = "s3"
    listing_proves_content = True  # a single PUT's ETag is its MD5 (SSE-S3); a KMS bucket's is not: see scan users

    def __init__(
        self, client: S3Client, bucket: str, *, create_bucket: bool = False, region: str = "us-east-1"
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.region = region
        if create_bucket:
            self.ensure_bucket()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        if not settings.s3_bucket:
            raise ValueError("-s3-bucket (VMREGISTRY_S3_BUCKET) is required with -storage s3")
        client = make_client(
            region=settings.s3_region,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
        )
        return cls(
            client, settings.s3_bucket, create_bucket=not settings.s3_skip_bucket_creation, region=settings.s3_region
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (``-s3-skip-bucket-creation`` skips this)."""
        ensure_bucket(self.client, self.bucket, self.region)

    # -- reading -----------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with s3_errors("HeadObject", self.bucket, key):
                head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ObjectNotFound:
            return None
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            modified=head["LastModified"].timestamp(),
            etag=_unquote(head.get("ETag")),
            sha256=_b64_to_hex(head.get("ChecksumSHA256")),
        )

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            if self.stat(key) is None:
                raise ObjectNotFound(key)
            return b""
        extra: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            extra["Range"] = f"bytes={offset}-{end}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **extra)  # type: ignore[arg-type]
        except ClientError as exc:
            if error_code(exc) == "InvalidRange":  # offset at or past the end, as a file read gives b""
                if self.stat(key) is None:
                    raise ObjectNotFound(key) from None
                return b""
            raise translate(exc, "GetObject", self.bucket, key) from exc
        except BotoCoreError as exc:
            raise translate(exc, "GetObject", self.bucket, key) from exc
        body = _Body(response["Body"], self.bucket, key)
        try:
            return body.read()
        finally:
            body.close()

    def open(self, key: str) -> _Body:
        with s3_errors("GetObject", self.bucket, key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        return _Body(response["Body"], self.bucket, key)

    def list(self, prefix: str, *, start_after: str | None = None, page_size: int | None = None) -> Iterator[str]:
        for item in self._listing(prefix, start_after, page_size):
            yield item["Key"]

    def scan(
        self, prefix: str, *, start_after: str | None = None, page_size: int | None = None
    ) -> Iterator[ObjectInfo]:
        for item in self._listing(prefix, start_after, page_size):
            yield ObjectInfo(item["Key"], item["Size"], item["LastModified"].timestamp(), _unquote(item.get("ETag")))

    def _listing(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[ObjectTypeDef]:
        # Lazy: the paginator asks for the next batch only when these are consumed. A page of 101
        # keys costs S3 (and LocalStack, which takes ~1 ms a key) far less than one of 1,000.
        paginator = self.client.get_paginator("list_objects_v2")
        config: PaginatorConfigTypeDef = {"PageSize": min(max(page_size or LIST_BATCH, 1), LIST_BATCH)}
        if start_after:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, StartAfter=start_after, PaginationConfig=config
            )
        else:
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=config)
        with s3_errors("ListObjectsV2", self.bucket, prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    # S3 starts strictly after StartAfter; some compatible stores (LocalStack 4.x)
                    # start at it, or ignore it for some keys: the contract is strict, so check.
                    if start_after is None or item["Key"] > start_after:
                        yield item

    # -- writing -----------------------------------------------------------------

    def write(self, key: str, data: bytes, *, sha256: str | None = None) -> ObjectInfo:
        actual = hashlib.sha256(data).hexdigest()
        if sha256 is not None and actual != sha256:
            raise ChecksumMismatch(f"expected sha256:{sha256}, received sha256:{actual}")
        with s3_errors("PutObject", self.bucket, key):
            # The checksum also guards the bytes in transit: S3 refuses them if they changed.
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=_hex_to_b64(actual)
            )
        return ObjectInfo(key, len(data), time.time(), _unquote(response.get("ETag")), actual)

    def receive(self, key: str, source: Readable, length: int | None, *, sha256: str | None = None) -> ObjectInfo:
        return stream_put(self.client, self.bucket, key, source, length, sha256)

    def delete(self, key: str) -> bool:
        if self.stat(key) is None:
            return False
        with s3_errors("DeleteObject", self.bucket, key):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def delete_many(self, keys: builtins.list[str]) -> int:
        # DeleteObjects answers success for missing keys too: the count is of keys asked for.
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with s3_errors("DeleteObjects", self.bucket, batch[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise translate(
                    ClientError(
                        {"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}}, "DeleteObjects"
                    ),
                    "DeleteObjects",
                    self.bucket,
                    first.get("Key"),
                )
        return len(keys)

    def move(self, source: str, destination: str) -> None:
        info = self.stat(source)
        if info is None:
            raise ObjectNotFound(source)
        copy_object(self.client, self.bucket, source, destination, info.size)
        with s3_errors("DeleteObject", self.bucket, source):
            self.client.delete_object(Bucket=self.bucket, Key=source)

    # -- redirects -----------------------------------------------------------------

    def presign_get(self, key: str, expires_in: int) -> str | None:
        with s3_errors("presign GetObject", self.bucket, key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )

    def presign_put(
        self, key: str, expires_in: int, *, sha256: str, size: int | None = None, marker: str | None = None
    ) -> PresignedRequest | None:
        if size is not None and size > MAX_SINGLE_PUT_SIZE:
            return None
        checksum = _hex_to_b64(sha256)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ChecksumSHA256": checksum}
        headers = {"x-amz-checksum-sha256": checksum}
        if marker is not None:
            params["Metadata"] = {_MARKER: marker}
            headers[f"x-amz-meta-{_MARKER}"] = marker
        with s3_errors("presign PutObject", self.bucket, key):
            url = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in)
        # Signed, so the client must send them unchanged; S3 checks the body against the checksum.
        return PresignedRequest(url=url, method="PUT", expires_at=int(time.time()) + expires_in, headers=headers)

    def marker(self, key: str) -> str | None:
        try:
            with s3_errors("HeadObject", self.bucket, key):
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        value = head.get("Metadata", {}).get(_MARKER)
        return str(value) if value is not None else None

    # -- multipart -----------------------------------------------------------------

    def multipart_create(self, key: str, size: int | None = None) -> str:
        # S3 joins parts in number order at completion: nothing to lay out for a known size.
        with s3_errors("CreateMultipartUpload", self.bucket, key):
            return self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    @staticmethod
    def _check_number(number: int) -> None:
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part numbers run from 1 to {MAX_PARTS}")

    def multipart_put_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray, *, offset: int | None = None
    ) -> UploadedPart:
        self._check_number(number)
        if len(data) > MAX_PART_SIZE:
            raise ValueError(f"a part is at most {MAX_PART_SIZE} bytes")
        with s3_errors("UploadPart", self.bucket, key):
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=blob(data)
            )
        return UploadedPart(number, len(data), _unquote(response.get("ETag")) or "")

    def multipart_move_part(
        self, key: str, upload_id: str, number: int, source: str, *, offset: int | None = None
    ) -> UploadedPart:
        self._check_number(number)
        info = self.stat(source)
        if info is None:
            raise ObjectNotFound(source)
        if info.size > MAX_PART_SIZE:
            raise ValueError(f"a part is at most {MAX_PART_SIZE} bytes")
        etag = copy_part(self.client, self.bucket, key, upload_id, number, source)
        with s3_errors("DeleteObject", self.bucket, source):
            self.client.delete_object(Bucket=self.bucket, Key=source)
        return UploadedPart(number, info.size, _unquote(etag) or "")

    def multipart_zero_part(
        self, key: str, upload_id: str, number: int, size: int, *, offset: int | None = None
    ) -> UploadedPart:
        self._check_number(number)
        return zero_part(self.client, self.bucket, key, upload_id, number, size)

    def multipart_list_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        return list_uploads(self.client, self.bucket, prefix)

    def multipart_presign_part(
        self, key: str, upload_id: str, number: int, expires_in: int, *, offset: int | None = None
    ) -> PresignedRequest | None:
        self._check_number(number)
        with s3_errors("presign UploadPart", self.bucket, key):
            url = self.client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
                ExpiresIn=expires_in,
            )
        return PresignedRequest(url=url, method="PUT", expires_at=int(time.time()) + expires_in)

    def multipart_list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        paginator = self.client.get_paginator("list_parts")
        parts: builtins.list[UploadedPart] = []
        with s3_errors("ListParts", self.bucket, key):
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                parts.extend(
                    UploadedPart(p["PartNumber"], p["Size"], _unquote(p.get("ETag")) or "")
                    for p in page.get("Parts", [])
                )
        return sorted(parts, key=lambda p: p.number)

    def multipart_complete(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> ObjectInfo:
        self.check_parts(key, upload_id, parts)
        with s3_errors("CompleteMultipartUpload", self.bucket, key):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in parts]},
            )
        info = self.stat(key)
        if info is None:  # pragma: no cover - S3 is strongly consistent after a write
            raise ObjectNotFound(key)
        return info

    def multipart_abort(self, key: str, upload_id: str) -> None:
        abort_upload(self.client, self.bucket, key, upload_id)
