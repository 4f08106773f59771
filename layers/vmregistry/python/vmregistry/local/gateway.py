"""API Gateway's part in local mode: an HTTP request in, the function's Lambda proxy answer out.

For each request it does what the deployed stack's API Gateway does: find the
route (404 without one, 405 when only the method is wrong), refuse a body over
API Gateway's payload limit, build the REST proxy event
(:mod:`vmregistry.local.events`), run the REQUEST authorizer step when tokens
are required (:mod:`vmregistry.local.gateway_auth`), and invoke the very
``lambda_handler`` the route's function deploys as. Paths under ``/_data/`` go
to the filesystem backend's data plane instead, as S3 requests would go to S3.

Where it differs from API Gateway: routes whose body is a blob (``body="stream"``
in the route table) take bodies of any size. For those, in this order:

1. route, build the event without a body, run the authorizer step;
2. run the function's ``admits`` checks (:meth:`Endpoint.admit
   <vmregistry.api.endpoint.Endpoint.admit>`: names, scopes, the upload session);
   a refusal is the answer, and a client that sent ``Expect: 100-continue``
   gets it before sending a byte of the body;
3. only then ask for the body (``100 Continue`` goes out here) and stream it
   into a staging object in storage (``uploads/<id>/body``, :mod:`vmregistry.paths`)
   through :meth:`Storage.receive <vmregistry.storage.base.Storage.receive>`:
   hashed while it arrives, never in memory, a multipart upload on S3;
4. invoke the function with the staged object named under
   ``requestContext`` (:data:`~vmregistry.api.endpoint.STAGED_BODY`), where
   it becomes a :class:`~vmregistry.registry.body.Body` the domain moves into
   place (a rename on the filesystem) if the digest matches;
5. remove the staged object if the function did not consume it (a wrong
   digest, an error): nothing is left behind.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from vmregistry import paths
from vmregistry.api.endpoint import STAGED_BODY, storage_error
from vmregistry.errors import RegistryError
from vmregistry.local.bodies import LengthReader, read_all
from vmregistry.local.dataplane import PREFIX as DATA_PREFIX
from vmregistry.local.dataplane import DataPlane
from vmregistry.local.events import LambdaContext, build_event, split_response
from vmregistry.local.http import Exchange, Reply
from vmregistry.local.token_service import TOKEN_PATH, TokenService
from vmregistry.routes import Route, find_route
from vmregistry.storage import Storage, StorageFull, StorageUnavailable
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
        storage: Storage | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.authorizer = authorizer
        self.origin_from_host = origin_from_host
        """Answer each client with data-plane URLs on the address it used (no public URL configured)."""
        self.storage = storage
        """Where streamed bodies are staged; without it they are read like small ones (API Gateway's limit)."""
        self._modules: dict[str, ModuleType] = {}
        self.token_service: TokenService | None = None
        """The development token endpoint at ``/auth/token`` (``serve -token-users``), off by default."""

    def __call__(self, exchange: Exchange) -> Reply:
        try:
            if self.dataplane is not None and exchange.path.startswith(DATA_PREFIX):
                return self.dataplane(exchange)
            if self.token_service is not None and exchange.path == TOKEN_PATH:  # the opt-in dev token endpoint
                body = self._read_body(exchange)
                return Reply(
                    *self.token_service(exchange.method, exchange.path, exchange.query_string, exchange.headers, body)
                )
            status, headers, body = self._invoke(exchange)
        except (StorageFull, StorageUnavailable) as exc:
            raise storage_error(exc) from None
        return Reply(status, headers, body)

    def module_for(self, route: Route) -> ModuleType:
        module = self._modules.get(route.operation)
        if module is None:
            module = importlib.import_module(route.module)
            self._modules[route.operation] = module
        return module

    def handler_for(self, route: Route) -> LambdaHandler:
        handler: LambdaHandler = self.module_for(route).lambda_handler
        return handler

    def _invoke(self, exchange: Exchange) -> tuple[int, list[tuple[str, str]], bytes]:
        path = exchange.path
        found = find_route(exchange.method, path)
        if found is None:
            raise RegistryError("NOT_FOUND", f"no route for {path}", {"path": path[:300]})
        if found is False:
            raise RegistryError("UNSUPPORTED", f"{exchange.method} is not allowed on {path}")
        route, params = found
        streamed = route.body == "stream" and self.storage is not None and exchange.has_body
        body = b"" if streamed else self._read_body(exchange)
        event = build_event(
            route, params, exchange.method, path, exchange.query_string, exchange.header_items, body, exchange.client
        )
        if self.origin_from_host:
            host = exchange.headers.get("host", "")
            request_origin.set(f"http://{host}" if _HOST_RE.fullmatch(host) else None)
        if self.authorizer is not None:
            event["requestContext"]["authorizer"] = dict(self.authorizer(event))
        context = LambdaContext(route.operation, event["requestContext"]["requestId"])
        if not streamed:
            return split_response(self.handler_for(route)(event, context))
        refusal = self.module_for(route).endpoint.admit(event)
        if refusal is not None:
            return split_response(refusal.to_proxy())
        key = self._stage(exchange, event)
        try:
            return split_response(self.handler_for(route)(event, context))
        finally:
            assert self.storage is not None
            self.storage.delete(key)  # a body the function did not move into place (a wrong digest, an error)

    def _stage(self, exchange: Exchange, event: dict[str, Any]) -> str:
        """Stream the body into a staging object and name it in the event; its key."""
        assert self.storage is not None
        reader = exchange.body_reader()  # a client waiting on Expect: 100-continue is told to go on here
        assert reader is not None
        key = paths.staged_body_key(str(uuid.uuid4()))
        length = reader.remaining if isinstance(reader, LengthReader) else None
        info = self.storage.receive(key, reader, length)
        event["requestContext"][STAGED_BODY] = {"key": key, "size": info.size, "sha256": info.sha256}
        return key

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
        return read_all(reader, API_GATEWAY_MAX_BODY)  # longer (chunked): BodyTooLarge, a 413
