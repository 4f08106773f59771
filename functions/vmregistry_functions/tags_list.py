"""GET /v1|v2/<name>/tags/list: a repository's tags, a page at a time (``n``, ``last``)."""

from __future__ import annotations

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.registry import parse_page_size
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import page_link

endpoint = Endpoint("tags_list")


@endpoint.handle
def tags_list(request: Request) -> HttpResponse:
    n = parse_page_size(request.query.get("n"))
    last = request.query.get("last") or None
    page = get_registry().manifests.tags_page(request.name, n, names.parse_tag(last) if last else None)
    link = page_link(request, f"/{request.api}/{request.name}/tags/list", page, n)
    return json_response(200, {"name": request.name, "tags": page.items}, link)


lambda_handler = endpoint.lambda_handler
