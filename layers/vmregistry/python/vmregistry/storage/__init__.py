"""Storage backends behind one contract (:class:`Storage`), chosen once per process."""

from __future__ import annotations

from vmregistry.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_PUT_SIZE,
    MAX_ZERO_PART_SIZE,
    MIN_PART_SIZE,
    ChecksumMismatch,
    InvalidKey,
    MultipartUpload,
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Readable,
    ReadStream,
    Storage,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UploadedPart,
)

__all__ = [
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_SINGLE_PUT_SIZE",
    "MAX_ZERO_PART_SIZE",
    "MIN_PART_SIZE",
    "ChecksumMismatch",
    "InvalidKey",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "PresignedRequest",
    "ReadStream",
    "Readable",
    "Storage",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "UploadedPart",
]
