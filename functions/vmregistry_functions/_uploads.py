"""What the handlers that take an upload's bytes share: whether a body may come, asked before it is received."""

from __future__ import annotations

from vmregistry.api import Request
from vmregistry.runtime import get_registry

from vmregistry_functions import _oci
from vmregistry_functions._responses import content_length

__all__ = ["admit_body"]


def admit_body(request: Request) -> object:
    """The session exists and takes parts (``/v1``), or the chunk starts where the upload ends (``/v2``).

    Local mode asks before it receives a body, so a refused one is never stored.
    """
    registry = get_registry()
    if request.api == "v2":
        with _oci.upload_progress_errors(request, request.upload_id):
            return registry.appends.admit(
                request.name, request.upload_id, request.header("content-range"), content_length(request)
            )
    return registry.uploads.writable(request.name, request.upload_id)
