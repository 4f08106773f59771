"""The boto3 side of the S3 backend: one client, its bucket, and S3's errors in the contract's terms.

Kept apart from :mod:`vmregistry.storage.s3` so the backend reads as storage
semantics while this module holds what is specific to botocore:

* The client. Retries with exponential backoff come from botocore's
  ``standard`` retry mode (throttling, 5xx, connection errors), so a
  ``SlowDown`` is retried by the library, not by us. Path-style addressing
  whenever an endpoint is set, because S3-compatible stores (LocalStack,
  MinIO) rarely serve virtual-host names. Checksums are computed only when an
  operation requires them: botocore's default (CRC32 on every PUT) would add
  headers to presigned URLs that a client following them never sends.
* The error table. A ``ClientError`` or connection failure must never escape
  as a library exception: a missing key becomes :class:`ObjectNotFound`, a
  digest S3 refused becomes :class:`ChecksumMismatch`, a bad multipart
  assembly becomes ``ValueError``, and everything else (no such bucket,
  access denied, throttled after the retries, endpoint down) becomes
  :class:`StorageUnavailable` with a message an operator can act on, logged
  once here.
* The bucket, created on first start unless told not to
  (:func:`ensure_bucket`), and :func:`abort_upload`, for which an upload
  already gone is success.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vmregistry.storage.base import ChecksumMismatch, ObjectNotFound, StorageError, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "RETRY_ATTEMPTS",
    "abort_upload",
    "blob",
    "ensure_bucket",
    "error_code",
    "make_client",
    "s3_errors",
    "translate",
]

log = logging.getLogger("vmregistry.storage.s3")

RETRY_ATTEMPTS = 5
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60

NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
BAD_CHECKSUM = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"})
BAD_ASSEMBLY = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"})
NO_BUCKET = frozenset({"NoSuchBucket"})
DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
        "AccountProblem",
    }
)
THROTTLED = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "503",
        "ServiceUnavailable",
        "RequestTimeout",
        "TooManyRequests",
    }
)


class AssemblyError(ValueError):
    """S3 refused to join the parts of a multipart upload (missing, changed or too small)."""


def make_client(
    *,
    region: str,
    endpoint: str | None,
    access_key: str | None,
    secret_key: str | None,
    max_pool_connections: int = 16,
) -> S3Client:
    """An S3 client; ``access_key``/``secret_key`` override the AWS credential chain when both are set."""
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        max_pool_connections=max_pool_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    explicit = bool(access_key and secret_key)
    # A session per backend: boto3's default session is not safe to share between threads.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint,
        config=config,
        aws_access_key_id=access_key if explicit else None,
        aws_secret_access_key=secret_key if explicit else None,
    )


def blob(data: bytes | bytearray) -> bytes:
    """``data`` for a Body, uncopied: botocore takes bytearray as a blob (``validate._validate_blob``); stubs don't."""
    return cast("bytes", data)


def error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if not code:
        code = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code


def translate(exc: Exception, operation: str, bucket: str, key: str | None = None) -> StorageError | ValueError:
    """The contract's exception for a botocore failure of ``operation`` on ``bucket``/``key``."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in NOT_FOUND:
            return ObjectNotFound(key or bucket)
        if code in BAD_CHECKSUM:
            return ChecksumMismatch(f"S3 refused the body of {where}: {message}")
        if code in BAD_ASSEMBLY:
            return AssemblyError(f"S3 could not assemble {where}: {message}")
        if code in NO_BUCKET:
            text = f"S3 bucket {bucket!r} does not exist (create it, or drop -s3-skip-bucket-creation)"
        elif code in DENIED:
            text = f"S3 denied {operation} on {where} ({code}): check the credentials and the bucket policy"
        elif code in THROTTLED:
            text = (
                f"S3 is throttling or unavailable ({code}) for {operation} on {where} after {RETRY_ATTEMPTS} attempts"
            )
        else:
            text = f"S3 {operation} on {where} failed: {code}: {message}"
        log.error(text, extra={"operation": operation, "bucket": bucket, "key": key, "code": code})
        return StorageUnavailable(text)
    text = f"cannot reach S3 for {operation} on {where}: {exc}"
    log.error(text, extra={"operation": operation, "bucket": bucket, "key": key, "code": type(exc).__name__})
    return StorageUnavailable(text)


@contextlib.contextmanager
def s3_errors(operation: str, bucket: str, key: str | None = None) -> Iterator[None]:
    """Run a boto3 call, re-raising its failure as the contract's exception."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation, bucket, key) from exc


def ensure_bucket(client: S3Client, bucket: str, region: str) -> None:
    """Create ``bucket`` in ``region`` if it does not exist."""
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise translate(exc, "HeadBucket", bucket) from exc
    except BotoCoreError as exc:
        raise translate(exc, "HeadBucket", bucket) from exc
    log.info("creating S3 bucket %s in %s", bucket, region)
    try:
        if region == "us-east-1":
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise translate(exc, "CreateBucket", bucket) from exc
    except BotoCoreError as exc:
        raise translate(exc, "CreateBucket", bucket) from exc


def abort_upload(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload: its parts are freed; one already completed, aborted or expired is as good."""
    with contextlib.suppress(ObjectNotFound), s3_errors("AbortMultipartUpload", bucket, key):
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
