"""DELETE /v1|v2/<name>/blobs/<digest>: remove the blob from the repository."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

endpoint = Endpoint("blob_delete")


@endpoint.handle
def blob_delete(request: Request) -> HttpResponse:
    get_registry().blobs.delete(request.name, request.digest)
    return Response(202, headers={"Docker-Content-Digest": request.digest}, body="")


lambda_handler = endpoint.lambda_handler
