"""Response pieces that several operations share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmregistry.api import HttpResponse, Request, json_response

if TYPE_CHECKING:  # each handler imports only the domain modules it uses (cold start)
    from vmregistry.registry import BlobInfo, Manifest, Page, UploadStatus

__all__ = ["blob_created", "blob_headers", "manifest_body", "manifest_headers", "page_link", "upload_status"]


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
    body = status.to_json()
    body["location"] = location
    headers = {"Location": location, "Docker-Upload-UUID": uuid, "OCI-Chunk-Min-Length": str(body["minPartSize"])}
    if status.uploaded:
        headers["Range"] = f"0-{status.uploaded - 1}"
    return json_response(code, body, headers)


def page_link(request: Request, path: str, page: Page, n: int | None) -> dict[str, str]:
    if page.next_last is None:
        return {}
    size = f"n={n}&" if n is not None else ""
    return {"Link": f'<{request.url(path)}?{size}last={page.next_last}>; rel="next"'}
