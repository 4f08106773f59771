"""PUT /v1|v2/<name>/manifests/<reference>: validate a manifest and store it by digest and tag.

``/v2`` also takes ``?tag=`` parameters (tags to point at a manifest pushed by
digest, answered in ``OCI-Tag``) and answers ``OCI-Subject`` for a referrer.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

from vmregistry_functions._oci import manifest_created

endpoint = Endpoint("manifest_put")


@endpoint.handle
def manifest_put(request: Request) -> HttpResponse:
    manifests = get_registry().manifests
    content_type = request.header("content-type")
    if request.api == "v2":
        manifest = manifests.put(
            request.name, request.reference, request.body, content_type, form="oci", tags=request.query_all("tag")
        )
        return manifest_created(request, manifest)
    manifest = manifests.put(request.name, request.reference, request.body, content_type)
    headers = {
        "Location": request.url(f"/v1/{request.name}/manifests/{manifest.digest}"),
        "Docker-Content-Digest": manifest.digest,
    }
    return Response(201, headers=headers, body="")


lambda_handler = endpoint.lambda_handler
