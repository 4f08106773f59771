"""PUT /v1|v2/<name>/blobs/uploads/<uuid>?digest=: verify the upload and publish the blob.

A body, if any, is the final part (``/v2``: the final chunk, with or without
``Content-Range``). Nothing is visible under the digest until the bytes were
verified to have it. ``/v1``: a multipart blob too large to hash within the
request is answered 202 with the session in state ``verifying``; ``/v2``
always verifies within the request (OCI clients expect 201).
"""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.errors import RegistryError
from vmregistry.registry import UploadStatus
from vmregistry.runtime import get_registry

from vmregistry_functions import _oci
from vmregistry_functions._responses import blob_created, content_length, upload_status
from vmregistry_functions._uploads import admit_body

endpoint = Endpoint("upload_complete")


def _digest(request: Request) -> str:
    if "digest" not in request.query:
        raise RegistryError("DIGEST_INVALID", "completing an upload needs ?digest=<algorithm>:<hex>")
    return names.parse_digest(request.query["digest"])


@endpoint.admits
def completable(request: Request) -> object:
    _digest(request)
    return admit_body(request)


@endpoint.handle
def upload_complete(request: Request) -> HttpResponse:
    digest = _digest(request)
    registry = get_registry()
    if request.api == "v2":
        with _oci.upload_progress_errors(request, request.upload_id):
            blob = registry.appends.finish(
                request.name,
                request.upload_id,
                digest,
                request.payload,
                request.header("content-range"),
                content_length(request),
            )
        return _oci.blob_created(request, blob)
    result = registry.uploads.complete(request.name, request.upload_id, digest, request.payload)
    if isinstance(result, UploadStatus):
        # Too big to hash within this request: a worker verifies it; poll the session or HEAD the blob.
        return upload_status(request, result, 202)
    return blob_created(request, result)


lambda_handler = endpoint.lambda_handler
