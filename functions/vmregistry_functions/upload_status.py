"""GET /v1|v2/<name>/blobs/uploads/<uuid>: what storage holds so far, so a client can resume.

``/v1`` answers the session (JSON); ``/v2`` answers 204 with ``Range: 0-<last byte>``.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request
from vmregistry.runtime import get_registry

from vmregistry_functions import _oci
from vmregistry_functions._responses import upload_status as status_response

endpoint = Endpoint("upload_status")


@endpoint.handle
def upload_status(request: Request) -> HttpResponse:
    registry = get_registry()
    if request.api == "v2":
        progress = registry.appends.progress(request.name, request.upload_id)
        return _oci.upload_progress(request, request.upload_id, progress.received, 204)
    status = registry.uploads.status(request.name, request.upload_id)
    return status_response(request, status, 200)


lambda_handler = endpoint.lambda_handler
