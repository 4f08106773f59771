"""The adapter: an HTTP request in, the API Gateway REST proxy event out, and back.

The event carries what API Gateway (REST API, Lambda proxy integration, binary
media types ``*/*``) would send: the resource as the stack declares it for the
repository's depth, path parameters split the same way, single- and
multi-value headers and query strings, the body base64-encoded, and a request
context with ids, the client's address and, when an authorizer ran, its
context. Tests build events with the same function, so handler tests and the
local server exercise one shape.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from vmregistry.routes import Route

__all__ = ["LambdaContext", "build_event", "split_response"]

STAGE = "local"


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def build_event(
    route: Route | None,
    params: Mapping[str, str],
    method: str,
    path: str,
    query_string: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    source_ip: str = "127.0.0.1",
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    header_pairs = list(headers)
    query_pairs = parse_qsl(query_string, keep_blank_values=True)
    multi_headers = _multi(header_pairs)
    multi_query = _multi(query_pairs)
    depth = len(params["name"].split("/")) if "name" in params else 0
    resource = route.resource(depth) if route is not None else path
    now = time.time()
    context: dict[str, Any] = {
        "resourceId": "local",
        "resourcePath": resource,
        "httpMethod": method,
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "path": path,
        "accountId": "000000000000",
        "protocol": "HTTP/1.1",
        "stage": STAGE,
        "domainPrefix": "localhost",
        "requestTimeEpoch": int(now * 1000),
        "requestId": str(uuid.uuid4()),
        "identity": {
            "sourceIp": source_ip,
            "userAgent": multi_headers.get("User-Agent", multi_headers.get("user-agent", [""]))[-1],
        },
        "domainName": "localhost",
        "apiId": "local",
    }
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": (route.path_parameters(dict(params)) if route is not None else None) or None,
        "stageVariables": None,
        "requestContext": context,
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


def split_response(response: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy response as (status, headers, body)."""
    status = int(response.get("statusCode", 502))
    headers: list[tuple[str, str]] = []
    multi = response.get("multiValueHeaders") or {}
    for key, values in multi.items():
        headers.extend((key, str(v)) for v in values)
    for key, value in (response.get("headers") or {}).items():
        if key not in multi:
            headers.append((key, str(value)))
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    return status, headers, body


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """The attributes of Lambda's context object that Powertools and handlers read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "/vmregistry/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
