"""What every /v1 handler module shares: parsing, error mapping, instrumentation.

A handler module is three statements: ``endpoint = Endpoint("<operation>")``,
a function decorated with ``@endpoint.handle`` that takes a :class:`Request`
and returns a Powertools ``Response``, and ``lambda_handler = endpoint.lambda_handler``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

from vmregistry import names
from vmregistry.api import access
from vmregistry.api.observability import instrument, logger, metrics, metrics_enabled
from vmregistry.errors import RegistryError, error_body
from vmregistry.routes import Route, route_by_operation
from vmregistry.storage import StorageUnavailable

__all__ = ["Endpoint", "HttpResponse", "Request", "Response", "json_response"]

JSON = "application/json"

HttpResponse = Response[Any]
"""What a handler returns (Powertools' Response, whatever the body type)."""


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return Response(status, JSON, json.dumps(body, separators=(",", ":")), dict(headers or {}))


def error_response(error: RegistryError) -> HttpResponse:
    return Response(error.status, JSON, error_body(error), error.headers)


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed, validated API request."""

    route: Route
    event: Mapping[str, Any]
    params: dict[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    authorizer: Mapping[str, Any] | None
    name: str = ""
    digest: str = ""
    reference: str = ""
    upload_id: str = ""
    _body: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        if not self._body:
            raw = self.event.get("body") or ""
            self._body.append(base64.b64decode(raw) if self.event.get("isBase64Encoded") else raw.encode())
        return self._body[0]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def base_path(self) -> str:
        """What precedes ``/v1`` in the client's URL (the stage on a default API Gateway endpoint)."""
        full = str((self.event.get("requestContext") or {}).get("path") or "")
        path = str(self.event.get("path") or "")
        return full[: -len(path)] if path and full.endswith(path) else ""

    def url(self, path: str) -> str:
        return self.base_path + path

    @classmethod
    def parse(cls, route: Route, event: Mapping[str, Any]) -> Request:
        params = route.match(str(event.get("path") or "")) or {}
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if isinstance(v, str)}
        context = event.get("requestContext") or {}
        request = cls(
            route=route,
            event=event,
            params=params,
            query=event.get("queryStringParameters") or {},
            headers=headers,
            authorizer=context.get("authorizer"),
            # Validate in path order so the first bad component is the one reported.
            name=names.parse_name(params["name"]) if "name" in params else "",
            digest=names.parse_digest(params["digest"]) if "digest" in params else "",
            reference=names.parse_reference(params["reference"]) if "reference" in params else "",
            upload_id=names.parse_upload_id(params["uuid"]) if "uuid" in params else "",
        )
        access.check(request.route, request.name, request.authorizer)
        return request


class Endpoint:
    """The Powertools resolver for one operation of the route table."""

    def __init__(self, operation: str) -> None:
        self.route = route_by_operation(operation)
        self.app = APIGatewayRestResolver()
        self.app.exception_handler(RegistryError)(error_response)
        self.app.exception_handler(StorageUnavailable)(self._unavailable)
        self.app.exception_handler(Exception)(self._internal)
        self.app.not_found(self._not_found)
        self.lambda_handler = instrument(self._entry)

    def _entry(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Resolve, then count the request and its outcome (CloudWatch EMF, per operation)."""
        response = self.app.resolve(event, context)
        if not metrics_enabled():
            return response
        status = int(response.get("statusCode", 500))
        metrics.add_dimension(name="operation", value=self.route.operation)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if status >= 400:
            metrics.add_metric(name="ServerErrors" if status >= 500 else "ClientErrors", unit=MetricUnit.Count, value=1)
        return response

    def handle(self, function: Callable[[Request], HttpResponse]) -> Callable[[Request], HttpResponse]:
        route = self.route

        def resolved() -> HttpResponse:
            return function(Request.parse(route, self.app.current_event.raw_event))

        self.app.route(route.rule, method=route.method)(resolved)
        return function

    @staticmethod
    def _unavailable(exc: StorageUnavailable) -> HttpResponse:
        logger.error("storage unavailable", extra={"error": str(exc)})
        return error_response(RegistryError("UNAVAILABLE", f"storage backend unavailable: {exc}; retry later"))

    @staticmethod
    def _internal(exc: Exception) -> HttpResponse:
        logger.exception("unhandled error")
        return error_response(RegistryError("INTERNAL", "internal server error; the request id is in the logs"))

    def _not_found(self, exc: Exception) -> HttpResponse:
        return error_response(
            RegistryError("NOT_FOUND", f"this function serves {self.route.method} {self.route.template}")
        )
