"""DELETE /v1|v2/<name>/blobs/uploads/<uuid>: abandon an upload and free what it stored."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

endpoint = Endpoint("upload_cancel")


@endpoint.handle
def upload_cancel(request: Request) -> HttpResponse:
    registry = get_registry()
    if request.api == "v2":
        registry.appends.cancel(request.name, request.upload_id)
    else:
        registry.uploads.cancel(request.name, request.upload_id)
    return Response(204, body="")


lambda_handler = endpoint.lambda_handler
