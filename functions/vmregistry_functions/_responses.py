"""Response pieces that several operations share, and the ``/v1`` wire shapes built from domain results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmregistry.api import HttpResponse, Request, json_response
from vmregistry.wire import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_ZERO_PART_SIZE,
    MIN_PART_SIZE,
    ErrorJSON,
    PartJSON,
    PresignedJSON,
    SessionJSON,
)

if TYPE_CHECKING:  # each handler imports only the domain modules it uses (cold start)
    from vmregistry.registry import BlobInfo, Manifest, Page, PartResult, UploadStatus
    from vmregistry.storage import PresignedRequest

__all__ = [
    "blob_created",
    "blob_headers",
    "content_length",
    "manifest_body",
    "manifest_headers",
    "page_link",
    "part_json",
    "presigned_json",
    "session_json",
    "upload_status",
]


def presigned_json(request: PresignedRequest) -> PresignedJSON:
    return {
        "url": request.url,
        "method": request.method,
        "headers": dict(request.headers),
        "expiresAt": request.expires_at,
    }


def part_json(result: PartResult) -> PartJSON:
    if result.request is None:
        return {"number": result.number, "size": result.size, "etag": result.etag}
    request = result.request
    return {
        "number": result.number,
        "url": request.url,
        "method": request.method,
        "headers": dict(request.headers),
        "expiresAt": request.expires_at,
    }


def session_json(status: UploadStatus, location: str) -> SessionJSON:
    s = status.session
    error: ErrorJSON | None = None
    if s.error is not None:
        error = {
            "code": str(s.error.get("code")),
            "message": str(s.error.get("message")),
            "detail": s.error.get("detail"),
        }
    body: SessionJSON = {
        "uuid": s.uuid,
        "repository": s.repository,
        "mode": s.mode,
        "state": s.state,
        "error": error,
        "digest": s.digest,
        "size": s.size,
        "partSize": s.part_size,
        "uploaded": status.uploaded,
        "parts": [{"number": p.number, "size": p.size, "etag": p.etag} for p in status.parts],
        "minPartSize": MIN_PART_SIZE,
        "maxPartSize": MAX_PART_SIZE,
        "maxParts": MAX_PARTS,
        "maxZeroPartSize": MAX_ZERO_PART_SIZE,
        "location": location,
    }
    if status.request is not None:
        body["upload"] = presigned_json(status.request)
    return body


def blob_headers(info: BlobInfo) -> dict[str, str]:
    return {
        "Content-Length": str(info.size),
        "Docker-Content-Digest": info.digest,
        "Content-Type": "application/octet-stream",
    }


def manifest_headers(manifest: Manifest) -> dict[str, str]:
    return {
        "Content-Type": manifest.media_type,
        "Content-Length": str(len(manifest.data)),
        "Docker-Content-Digest": manifest.digest,
    }


def manifest_body(manifest: Manifest) -> str | bytes:
    """The manifest's bytes as text when they are UTF-8 (JSON always is), so they arrive intact.

    API Gateway turns a base64 (``bytes``) body back into bytes only when the request's
    ``Accept`` matches a binary media type; a client that sends no ``Accept`` would get the
    base64 text instead. A text body passes through unchanged whatever the client sends."""
    try:
        return manifest.data.decode("utf-8")
    except UnicodeDecodeError:
        return manifest.data


def blob_created(request: Request, info: BlobInfo) -> HttpResponse:
    return json_response(
        201,
        {"digest": info.digest, "size": info.size},
        {
            "Location": request.url(f"/v1/{request.name}/blobs/{info.digest}"),
            "Docker-Content-Digest": info.digest,
        },
    )


def upload_status(request: Request, status: UploadStatus, code: int = 202) -> HttpResponse:
    uuid = status.session.uuid
    location = request.url(f"/v1/{request.name}/blobs/uploads/{uuid}")
    headers = {"Location": location, "Docker-Upload-UUID": uuid, "OCI-Chunk-Min-Length": str(MIN_PART_SIZE)}
    if status.uploaded:
        headers["Range"] = f"0-{status.uploaded - 1}"
    return json_response(code, session_json(status, location), headers)


def content_length(request: Request) -> int | None:
    """The request's declared body length (``None``: not declared, or not a number)."""
    raw = request.header("content-length")
    return int(raw) if raw is not None and raw.isascii() and raw.strip().isdigit() else None


def page_link(request: Request, path: str, page: Page, n: int | None) -> dict[str, str]:
    if page.next_last is None:
        return {}
    size = f"n={n}&" if n is not None else ""
    return {"Link": f'<{request.url(path)}?{size}last={page.next_last}>; rel="next"'}
