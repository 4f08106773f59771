"""GET /v1|v2/<name>/manifests/<reference>: the manifest, in its stored media type.

A VM image read by tag comes in the spelling of the API it is read through
(the seed's on ``/v1``, its OCI form on ``/v2``: docs/oci.md). ``/v1`` answers
406 when ``Accept`` admits neither the media type nor JSON; ``/v2`` never
converts and serves what it holds whatever ``Accept`` says (clients send
several ``Accept`` headers, of which an event keeps the last).
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.errors import RegistryError
from vmregistry.registry import accepts
from vmregistry.runtime import get_registry

from vmregistry_functions._oci import form
from vmregistry_functions._responses import manifest_body, manifest_headers

endpoint = Endpoint("manifest_get")


@endpoint.handle
def manifest_get(request: Request) -> HttpResponse:
    manifest = get_registry().manifests.get(request.name, request.reference, form(request))
    if request.api == "v1" and not accepts(request.header("accept"), manifest.media_type):
        raise RegistryError(
            "NOT_ACCEPTABLE",
            f"the manifest is {manifest.media_type}; include it in Accept",
            {"mediaType": manifest.media_type},
        )
    return Response(200, manifest.media_type, manifest_body(manifest), manifest_headers(manifest))


lambda_handler = endpoint.lambda_handler
