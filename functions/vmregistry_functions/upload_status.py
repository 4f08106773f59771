"""GET /v1/<name>/blobs/uploads/<uuid>: what storage holds so far, so a client can resume."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import upload_status as status_response

endpoint = Endpoint("upload_status")


@endpoint.handle
def upload_status(request: Request) -> HttpResponse:
    status = get_registry().uploads.status(request.name, request.upload_id)
    return status_response(request, status, 200)


lambda_handler = endpoint.lambda_handler
