"""The function and route tables: every Lambda function and every HTTP operation, once.

:data:`FUNCTIONS` lists every function the registry deploys: one per API
operation, the background workers that operations invoke, and the JWT
authorizer. :data:`ROUTES` lists the HTTP operations and names the function
that serves each. The local server dispatches with them, each Lambda handler
matches its own paths with them, the authorizer maps a request to the action it
needs with them, and the CDK stack declares its functions, their storage grants
and the API Gateway resources from them. Nothing else lists functions or
operations: adding a route, a worker or an authorizer touches this file only.

Repository names contain ``/``, and API Gateway allows a greedy ``{proxy+}``
only as the last path segment, so a template's ``{name}`` is expanded per
repository depth for API Gateway (:meth:`Route.resource`:
``/v1/{name1}/{name2}/blobs/{digest}``), while handlers and the local server
re-match the concrete path with :meth:`Route.match`, which accepts any depth.

Two APIs, one set of functions: ``/v1`` (the registry's own) and ``/v2`` (the
OCI Distribution API). A ``/v2`` route that does what a ``/v1`` route does is
served by the same function (:attr:`Route.api` tells the handler which wire
format to answer in), so the stack deploys one function per operation, not
per API. Operations only one API has (``PUT /v1/<name>/blobs/<digest>``, the
referrers API) have only their route.

A route's ``body`` says how its request body travels. ``small`` (the default):
read whole, at most API Gateway's 10 MB, and handed to the function in the
event, as API Gateway does. ``stream``: the body is a blob of any size, which
the local server streams into storage before it invokes the function (see
:mod:`vmregistry.local.gateway`); in AWS, API Gateway's limits still apply.
Routes without a body need no kind of their own: API Gateway passes a body
to any method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal, NamedTuple

__all__ = [
    "API_TIMEOUT_SECONDS",
    "AUTHORIZER",
    "FUNCTIONS",
    "ROUTES",
    "Action",
    "Api",
    "BodyKind",
    "Function",
    "FunctionKind",
    "Grant",
    "Route",
    "find_route",
    "function",
    "routes_of",
    "workers",
]

Action = Literal["pull", "push", "delete"]
"""What a token must grant on the repository. ``None`` on a route means "any valid token"."""

Grant = Literal["read", "write", "delete"]
"""What a function may do to storage (least privilege in the stack)."""

FunctionKind = Literal["api", "worker", "authorizer"]

Api = Literal["v1", "v2"]
"""Which API a route belongs to: the registry's own (``/v1``) or the OCI Distribution API (``/v2``)."""
BodyKind = Literal["small", "stream"]
"""How a route's request body travels (see the module docstring)."""

API_TIMEOUT_SECONDS = 29
"""API Gateway gives up on an integration after 29 s; running longer only bills."""

WORKER_MEMORY_MB = 1769
"""The size at which Lambda gives a function one full vCPU, which hashing large blobs uses."""


class Function(NamedTuple):
    """One Lambda function: a module of ``vmregistry_functions`` with a ``lambda_handler``."""

    name: str
    kind: FunctionKind
    grants: frozenset[Grant]
    summary: str
    timeout_seconds: int = API_TIMEOUT_SECONDS
    memory_mb: int | None = None
    """``None``: the deployment's ``memorySize``."""
    invoked_by: frozenset[str] = frozenset()
    """Functions that invoke this one asynchronously (workers): the stack lets them, and tells
    them its name through :attr:`setting`."""
    setting: str | None = None
    """The setting (:mod:`vmregistry.config`) through which invokers learn this function's name."""

    @property
    def module(self) -> str:
        return f"vmregistry_functions.{self.name}"

    @property
    def handler(self) -> str:
        """The Lambda handler string, relative to the ``functions/`` asset."""
        return f"{self.module}.lambda_handler"


def _api(name: str, grants: set[Grant], summary: str) -> Function:
    return Function(name, "api", frozenset(grants), summary)


