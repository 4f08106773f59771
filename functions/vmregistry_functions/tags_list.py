"""GET /v1/<name>/tags/list: a repository's tags, paginated."""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.errors import RegistryError
from vmregistry.registry import paginate, parse_page_size
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import page_link

endpoint = Endpoint("tags_list")


@endpoint.handle
def tags_list(request: Request) -> HttpResponse:
    n = parse_page_size(request.query.get("n"))
    manifests = get_registry().manifests
    references = manifests.references(request.name)
    if not references:
        raise RegistryError("NAME_UNKNOWN", detail={"name": request.name})
    tags = sorted(ref for ref in references if ":" not in ref)
    page = paginate(tags, n, request.query.get("last"))
    link = page_link(request, f"/v1/{request.name}/tags/list", page, n)
    return json_response(200, {"name": request.name, "tags": page.items}, link)


lambda_handler = endpoint.lambda_handler
