"""What a handler returns, and the Lambda proxy response it becomes.

API Gateway's REST proxy integration takes ``statusCode``, ``body``,
``isBase64Encoded`` and ``multiValueHeaders`` (every header a list, so a name
may repeat); binary bodies travel base64-encoded. This is the dict Powertools'
REST resolver builds for its ``Response``, so clients and the local server's
:func:`~vmregistry.local.events.split_response` see the same thing; it is made
here because each function serves one route, and the resolver (with the
AppSync, asyncio and OpenAPI machinery its package imports) cost ~0.2 s of
every cold start for nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["JSON", "HttpResponse", "Response", "json_response"]

JSON = "application/json"


class Response:
    """A status, headers and a body; ``bytes`` bodies are sent base64-encoded.

    ``content_type`` is a shorthand for the ``Content-Type`` header; a
    ``Content-Type`` in ``headers`` wins over it.
    """

    __slots__ = ("body", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})
        if content_type:
            self.headers.setdefault("Content-Type", content_type)

    def to_proxy(self) -> dict[str, Any]:
        """The Lambda proxy integration response API Gateway turns into HTTP."""
        binary = isinstance(self.body, bytes)
        return {
            "statusCode": self.status_code,
            "body": base64.b64encode(self.body).decode() if isinstance(self.body, bytes) else self.body,
            "isBase64Encoded": binary,
            "multiValueHeaders": {name: [value] for name, value in self.headers.items()},
        }


HttpResponse = Response
"""The name handler signatures use for what they return."""


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, JSON, json.dumps(body, separators=(",", ":")), headers)
