"""GET /v1/ and /v2/: the API exists, and the caller's credentials are good enough to talk to it."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, json_response

from vmregistry_functions._oci import API_VERSION_HEADERS

endpoint = Endpoint("version_check")


@endpoint.handle
def version_check(request: Request) -> HttpResponse:
    if request.api == "v2":
        return json_response(200, {}, API_VERSION_HEADERS)
    return json_response(200, {}, {"VmRegistry-API-Version": "v1"})


lambda_handler = endpoint.lambda_handler
