"""The ``/v1`` wire format of upload sessions: one schema for the server's answers and the client's reading.

The domain layer returns domain objects (:class:`~vmregistry.registry.uploads.UploadStatus`,
:class:`~vmregistry.storage.PresignedRequest`); the handlers turn them into
these JSON shapes (``functions/vmregistry_functions/_responses.py``) and the
reference client reads them back with the same names. camelCase lives here
and nowhere else. The limits a client must respect (part sizes, the inline
limit) are part of the protocol, so the client takes them from here rather
than from the server's storage or configuration modules.

A session, as ``POST .../blobs/uploads/``, ``GET`` and ``PATCH`` on a session answer it::

    {"uuid": "...", "repository": "team/vm", "mode": "single" | "multipart",
     "state": "open" | "verifying" | "failed", "error": null | {"code", "message", "detail"},
     "digest": "sha256:..." | null, "size": 123 | null, "partSize": 67108864 | null, "uploaded": 0,
     "parts": [{"number": 1, "size": 5242880, "etag": "..."}],
     "minPartSize": 5242880, "maxPartSize": 5368709120, "maxParts": 10000, "maxZeroPartSize": 1073741824,
     "upload": {"url", "method", "headers", "expiresAt"},      # single mode only
     "location": "/v1/team/vm/blobs/uploads/<uuid>"}
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from vmregistry.config import INLINE_LIMIT
from vmregistry.storage.base import MAX_PART_SIZE, MAX_PARTS, MAX_SINGLE_PUT_SIZE, MAX_ZERO_PART_SIZE, MIN_PART_SIZE

__all__ = [
    "INLINE_LIMIT",
    "MAX_PARTS",
    "MAX_PARTS_PER_REQUEST",
    "MAX_PART_SIZE",
    "MAX_SINGLE_PUT_SIZE",
    "MAX_ZERO_BYTES_PER_REQUEST",
    "MAX_ZERO_PARTS_PER_REQUEST",
    "MAX_ZERO_PART_SIZE",
    "MIN_PART_SIZE",
    "OCI_CHUNK_LENGTH",
    "ErrorJSON",
    "PartJSON",
    "PresignedJSON",
    "SessionJSON",
    "StoredPartJSON",
]

MAX_PARTS_PER_REQUEST = 100
"""How many presigned part URLs one ``PATCH ?part=N-M`` hands out."""

MAX_ZERO_PARTS_PER_REQUEST = 16
MAX_ZERO_BYTES_PER_REQUEST = 2 * 1024 * 1024 * 1024
"""What one ``PATCH ?zero=`` may declare: S3 copies that many bytes within the request (API Gateway's 29 s)."""

OCI_CHUNK_LENGTH = INLINE_LIMIT
"""The chunk length ``/v2`` advertises (``OCI-Chunk-Min-Length``, docs/oci.md): the most one request body
may carry in AWS (a Lambda event is at most 6 MB, and the body travels base64-encoded in it). Smaller
chunks are accepted too; they wait in storage until 5 MiB have arrived to make a multipart part."""


class PresignedJSON(TypedDict):
    """A request the client sends itself, straight to storage, with exactly these headers."""

    url: str
    method: str
    headers: dict[str, str]
    expiresAt: int


class StoredPartJSON(TypedDict):
    number: int
    size: int
    etag: str


class PartJSON(TypedDict):
    """One entry of ``PATCH``'s ``parts``: a part stored inline, or where to send it."""

    number: int
    size: NotRequired[int | None]
    etag: NotRequired[str | None]
    url: NotRequired[str]
    method: NotRequired[str]
    headers: NotRequired[dict[str, str]]
    expiresAt: NotRequired[int]


class ErrorJSON(TypedDict):
    code: str
    message: str
    detail: Any


class SessionJSON(TypedDict):
    uuid: str
    repository: str
    mode: str
    state: str
    error: ErrorJSON | None
    digest: str | None
    size: int | None
    partSize: int | None
    uploaded: int
    parts: list[StoredPartJSON]
    minPartSize: int
    maxPartSize: int
    maxParts: int
    maxZeroPartSize: int
    upload: NotRequired[PresignedJSON]
    location: NotRequired[str]
