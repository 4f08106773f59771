"""POST /v1/<name>/blobs/uploads/: open an upload session, mount a blob, or take a small blob whole.

Query parameters: ``digest`` and ``size`` (declare the blob: enables the single
presigned PUT), ``mode`` (``single`` or ``multipart``), ``partSize`` (with
``size``: parts land at their offsets, see docs/api.md), ``mount`` and ``from``
(link a blob from a repository the caller may pull). A body with ``digest``
is a monolithic upload of a small blob.
"""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.errors import RegistryError
from vmregistry.registry import BlobInfo
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_created, upload_status

endpoint = Endpoint("upload_start")


def _size(raw: str | None, name: str = "size") -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise RegistryError("SIZE_INVALID", f"{name} must be a non-negative integer", {name: raw[:50]})
    return int(raw)


@endpoint.admits
def monolithic(request: Request) -> object:
    """A body is a whole blob: it needs its digest."""
    if "digest" not in request.query:
        raise RegistryError("DIGEST_INVALID", "a monolithic upload needs ?digest=")
    return names.parse_digest(request.query["digest"])


@endpoint.handle
def upload_start(request: Request) -> HttpResponse:
    query = request.query
    digest = names.parse_digest(query["digest"]) if "digest" in query else None
    mount = names.parse_digest(query["mount"]) if "mount" in query else None
    mount_from = names.parse_name(query["from"]) if "from" in query else None
    result = get_registry().uploads.start(
        request.name,
        digest=digest,
        size=_size(query.get("size")),
        mode=query.get("mode"),
        part_size=_size(query.get("partSize"), "partSize"),
        body=request.payload,
        mount=mount,
        mount_from=mount_from,
        may_pull=lambda repository: request.may(repository, "pull"),
    )
    if isinstance(result, BlobInfo):
        return blob_created(request, result)
    return upload_status(request, result)


lambda_handler = endpoint.lambda_handler
