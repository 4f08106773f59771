"""Where verification of large uploads runs in AWS, once the API has answered.

``upload_complete`` must answer within API Gateway's 29 seconds, but hashing a
multi-GB object read back from S3 takes longer. It hands the job to a
:data:`~vmregistry.registry.UploadVerifier`: here, an asynchronous invocation of the
``blob_verify`` worker function (it may run for 15 minutes). Local mode runs
the same worker on a thread (:mod:`vmregistry.local.verifier`).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from vmregistry.registry import UploadVerifier

__all__ = ["lambda_verifier"]


def lambda_verifier(function_name: str) -> UploadVerifier:
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
