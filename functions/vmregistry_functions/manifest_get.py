"""GET /v1/<name>/manifests/<reference>: the manifest, in its stored media type."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.errors import RegistryError
from vmregistry.registry import accepts
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import manifest_body, manifest_headers

endpoint = Endpoint("manifest_get")


@endpoint.handle
def manifest_get(request: Request) -> HttpResponse:
    manifest = get_registry().manifests.get(request.name, request.reference)
    if not accepts(request.header("accept"), manifest.media_type):
        raise RegistryError(
            "NOT_ACCEPTABLE",
            f"the manifest is {manifest.media_type}; include it in Accept",
            {"mediaType": manifest.media_type},
        )
    return Response(200, manifest.media_type, manifest_body(manifest), manifest_headers(manifest))


lambda_handler = endpoint.lambda_handler
