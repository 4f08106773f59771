"""The one table of registry error codes.

Every client-visible failure is a :class:`RegistryError` carrying a code from
:data:`ERROR_CODES`; the code alone decides the HTTP status. Handlers and the
domain layer raise, and exactly one place (:func:`error_body`, used by the API
layer and the local data plane) turns the error into
``{"errors": [{"code", "message", "detail"}]}``. Storage never builds HTTP
responses: it raises :mod:`vmregistry.storage` exceptions that the domain
layer translates.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = ["ERROR_CODES", "ErrorCode", "RegistryError", "error_body", "error_dict"]


class ErrorCode(NamedTuple):
    code: str
    status: int
    message: str


_TABLE = [
    # Names, references and digests.
    ErrorCode("NAME_INVALID", 400, "invalid repository name"),
    ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry"),
    ErrorCode("TAG_INVALID", 400, "invalid tag"),
    ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
    # Blobs and uploads.
    ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry"),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"),
    ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
    ErrorCode("SIZE_INVALID", 400, "provided length did not match content length"),
    ErrorCode("RANGE_INVALID", 416, "requested range not satisfiable"),
    ErrorCode("TOO_LARGE", 413, "request body too large"),
    # Manifests.
    ErrorCode("MANIFEST_INVALID", 400, "manifest invalid"),
    ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown"),
    ErrorCode("MANIFEST_BLOB_UNKNOWN", 400, "manifest references a blob unknown to the repository"),
    ErrorCode("NOT_ACCEPTABLE", 406, "no stored representation matches the Accept header"),
    # Requests in general.
    ErrorCode("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"),
    ErrorCode("BAD_REQUEST", 400, "malformed request"),
    ErrorCode("UNAUTHORIZED", 401, "authentication required"),
    ErrorCode("DENIED", 403, "requested access to the resource is denied"),
    ErrorCode("SIGNATURE_INVALID", 403, "presigned URL signature invalid or expired"),
    ErrorCode("NOT_FOUND", 404, "no such route"),
    ErrorCode("UNSUPPORTED", 405, "the operation is unsupported"),
    ErrorCode("CONFLICT", 409, "the resource was changed concurrently; retry"),
    ErrorCode("TOO_MANY_REQUESTS", 429, "too many requests"),
    # Server side: never caused by client input.
    ErrorCode("INTERNAL", 500, "internal server error"),
    ErrorCode("UNAVAILABLE", 503, "storage backend unavailable; retry later"),
    ErrorCode("STORAGE_FULL", 507, "the registry's storage is full; retry once space was freed"),
]

ERROR_CODES: dict[str, ErrorCode] = {entry.code: entry for entry in _TABLE}


class RegistryError(Exception):
    """A failure the client is told about, by code.

    ``headers`` carries response headers that belong to the error (for
    example ``WWW-Authenticate`` on UNAUTHORIZED or ``Content-Range`` on
    RANGE_INVALID).
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown registry error code {code!r}")
        self.code = code
        self.message = message or ERROR_CODES[code].message
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.message}")

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code].status


def error_dict(error: RegistryError) -> dict[str, Any]:
    """One entry of an ``errors`` list (also what a failed upload session records)."""
    return {"code": error.code, "message": error.message, "detail": error.detail if error.detail is not None else {}}


def error_body(*errors: RegistryError) -> str:
    """Serialise errors the way every response of the registry carries them."""
    return json.dumps({"errors": [error_dict(e) for e in errors]}, separators=(",", ":"))
