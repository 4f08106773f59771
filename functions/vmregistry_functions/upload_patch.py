"""PATCH /v1|v2/<name>/blobs/uploads/<uuid>: send part of a blob.

``/v1``: ``?part=N`` names one part, ``?part=N-M`` a range (URLs only),
``?part=N:OFFSET,...`` parts at their offsets. A body is stored as that part (or,
without ``part``, as the next one); no body asks for presigned PUT URLs to send
the parts straight to storage. ``?zero=N:OFFSET:LENGTH,...`` has storage fill
those parts with zeros instead (nothing is sent).

``/v2``: the body is appended to the upload, as a chunk at ``Content-Range:
<start>-<end>`` (which must start where the upload ends: 416 otherwise) or, without
one, as a stream; the answer says what the upload holds (``Range``).

Before a body is received (local mode), the session must exist and take parts,
and a ``/v2`` chunk must start where the upload ends.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.runtime import get_registry

from vmregistry_functions import _oci
from vmregistry_functions._responses import content_length, part_json
from vmregistry_functions._uploads import admit_body

endpoint = Endpoint("upload_patch")


@endpoint.admits
def writable(request: Request) -> object:
    return admit_body(request)


@endpoint.handle
def upload_patch(request: Request) -> HttpResponse:
    registry = get_registry()
    if request.api == "v2":
        with _oci.upload_progress_errors(request, request.upload_id):
            progress = registry.appends.append(
                request.name,
                request.upload_id,
                request.payload,
                request.header("content-range"),
                content_length(request),
            )
        return _oci.upload_progress(request, request.upload_id, progress.received)
    parts = registry.uploads.put_parts(
        request.name, request.upload_id, request.query.get("part"), request.payload, request.query.get("zero")
    )
    location = request.url(f"/v1/{request.name}/blobs/uploads/{request.upload_id}")
    return json_response(
        202,
        {"uuid": request.upload_id, "location": location, "parts": [part_json(p) for p in parts]},
        {"Location": location, "Docker-Upload-UUID": request.upload_id},
    )


lambda_handler = endpoint.lambda_handler
