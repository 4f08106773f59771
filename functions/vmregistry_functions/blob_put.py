"""PUT /v1/<name>/blobs/<digest>: store a small blob sent inline, after checking its digest."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_created

endpoint = Endpoint("blob_put")


@endpoint.handle
def blob_put(request: Request) -> HttpResponse:
    info = get_registry().blobs.put_inline(request.name, request.digest, request.body)
    return blob_created(request, info)


lambda_handler = endpoint.lambda_handler
