"""PUT /v1/<name>/blobs/<digest>: store a blob sent whole in the body, after checking its digest.

In AWS the body is what API Gateway lets through (a few MB: bigger blobs take
the upload flow); in local mode it is streamed into storage first, any size.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_created

endpoint = Endpoint("blob_put")


@endpoint.handle
def blob_put(request: Request) -> HttpResponse:
    info = get_registry().blobs.put(request.name, request.digest, request.payload)
    return blob_created(request, info)


lambda_handler = endpoint.lambda_handler
