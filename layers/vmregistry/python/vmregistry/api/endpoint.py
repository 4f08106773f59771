"""What every handler module shares: parsing, error mapping, instrumentation.

A handler module is three statements: ``endpoint = Endpoint("<operation>")``,
a function decorated with ``@endpoint.handle`` that takes a :class:`Request`
and returns a :class:`~vmregistry.api.response.Response`, and
``lambda_handler = endpoint.lambda_handler``. A function serves its operation
in both APIs; :attr:`Request.api` says which one a request came through, so
the handler answers in that API's wire format.

Routes that take a blob in their body (``body="stream"`` in the route table)
read it as :attr:`Request.payload`, a :class:`~vmregistry.registry.body.Body`:
the bytes API Gateway delivered, or, in local mode, the object the local
gateway streamed the body into, named under ``requestContext`` by
:data:`STAGED_BODY` (a field no client can set: API Gateway and the local
gateway build ``requestContext``). Such a handler may also declare
``@endpoint.admits``: the checks that need no body (a session that exists and
takes parts), which the local gateway runs before it accepts the body, so a
client sending ``Expect: 100-continue`` learns of a 4xx before sending gigabytes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from vmregistry import names, paths
from vmregistry.api import access
from vmregistry.api.observability import instrument, logger, metrics, metrics_enabled
from vmregistry.api.response import JSON, HttpResponse, Response
from vmregistry.auth.context import grants_of
from vmregistry.errors import RegistryError, error_body
from vmregistry.registry.body import Body
from vmregistry.routes import Action, Api, Route, routes_of
from vmregistry.runtime import get_settings
from vmregistry.storage import StorageFull, StorageUnavailable

__all__ = ["STAGED_BODY", "Endpoint", "Request", "error_response", "storage_error"]

STAGED_BODY = "vmregistryStagedBody"
"""``requestContext`` field naming a staged body: ``{"key", "size", "sha256"}`` (local mode only)."""


def error_response(error: RegistryError) -> HttpResponse:
    return Response(error.status, JSON, error_body(error), error.headers)


def storage_error(exc: StorageUnavailable | StorageFull) -> RegistryError:
    """What a client is told when storage cannot serve: retry later (503), or nothing was stored (507)."""
    if isinstance(exc, StorageFull):
        return RegistryError("STORAGE_FULL", f"{exc}; nothing was stored")
    return RegistryError("UNAVAILABLE", f"storage backend unavailable: {exc}; retry later")


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

    @property
    def payload(self) -> Body:
        """The body of a streamed route: staged in storage by the local gateway, or the bytes API Gateway sent."""
        staged = (self.event.get("requestContext") or {}).get(STAGED_BODY)
        if not staged:
            return Body(self.body)
        key = str(staged["key"])
        if not paths.is_staged_body_key(key):  # only the gateway writes this; still, never move another key
            raise ValueError(f"not a staged body: {key!r}")
        return Body.staged(key, int(staged["size"]), str(staged["sha256"]))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def api(self) -> Api:
        """``v1`` or ``v2`` (the OCI Distribution API): which wire format to answer in."""
        return self.route.api

    def query_all(self, name: str) -> list[str]:
        """Every value of a query parameter that may repeat (``?tag=a&tag=b``), in order."""
        values = (self.event.get("multiValueQueryStringParameters") or {}).get(name)
        if isinstance(values, list):
            return [str(value) for value in values]
        single = self.query.get(name)
        return [single] if single is not None else []

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
        access.check(request.route, request.name, request.authorizer, get_settings())
        return request

    def may(self, repository: str, action: Action) -> bool:
        """Does the caller's token grant ``action`` on another ``repository`` (a mount's source)?"""
        return access.may(self.authorizer, repository, action, get_settings())

    def name_prefixes(self, action: Action) -> list[str] | None:
        """Where the repository names the token grants ``action`` on start; ``None``: anywhere."""
        grants = grants_of(self.authorizer)
        return grants.name_prefixes(action) if grants is not None else None

    def name_filter(self, action: Action) -> Callable[[str], bool] | None:
        """Which repository names the caller may ``action``; ``None`` when it may every one (no token needed)."""
        if grants_of(self.authorizer) is None and not get_settings().auth_required:
            return None
        return lambda repository: self.may(repository, action)


class Endpoint:
    """One function of the route table: the routes it serves, and its error mapping.

    A function serves only its own routes, so there is almost nothing to
    resolve: API Gateway sends it only their requests, and anything else (a
    stack wired wrong, a test harness) is answered NOT_FOUND. Every failure
    becomes the registry's JSON error.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.routes = routes_of(operation)
        if not self.routes:
            raise LookupError(f"no route is served by the function {operation!r}")
        self._function: Callable[[Request], HttpResponse] | None = None
        self._admits: Callable[[Request], object] | None = None
        self.lambda_handler = instrument(self._entry)

    def _route(self, method: str, path: str) -> Route | None:
        for route in self.routes:
            if route.method == method and route.match(path) is not None:
                return route
        return None

    def _entry(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Respond, then count the request and its outcome (CloudWatch EMF, per operation)."""
        response = self.respond(event)
        if metrics_enabled():
            metrics.add_dimension(name="operation", value=self.operation)
            metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
            if response.status_code >= 400:
                outcome = "ServerErrors" if response.status_code >= 500 else "ClientErrors"
                metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
        return response.to_proxy()

    def handle(self, function: Callable[[Request], HttpResponse]) -> Callable[[Request], HttpResponse]:
        self._function = function
        return function

    def admits(self, function: Callable[[Request], object]) -> Callable[[Request], object]:
        """Declare the checks a request must pass before its body is worth receiving (raise to refuse)."""
        self._admits = function
        return function

    def respond(self, event: Mapping[str, Any]) -> HttpResponse:
        """The handler's answer to ``event``, or the registry error it raised."""
        function = self._function
        if function is None:
            return self._not_served()
        response: HttpResponse = self._guarded(event, function)
        return response

    def admit(self, event: Mapping[str, Any]) -> HttpResponse | None:
        """Before the body: ``None`` if the request may send it, else the error response (local mode)."""
        checks = self._admits
        refusal = self._guarded(event, lambda request: checks(request) if checks is not None else None)
        return refusal if isinstance(refusal, Response) else None

    def _not_served(self) -> HttpResponse:
        served = ", ".join(f"{r.method} {r.template}" for r in self.routes)
        return error_response(RegistryError("NOT_FOUND", f"this function serves {served}"))

    def _guarded(self, event: Mapping[str, Any], function: Callable[[Request], Any]) -> Any:
        """Parse and check the request, run ``function`` on it; every failure is the registry's error response."""
        route = self._route(str(event.get("httpMethod") or "").upper(), str(event.get("path") or ""))
        if route is None:
            return self._not_served()
        try:
            return function(Request.parse(route, event))
        except RegistryError as error:
            return error_response(error)
        except (StorageUnavailable, StorageFull) as exc:
            logger.error(
                "storage full" if isinstance(exc, StorageFull) else "storage unavailable", extra={"error": str(exc)}
            )
            return error_response(storage_error(exc))
        except Exception:
            logger.exception("unhandled error")
            return error_response(RegistryError("INTERNAL", "internal server error; the request id is in the logs"))
