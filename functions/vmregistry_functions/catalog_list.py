"""GET /v1/_catalog and /v2/_catalog: the repositories the caller may pull, a page at a time (``n``, ``last``)."""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.registry import parse_page_size
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import page_link

endpoint = Endpoint("catalog_list")


@endpoint.handle
def catalog_list(request: Request) -> HttpResponse:
    n = parse_page_size(request.query.get("n"))
    last = request.query.get("last") or None
    page = get_registry().manifests.repositories_page(
        n,
        names.parse_name(last) if last else None,
        lambda repository: request.may(repository, "pull"),
        request.name_prefixes("pull"),
    )
    link = page_link(request, f"/{request.api}/_catalog", page, n)
    return json_response(200, {"repositories": page.items}, link)


lambda_handler = endpoint.lambda_handler
