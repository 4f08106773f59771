"""HEAD /v1|v2/<name>/manifests/<reference>: does the manifest exist, and what is its digest?"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.runtime import get_registry

from vmregistry_functions._oci import form
from vmregistry_functions._responses import manifest_headers

endpoint = Endpoint("manifest_head")


@endpoint.handle
def manifest_head(request: Request) -> HttpResponse:
    manifest = get_registry().manifests.get(request.name, request.reference, form(request))
    return Response(200, headers=manifest_headers(manifest), body="")


lambda_handler = endpoint.lambda_handler
