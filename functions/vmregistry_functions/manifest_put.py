"""PUT /v1/<name>/manifests/<reference>: validate a manifest and store it by digest and tag."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

endpoint = Endpoint("manifest_put")


@endpoint.handle
def manifest_put(request: Request) -> HttpResponse:
    manifest = get_registry().manifests.put(
        request.name, request.reference, request.body, request.header("content-type")
    )
    headers = {
        "Location": request.url(f"/v1/{request.name}/manifests/{manifest.digest}"),
        "Docker-Content-Digest": manifest.digest,
    }
    return Response(201, headers=headers, body="")


lambda_handler = endpoint.lambda_handler
