"""The route table: every ``/v1`` operation, once.

The local server dispatches with it, each Lambda handler matches its own path
with it, the authorizer maps a request to the action it needs with it, and the
CDK stack generates API Gateway resources, one function per operation and
each function's storage grants from it. Nothing else lists the operations.

Repository names contain ``/``, and API Gateway allows a greedy ``{proxy+}``
only as the last path segment, so a template's ``{name}`` is expanded per
repository depth for API Gateway (:meth:`Route.resource`:
``/v1/{name1}/{name2}/blobs/{digest}``), while handlers and the local server
re-match the concrete path with :meth:`Route.match`, which accepts any depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NamedTuple

__all__ = ["ROUTES", "WORKERS", "Action", "Grant", "Route", "Worker", "find_route", "route_by_operation"]

Action = Literal["pull", "push", "delete"]
"""What a token must grant on the repository. ``None`` on a route means "any valid token"."""

Grant = Literal["read", "write", "delete"]
"""What the operation's function may do to storage (least privilege in the stack)."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# ``name`` spans path segments; the anchored suffix after it keeps matching unambiguous.
_PATTERNS = {"name": ".+", "digest": "[^/]+", "reference": "[^/]+", "uuid": "[^/]+"}


@dataclass(frozen=True)  # no slots: cached_property keeps the compiled regex in __dict__
class Route:
    operation: str
    method: str
    template: str
    action: Action | None
    grants: frozenset[Grant]
    summary: str
    trailing_slash: bool = field(default=False)
    """Accept the path with and without a final '/' (``POST .../blobs/uploads/``)."""

    @property
    def module(self) -> str:
        return f"vmregistry_functions.{self.operation}"

    @property
    def handler(self) -> str:
        """The Lambda handler string, relative to the ``functions/`` asset."""
        return f"{self.module}.lambda_handler"

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


def _route(
    operation: str,
    method: str,
    template: str,
    action: Action | None,
    grants: set[Grant],
    summary: str,
    *,
    trailing_slash: bool = False,
) -> Route:
    return Route(operation, method, template, action, frozenset(grants), summary, trailing_slash)


# Order matters only to readers: no concrete path matches two routes with one method.
ROUTES: tuple[Route, ...] = (
    _route("version_check", "GET", "/v1/", None, set(), "API version check", trailing_slash=False),
    _route("catalog_list", "GET", "/v1/_catalog", None, {"read"}, "List repositories the caller may pull"),
    _route("tags_list", "GET", "/v1/{name}/tags/list", "pull", {"read"}, "List a repository's tags"),
    _route("blob_head", "HEAD", "/v1/{name}/blobs/{digest}", "pull", {"read"}, "Blob existence and size"),
    _route("blob_get", "GET", "/v1/{name}/blobs/{digest}", "pull", {"read"}, "Redirect to the blob's bytes"),
    _route("blob_put", "PUT", "/v1/{name}/blobs/{digest}", "push", {"read", "write"}, "Upload a small blob inline"),
    _route(
        "blob_delete",
        "DELETE",
        "/v1/{name}/blobs/{digest}",
        "delete",
        {"read", "delete"},
        "Remove a blob from a repository",
    ),
    _route(
        "upload_start",
        "POST",
        "/v1/{name}/blobs/uploads",
        "push",
        {"read", "write"},
        "Start an upload (or mount, or upload monolithically)",
        trailing_slash=True,
    ),
    _route(
        "upload_patch",
        "PATCH",
        "/v1/{name}/blobs/uploads/{uuid}",
        "push",
        {"read", "write"},
        "Upload a part inline or get presigned part URLs",
    ),
    _route("upload_status", "GET", "/v1/{name}/blobs/uploads/{uuid}", "push", {"read"}, "Upload progress, to resume"),
    _route(
        "upload_complete",
        "PUT",
        "/v1/{name}/blobs/uploads/{uuid}",
        "push",
        {"read", "write", "delete"},
        "Verify the digest and publish the blob",
    ),
    _route(
        "upload_cancel",
        "DELETE",
        "/v1/{name}/blobs/uploads/{uuid}",
        "push",
        {"read", "write", "delete"},
        "Abandon an upload",
    ),
    _route(
        "manifest_head", "HEAD", "/v1/{name}/manifests/{reference}", "pull", {"read"}, "Manifest existence and digest"
    ),
    _route("manifest_get", "GET", "/v1/{name}/manifests/{reference}", "pull", {"read"}, "Fetch a manifest"),
    _route(
        "manifest_put",
        "PUT",
        "/v1/{name}/manifests/{reference}",
        "push",
        {"read", "write"},
        "Store a manifest by tag or digest",
    ),
    _route(
        "manifest_delete",
        "DELETE",
        "/v1/{name}/manifests/{reference}",
        "delete",
        {"read", "delete"},
        "Delete a tag, or a manifest and its tags",
    ),
)


class Worker(NamedTuple):
    """A function that no HTTP route reaches: operations invoke it asynchronously."""

    operation: str
    grants: frozenset[Grant]
    invoked_by: frozenset[str]
    """Operations that may invoke it (the stack grants them lambda:InvokeFunction and names it in
    their ``VMREGISTRY_VERIFY_FUNCTION``)."""
    timeout_seconds: int
    summary: str

    @property
    def module(self) -> str:
        return f"vmregistry_functions.{self.operation}"

    @property
    def handler(self) -> str:
        return f"{self.module}.lambda_handler"


WORKERS: tuple[Worker, ...] = (
    Worker(
        "blob_verify",
        frozenset({"read", "write", "delete"}),
        frozenset({"upload_complete"}),
        900,
        "Hash a large joined upload and publish it under its digest",
    ),
)

_BY_OPERATION = {route.operation: route for route in ROUTES}


def route_by_operation(operation: str) -> Route:
    return _BY_OPERATION[operation]


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
