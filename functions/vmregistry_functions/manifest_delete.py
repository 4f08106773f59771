"""DELETE /v1|v2/<name>/manifests/<reference>: untag, or delete a manifest and its tags."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

endpoint = Endpoint("manifest_delete")


@endpoint.handle
def manifest_delete(request: Request) -> HttpResponse:
    get_registry().manifests.delete(request.name, request.reference)
    return Response(202, body="")


lambda_handler = endpoint.lambda_handler
