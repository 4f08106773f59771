"""API Gateway's part in local mode: an HTTP request in, the function's Lambda proxy answer out.

For each request it does what the deployed stack's API Gateway does: find the
route (404 without one, 405 when only the method is wrong), refuse a body over
API Gateway's payload limit, build the REST proxy event
(:mod:`vmregistry.local.events`), run the REQUEST authorizer step when tokens
are required (:mod:`vmregistry.local.gateway_auth`), and invoke the very
``lambda_handler`` the route's function deploys as. Paths under ``/_data/`` go
to the filesystem backend's data plane instead, as S3 requests would go to S3.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from vmregistry.errors import RegistryError
from vmregistry.local.bodies import BodyError, LengthReader, read_all
from vmregistry.local.dataplane import PREFIX as DATA_PREFIX
from vmregistry.local.dataplane import DataPlane
from vmregistry.local.events import LambdaContext, build_event, split_response
from vmregistry.local.http import Exchange, Reply
from vmregistry.local.token_service import TOKEN_PATH, TokenService
from vmregistry.routes import Route, find_route
from vmregistry.storage.signing import request_origin

__all__ = ["API_GATEWAY_MAX_BODY", "Authorizer", "Gateway"]

# API Gateway refuses request payloads over 10 MB before any Lambda runs.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024

# host[:port] as a client may put it in the Host header (names, IPv4, bracketed IPv6).
_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

Authorizer = Callable[[dict[str, Any]], Mapping[str, Any]]
"""Runs API Gateway's REQUEST authorizer step on an event: returns the context
to put under ``requestContext.authorizer`` or raises a 401/403 RegistryError."""

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class Gateway:
    """The application the local HTTP server runs: routes, events, authorizer, handlers, data plane."""

    def __init__(
        self,
        *,
        dataplane: DataPlane | None = None,
        authorizer: Authorizer | None = None,
        origin_from_host: bool = False,
    ) -> None:
        self.dataplane = dataplane
        self.authorizer = authorizer
        self.origin_from_host = origin_from_host
        """Answer each client with data-plane URLs on the address it used (no public URL configured)."""
        self._handlers: dict[str, LambdaHandler] = {}
        self.token_service: TokenService | None = None
        """The development token endpoint at ``/auth/token`` (``serve -token-users``), off by default."""

    def __call__(self, exchange: Exchange) -> Reply:
        if self.dataplane is not None and exchange.path.startswith(DATA_PREFIX):
            return self.dataplane(exchange)
        if self.token_service is not None and exchange.path == TOKEN_PATH:  # the opt-in dev token endpoint
            body = self._read_body(exchange)
            return Reply(
                *self.token_service(exchange.method, exchange.path, exchange.query_string, exchange.headers, body)
            )
        status, headers, body = self._invoke(exchange)
        return Reply(status, headers, body)

    def handler_for(self, route: Route) -> LambdaHandler:
        handler = self._handlers.get(route.operation)
        if handler is None:
            handler = importlib.import_module(route.module).lambda_handler
            self._handlers[route.operation] = handler
        return handler

    def _invoke(self, exchange: Exchange) -> tuple[int, list[tuple[str, str]], bytes]:
        path = exchange.path
        found = find_route(exchange.method, path)
        if found is None:
            raise RegistryError("NOT_FOUND", f"no route for {path}", {"path": path[:300]})
        if found is False:
            raise RegistryError("UNSUPPORTED", f"{exchange.method} is not allowed on {path}")
        route, params = found
        body = self._read_body(exchange)
        event = build_event(
            route, params, exchange.method, path, exchange.query_string, exchange.header_items, body, exchange.client
        )
        if self.origin_from_host:
            host = exchange.headers.get("host", "")
            request_origin.set(f"http://{host}" if _HOST_RE.fullmatch(host) else None)
        if self.authorizer is not None:
            event["requestContext"]["authorizer"] = dict(self.authorizer(event))
        response = self.handler_for(route)(event, LambdaContext(route.operation, event["requestContext"]["requestId"]))
        return split_response(response)

    @staticmethod
    def _read_body(exchange: Exchange) -> bytes:
        reader = exchange.body_reader()
        if reader is None:
            return b""
        if isinstance(reader, LengthReader) and reader.remaining > API_GATEWAY_MAX_BODY:
            raise RegistryError(
                "TOO_LARGE",
                f"request bodies are limited to {API_GATEWAY_MAX_BODY} bytes; send blobs with the upload flow",
            )
        try:
            return read_all(reader, API_GATEWAY_MAX_BODY)
        except BodyError as exc:
            raise RegistryError("TOO_LARGE", str(exc)) from None
