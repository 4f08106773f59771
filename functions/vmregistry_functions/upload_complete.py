"""PUT /v1/<name>/blobs/uploads/<uuid>?digest=: verify the upload and publish the blob.

A body, if any, is the final part. Nothing is visible under the digest until
the bytes were verified to have it. A multipart blob too large to hash within
the request is answered 202 with the session in state ``verifying``.
"""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.errors import RegistryError
from vmregistry.registry import UploadStatus
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_created, upload_status

endpoint = Endpoint("upload_complete")


def _digest(request: Request) -> str:
    if "digest" not in request.query:
        raise RegistryError("DIGEST_INVALID", "completing an upload needs ?digest=sha256:<hex>")
    return names.parse_digest(request.query["digest"])


@endpoint.admits
def completable(request: Request) -> object:
    _digest(request)
    return get_registry().uploads.writable(request.name, request.upload_id)


@endpoint.handle
def upload_complete(request: Request) -> HttpResponse:
    digest = _digest(request)
    result = get_registry().uploads.complete(request.name, request.upload_id, digest, request.payload)
    if isinstance(result, UploadStatus):
        # Too big to hash within this request: a worker verifies it; poll the session or HEAD the blob.
        return upload_status(request, result, 202)
    return blob_created(request, result)


lambda_handler = endpoint.lambda_handler
