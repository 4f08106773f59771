"""GET /v2/<name>/referrers/<digest>: an OCI image index of the manifests whose subject is the digest.

``?artifactType=`` keeps one type (and says so in ``OCI-Filters-Applied``); an
unknown subject has an empty list, never a 404. Long lists come a page at a
time (``Link: <...?last=<digest>>; rel="next"``).
"""

from __future__ import annotations

from urllib.parse import quote

from vmregistry import names
from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.oci.referrers import build_referrers_index
from vmregistry.runtime import get_registry

endpoint = Endpoint("referrers_list")


@endpoint.handle
def referrers_list(request: Request) -> HttpResponse:
    artifact_type = request.query.get("artifactType") or None
    last = request.query.get("last") or None
    page = get_registry().manifests.referrers.page(
        request.name, request.digest, artifact_type, names.parse_digest(last) if last else None
    )
    index = build_referrers_index(page.descriptors, artifact_type)
    headers = index.headers
    if page.next_last is not None:
        query = f"last={page.next_last}" + (f"&artifactType={quote(artifact_type, safe='')}" if artifact_type else "")
        headers["Link"] = f'<{request.url(f"/v2/{request.name}/referrers/{request.digest}")}?{query}>; rel="next"'
    return Response(200, body=index.body.decode(), headers=headers)  # text: intact through API Gateway


lambda_handler = endpoint.lambda_handler
