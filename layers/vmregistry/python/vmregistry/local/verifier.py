"""Verification of large uploads in local mode: the ``blob_verify`` worker on a background thread.

In AWS, ``upload_complete`` invokes the ``blob_verify`` function
asynchronously (:func:`vmregistry.verifiers.lambda_verifier`); locally the
same worker handler runs in this process, off the request thread, with the
same payload, so both paths run one piece of code.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

from vmregistry.local.events import LambdaContext
from vmregistry.registry import UploadVerifier
from vmregistry.routes import function

__all__ = ["thread_verifier"]

log = logging.getLogger("vmregistry.local.verifier")
WORKER = function("blob_verify")


def thread_verifier(max_workers: int = 2) -> UploadVerifier:
    """Run the worker handler in this process, off the request thread."""
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="blob-verify")

    def run(job: dict[str, str]) -> None:
        try:
            handler = importlib.import_module(WORKER.module).lambda_handler
            handler(dict(job), LambdaContext(WORKER.name, str(uuid.uuid4())))
        except Exception:
            log.exception("verification of upload %s failed", job.get("uuid"))

    def dispatch(job: dict[str, str]) -> None:
        executor.submit(run, job)

    return dispatch
