"""HEAD /v1|v2/<name>/blobs/<digest>: does the repository hold the blob, and how big is it?"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_headers

endpoint = Endpoint("blob_head")


@endpoint.handle
def blob_head(request: Request) -> HttpResponse:
    info = get_registry().blobs.stat(request.name, request.digest)
    return Response(200, headers=blob_headers(info), body="")


lambda_handler = endpoint.lambda_handler
