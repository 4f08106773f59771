"""POST /v1|v2/<name>/blobs/uploads/: open an upload session, mount a blob, or take a small blob whole.

Query parameters: ``digest`` (with a body: a monolithic upload of a small
blob), ``mount`` and ``from`` (link a blob from a repository the caller may
pull; ``/v2`` without ``from``: from anywhere, for a caller who may pull
everything). ``/v1`` also takes ``size`` (declare the blob: enables the single
presigned PUT), ``mode`` (``single`` or ``multipart``) and ``partSize`` (with
``size``: parts land at their offsets, see docs/api.md); ``/v2`` opens an OCI
session, whose chunks are appended in order (``vmregistry.registry.appends``).
"""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.errors import RegistryError
from vmregistry.registry import BlobInfo
from vmregistry.runtime import get_registry

from vmregistry_functions import _oci
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
    oci = request.api == "v2"
    body = request.payload
    digest = names.parse_digest(query["digest"]) if "digest" in query else None
    mount = names.parse_digest(query["mount"]) if "mount" in query else None
    mount_from = names.parse_name(query["from"]) if query.get("from") else None
    result = get_registry().uploads.start(
        request.name,
        digest=None if oci and not body else digest,
        size=None if oci else _size(query.get("size")),
        mode=None if oci else query.get("mode"),
        part_size=None if oci else _size(query.get("partSize"), "partSize"),
        body=body,
        mount=mount,
        mount_from=mount_from,
        may_pull=lambda repository: request.may(repository, "pull"),
        may_pull_anything=oci and request.name_prefixes("pull") is None,
        appends=oci,
    )
    if isinstance(result, BlobInfo):
        return _oci.blob_created(request, result) if oci else blob_created(request, result)
    if oci:
        return _oci.upload_progress(request, result.session.uuid, 0)
    return upload_status(request, result)


lambda_handler = endpoint.lambda_handler
