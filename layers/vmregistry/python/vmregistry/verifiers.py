"""Where verification of large uploads runs, once the API has answered.

``upload_complete`` must answer within API Gateway's 29 seconds, but hashing a
multi-GB object read back from S3 takes longer. It hands the job to a
:data:`~vmregistry.registry.Verifier`: in AWS an asynchronous invocation of the
``blob_verify`` worker function (it may run for 15 minutes); in local mode a
background thread that calls the same worker handler with the same payload.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vmregistry.registry import Verifier

__all__ = ["WORKER_MODULE", "lambda_verifier", "thread_verifier"]

WORKER_MODULE = "vmregistry_functions.blob_verify"
log = logging.getLogger("vmregistry.verifiers")


def lambda_verifier(function_name: str) -> Verifier:
    """Invoke the worker function asynchronously (Lambda queues and retries the event)."""
    lock = threading.Lock()
    client: list[Any] = []

    def dispatch(job: dict[str, str]) -> None:
        with lock:
            if not client:
                import boto3  # only the function that dispatches pays for the Lambda client

                client.append(boto3.client("lambda"))
        client[0].invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(job).encode())

    return dispatch


def thread_verifier(max_workers: int = 2) -> Verifier:
    """Run the worker handler in this process, off the request thread (local mode)."""
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="blob-verify")

    def run(job: dict[str, str]) -> None:
        from vmregistry.local.events import LambdaContext

        try:
            handler = importlib.import_module(WORKER_MODULE).lambda_handler
            handler(dict(job), LambdaContext("blob_verify", str(uuid.uuid4())))
        except Exception:
            log.exception("verification of upload %s failed", job.get("uuid"))

    def dispatch(job: dict[str, str]) -> None:
        executor.submit(run, job)

    return dispatch
