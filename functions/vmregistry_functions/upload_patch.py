"""PATCH /v1/<name>/blobs/uploads/<uuid>: send a part inline, or get presigned URLs for parts.

``?part=N`` names one part, ``?part=N-M`` a range (URLs only), ``?part=N:OFFSET,...``
parts at their offsets. A body is stored as that part (or, without ``part``, as
the next one); no body asks for presigned PUT URLs to send the parts straight
to storage. ``?zero=N:OFFSET:LENGTH,...`` has storage fill those parts with
zeros instead (nothing is sent). Before a body is
received (local mode), the session must exist and take parts.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, json_response
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import part_json

endpoint = Endpoint("upload_patch")


@endpoint.admits
def writable(request: Request) -> object:
    return get_registry().uploads.writable(request.name, request.upload_id)


@endpoint.handle
def upload_patch(request: Request) -> HttpResponse:
    parts = get_registry().uploads.put_parts(
        request.name, request.upload_id, request.query.get("part"), request.payload, request.query.get("zero")
    )
    location = request.url(f"/v1/{request.name}/blobs/uploads/{request.upload_id}")
    return json_response(
        202,
        {"uuid": request.upload_id, "location": location, "parts": [part_json(p) for p in parts]},
        {"Location": location, "Docker-Upload-UUID": request.upload_id},
    )


lambda_handler = endpoint.lambda_handler