FUNCTIONS: tuple[Function, ...] = (
    _api("version_check", set(), "API version check"),
    _api("catalog_list", {"read"}, "List repositories the caller may pull"),
    _api("tags_list", {"read"}, "List a repository's tags"),
    _api("blob_head", {"read"}, "Blob existence and size"),
    _api("blob_get", {"read"}, "Redirect to the blob's bytes"),
    _api("blob_put", {"read", "write"}, "Upload a blob whole"),
    _api("blob_delete", {"read", "delete"}, "Remove a blob from a repository"),
    _api("upload_start", {"read", "write"}, "Start an upload (or mount, or upload monolithically)"),
    _api("upload_patch", {"read", "write"}, "Upload a part inline or get presigned part URLs"),
    _api("upload_status", {"read"}, "Upload progress, to resume"),
    _api("upload_complete", {"read", "write", "delete"}, "Verify the digest and publish the blob"),
    _api("upload_cancel", {"read", "write", "delete"}, "Abandon an upload"),
    _api("manifest_head", {"read"}, "Manifest existence and digest"),
    _api("manifest_get", {"read"}, "Fetch a manifest"),
    # A full vCPU: validating a manifest of MAX_DESCRIPTORS distinct blobs makes as many storage
    # lookups (registry/references.py), ~1.5 ms of CPU each in boto3; at the default 512 MB (a
    # third of a vCPU) that alone would be ~18 s of API Gateway's 29.
    Function(
        "manifest_put",
        "api",
        frozenset({"read", "write"}),
        "Store a manifest by tag or digest",
        memory_mb=WORKER_MEMORY_MB,
    ),
    _api("manifest_delete", {"read", "delete"}, "Delete a tag, or a manifest and its tags"),
    _api("referrers_list", {"read"}, "List the manifests that refer to a manifest (OCI referrers API)"),
    Function(
        "blob_verify",
        "worker",
        frozenset({"read", "write", "delete"}),
        "Hash a large joined upload and publish it under its digest",
        timeout_seconds=900,
        memory_mb=WORKER_MEMORY_MB,
        invoked_by=frozenset({"upload_complete"}),
        setting="verify_function",
    ),
    Function(
        "garbage_collect",
        "worker",
        frozenset({"read", "write", "delete"}),
        "Scheduled garbage collection: free what no manifest references",
        timeout_seconds=900,
        memory_mb=WORKER_MEMORY_MB,
    ),
    Function("authorizer", "authorizer", frozenset(), "JWT REQUEST authorizer"),
)

_BY_NAME = {f.name: f for f in FUNCTIONS}

AUTHORIZER = _BY_NAME["authorizer"]


def function(name: str) -> Function:
    return _BY_NAME[name]


def workers() -> tuple[Function, ...]:
    return tuple(f for f in FUNCTIONS if f.kind == "worker")


_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# ``name`` spans path segments; the anchored suffix after it keeps matching unambiguous.
_PATTERNS = {"name": ".+", "digest": "[^/]+", "reference": "[^/]+", "uuid": "[^/]+"}


@dataclass(frozen=True)  # no slots: cached_property keeps the compiled regex in __dict__
class Route:
    operation: str
    """The function (:data:`FUNCTIONS`) that serves this route."""
    method: str
    template: str
    action: Action | None
    summary: str
    trailing_slash: bool = field(default=False)
    """Accept the path with and without a final '/' (``POST .../blobs/uploads/``)."""
    body: BodyKind = field(default="small")
    """``stream``: the body is a blob of any size, streamed into storage by the local server."""

    @property
    def function(self) -> Function:
        return _BY_NAME[self.operation]

    @property
    def api(self) -> Api:
        return "v2" if self.template.startswith("/v2/") else "v1"

    @property
    def grants(self) -> frozenset[Grant]:
        return self.function.grants

    @property
    def module(self) -> str:
        return self.function.module

    @property
    def handler(self) -> str:
        return self.function.handler

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        pattern = _PLACEHOLDER.sub(
            lambda m: f"(?P<{m.group(1)}>{_PATTERNS[m.group(1)]})",
            re.escape(self.template).replace(r"\{", "{").replace(r"\}", "}"),
        )
        return re.compile(pattern + ("/?" if self.trailing_slash else ""))

    def match(self, path: str) -> dict[str, str] | None:
        found = self._regex.fullmatch(path)
        return found.groupdict() if found else None

    @property
    def has_name(self) -> bool:
        return "{name}" in self.template

    def resource(self, depth: int) -> str:
        """The API Gateway resource path for repository names of ``depth`` components."""
        if not self.has_name:
            return self.template
        names = "/".join(f"{{name{i}}}" for i in range(1, depth + 1))
        return self.template.replace("{name}", names)

    def path_parameters(self, params: dict[str, str]) -> dict[str, str]:
        """What API Gateway puts in ``pathParameters`` for this route's resource."""
        out = {k: v for k, v in params.items() if k != "name"}
        if "name" in params:
            for i, component in enumerate(params["name"].split("/"), start=1):
                out[f"name{i}"] = component
        return out


