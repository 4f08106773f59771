"""GET /v1|v2/<name>/blobs/<digest>: a 307 to a presigned URL that serves the bytes.

Bytes pass through the function only when the backend cannot presign and the
blob fits in a response; then ``Range`` is honoured here.
"""

from __future__ import annotations

from vmregistry.api import Endpoint, HttpResponse, Request, Response
from vmregistry.httprange import parse_range
from vmregistry.runtime import get_registry

from vmregistry_functions._responses import blob_headers

endpoint = Endpoint("blob_get")


@endpoint.handle
def blob_get(request: Request) -> HttpResponse:
    download = get_registry().blobs.download(request.name, request.digest)
    headers = blob_headers(download.info)
    if download.url is not None:
        headers.pop("Content-Length")
        headers["Location"] = download.url
        return Response(307, headers=headers, body="")
    data = download.data or b""
    span = parse_range(request.header("range"), len(data))
    if span is None:
        return Response(200, headers=headers | {"Accept-Ranges": "bytes"}, body=data)
    start, end = span
    headers |= {"Content-Length": str(end - start + 1), "Content-Range": f"bytes {start}-{end}/{len(data)}"}
    return Response(206, headers=headers, body=data[start : end + 1])


lambda_handler = endpoint.lambda_handler
