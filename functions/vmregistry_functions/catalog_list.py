"""GET /v1/_catalog: the repositories the caller may pull, paginated."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.registry import paginate, parse_page_size
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import page_link

endpoint = Endpoint("catalog_list")


@endpoint.handle
def catalog_list(request: Request) -> HttpResponse:
    n = parse_page_size(request.query.get("n"))
    visible = [r for r in get_registry().manifests.repositories() if request.may(r, "pull")]
    page = paginate(visible, n, request.query.get("last"))
    return json_response(200, {"repositories": page.items}, page_link(request, "/v1/_catalog", page, n))


lambda_handler = endpoint.lambda_handler