# Order matters only to readers: no concrete path matches two routes with one method.
_V1_ROUTES: tuple[Route, ...] = (
    Route("version_check", "GET", "/v1/", None, "API version check"),
    Route("catalog_list", "GET", "/v1/_catalog", None, "List repositories the caller may pull"),
    Route("tags_list", "GET", "/v1/{name}/tags/list", "pull", "List a repository's tags"),
    Route("blob_head", "HEAD", "/v1/{name}/blobs/{digest}", "pull", "Blob existence and size"),
    Route("blob_get", "GET", "/v1/{name}/blobs/{digest}", "pull", "Redirect to the blob's bytes"),
    Route("blob_put", "PUT", "/v1/{name}/blobs/{digest}", "push", "Upload a blob whole", body="stream"),
    Route("blob_delete", "DELETE", "/v1/{name}/blobs/{digest}", "delete", "Remove a blob from a repository"),
    Route(
        "upload_start",
        "POST",
        "/v1/{name}/blobs/uploads",
        "push",
        "Start an upload (or mount, or upload monolithically)",
        trailing_slash=True,
        body="stream",
    ),
    Route(
        "upload_patch",
        "PATCH",
        "/v1/{name}/blobs/uploads/{uuid}",
        "push",
        "Upload a part or get part URLs",
        body="stream",
    ),
    Route("upload_status", "GET", "/v1/{name}/blobs/uploads/{uuid}", "push", "Upload progress, to resume"),
    Route(
        "upload_complete",
        "PUT",
        "/v1/{name}/blobs/uploads/{uuid}",
        "push",
        "Verify the digest and publish",
        body="stream",
    ),
    Route("upload_cancel", "DELETE", "/v1/{name}/blobs/uploads/{uuid}", "push", "Abandon an upload"),
    Route("manifest_head", "HEAD", "/v1/{name}/manifests/{reference}", "pull", "Manifest existence and digest"),
    Route("manifest_get", "GET", "/v1/{name}/manifests/{reference}", "pull", "Fetch a manifest"),
    Route("manifest_put", "PUT", "/v1/{name}/manifests/{reference}", "push", "Store a manifest by tag or digest"),
    Route(
        "manifest_delete",
        "DELETE",
        "/v1/{name}/manifests/{reference}",
        "delete",
        "Delete a tag, or a manifest and its tags",
    ),
)

_V1_ONLY = frozenset({"blob_put"})
"""``/v1`` operations the OCI API has no twin of (an OCI blob always goes through an upload)."""


def _twin(route: Route) -> Route:
    """The ``/v2`` route of the OCI operation that ``route`` performs in ``/v1``: same function, same action."""
    return replace(route, template="/v2/" + route.template.removeprefix("/v1/"))


ROUTES: tuple[Route, ...] = (
    *_V1_ROUTES,
    *(_twin(route) for route in _V1_ROUTES if route.operation not in _V1_ONLY),
    Route(
        "referrers_list",
        "GET",
        "/v2/{name}/referrers/{digest}",
        "pull",
        "List the manifests whose subject is a digest",
    ),
)

_BY_FUNCTION: dict[str, tuple[Route, ...]] = {}
for _route in ROUTES:
    _BY_FUNCTION[_route.operation] = (*_BY_FUNCTION.get(_route.operation, ()), _route)
del _route


def routes_of(name: str) -> tuple[Route, ...]:
    """The routes the function ``name`` serves (none for workers and the authorizer)."""
    return _BY_FUNCTION.get(name, ())


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | Literal[False] | None:
    """The route serving ``method path`` and its parameters.

    ``None`` when no route has that path, ``False`` when routes have the path
    but not the method (405 rather than 404).
    """
    path_known = False
    for route in ROUTES:
        params = route.match(path)
        if params is None:
            continue
        if route.method == method:
            return route, params
        path_known = True
    return False if path_known else None
