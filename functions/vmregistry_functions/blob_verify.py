"""Worker, not an HTTP route: verify a large joined upload and publish it (or record why not).

Invoked asynchronously by ``upload_complete`` with ``{"repository", "uuid", "digest"}``.
The outcome is visible to the client through the API: HEAD on the blob turns
200, or GET on the upload session reports ``state: failed`` with the error.
"""

from __future__ import annotations

from typing import Any

from vmregistry import coldstart
from vmregistry.api.observability import logger, tracer
from vmregistry.errors import RegistryError
from vmregistry.runtime import get_registry


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    repository, upload_id, digest = str(event["repository"]), str(event["uuid"]), str(event["digest"])
    try:
        blob = get_registry().uploads.finish_verification(repository, upload_id, digest)
    except RegistryError as error:
        # The session vanished or moved on (cancelled, swept, verified by a retry): nothing to do.
        logger.warning("verification skipped", extra={"uuid": upload_id, "code": error.code})
        return {"state": "skipped", "code": error.code}
    state = "published" if blob is not None else "failed"
    logger.info("verification finished", extra={"uuid": upload_id, "digest": digest, "state": state})
    return {"state": state}


# The module has loaded: end the init the functions package paused (API handlers, in instrument).
coldstart.resume()
