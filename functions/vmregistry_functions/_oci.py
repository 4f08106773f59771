"""The ``/v2`` wire format (OCI Distribution Specification 1.1), built from domain results.

``/v1`` answers carry JSON bodies (``_responses.py``); the OCI API answers
mostly in headers: ``Location`` of what was created or where an upload
continues, ``Range`` of what an upload holds, ``Docker-Content-Digest``,
``OCI-Subject``, ``OCI-Tag``, and the chunk size a client may use
(``OCI-Chunk-Min-Length``). Every handler that serves both APIs asks
``request.api`` and builds its ``/v2`` answer here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from vmregistry.api import HttpResponse, Request, Response
from vmregistry.errors import RegistryError
from vmregistry.oci.chunks import CHUNK_MIN_LENGTH_HEADER, progress_headers
from vmregistry.wire import OCI_CHUNK_LENGTH

if TYPE_CHECKING:  # each handler imports only the domain modules it uses (cold start)
    from vmregistry.registry import BlobInfo, Form, Manifest

__all__ = [
    "API_VERSION_HEADERS",
    "blob_created",
    "form",
    "manifest_created",
    "upload_location",
    "upload_progress",
    "upload_progress_errors",
]

API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def form(request: Request) -> Form:
    """How the request's API spells a VM image: the seed's manifest (``/v1``) or its OCI form (``/v2``)."""
    return "oci" if request.api == "v2" else "seed"


def blob_created(request: Request, info: BlobInfo) -> HttpResponse:
    headers = {
        "Location": request.url(f"/v2/{request.name}/blobs/{info.digest}"),
        "Docker-Content-Digest": info.digest,
        "Content-Length": "0",
    }
    return Response(201, headers=headers, body="")


def upload_location(request: Request, upload_id: str) -> str:
    return request.url(f"/v2/{request.name}/blobs/uploads/{upload_id}")


def upload_progress(request: Request, upload_id: str, received: int, status: int = 202) -> HttpResponse:
    """An upload's state: where it continues, what it holds, the chunk size to use."""
    headers = progress_headers(upload_location(request, upload_id), upload_id, received)
    headers[CHUNK_MIN_LENGTH_HEADER] = str(OCI_CHUNK_LENGTH)
    return Response(status, headers=headers, body="")


@contextlib.contextmanager
def upload_progress_errors(request: Request, upload_id: str) -> Iterator[None]:
    """A chunk out of order (416) tells the client where the upload stands (``detail.received``), to resume."""
    try:
        yield
    except RegistryError as error:
        detail = error.detail if isinstance(error.detail, dict) else {}
        if error.code == "RANGE_INVALID" and isinstance(detail.get("received"), int):
            error.headers.update(progress_headers(upload_location(request, upload_id), upload_id, detail["received"]))
            error.headers.pop("Content-Length", None)
        raise


def manifest_created(request: Request, manifest: Manifest) -> HttpResponse:
    headers = {
        "Location": request.url(f"/v2/{request.name}/manifests/{manifest.digest}"),
        "Docker-Content-Digest": manifest.digest,
        "Content-Length": "0",
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = manifest.subject
    if manifest.tags:
        headers["OCI-Tag"] = ", ".join(manifest.tags)
    return Response(201, headers=headers, body="")
