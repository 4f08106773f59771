"""API Gateway's side of authorization: IAM policies, method ARNs, the result cache, challenges.

The cache design (read this before changing a policy or an identity source)
---------------------------------------------------------------------------
API Gateway caches a REQUEST authorizer's answer (policy *and* context) under
a key made of the values of its identity sources, and for the next request
with the same key it evaluates the cached policy against *that* request's
method ARN without calling the authorizer. Two designs stay correct under
that cache: a policy listing everything the token grants across all routes,
or a cache key that already pins the request. Repository patterns do not
translate into IAM resource wildcards (IAM's ``*`` crosses ``/``, so
``team/*`` would cover ``team/a/b`` and worse), so this registry keys the
cache instead:

* :data:`IDENTITY_SOURCES` = the ``Authorization`` header, the HTTP method
  and the concrete request path (``context.path``, which includes the stage
  and the repository name). Two requests share a cached answer only if they
  carry the same token for the same method on the same path, which is
  exactly when the answer is the same.
* The policy allows or denies exactly the request's own method ARN, nothing
  wider, so even a coarser cache key could only produce a false 403, never a
  grant the token does not carry.
* The context carries all of the token's grants (for handlers that look at
  other repositories: the catalog, cross-repository mounts).

:data:`RESULT_CACHE_TTL` is how long an answer is reused: a token that
expires or is revoked keeps working on a path it already used for at most
this long. The CDK stack imports both constants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from vmregistry.auth.scopes import format_scope
from vmregistry.names import is_valid_name

if TYPE_CHECKING:
    from vmregistry.config import Settings

__all__ = [
    "IDENTITY_SOURCES",
    "RESULT_CACHE_TTL",
    "MethodArn",
    "arn_matches",
    "build_policy",
    "challenge",
    "evaluate_policy",
    "event_header",
    "scope_challenge",
]

IDENTITY_SOURCES: tuple[str, ...] = (
    "method.request.header.Authorization",
    "context.httpMethod",
    "context.path",
)
RESULT_CACHE_TTL = 300
"""Seconds; API Gateway allows 0 (no caching) to 3600."""

Effect = Literal["Allow", "Deny"]


class MethodArn(NamedTuple):
    """``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>``."""

    region: str
    account: str
    api_id: str
    stage: str
    method: str
    path: str

    def __str__(self) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}/{self.stage}/{self.method}"
            f"/{self.path.lstrip('/')}"
        )

    @classmethod
    def for_event(cls, event: Mapping[str, Any], region: str = "local") -> MethodArn:
        """The ARN API Gateway puts in ``methodArn`` for a REST proxy event."""
        context = event.get("requestContext") or {}
        return cls(
            region,
            str(context.get("accountId", "000000000000")),
            str(context.get("apiId", "local")),
            str(context.get("stage", "local")),
            str(event.get("httpMethod", "")),
            str(event.get("path", "")),
        )


def build_policy(principal: str, effect: Effect, method_arn: str, context: Mapping[str, str]) -> dict[str, Any]:
    """An authorizer answer that allows or denies exactly one method ARN."""
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}],
        },
        "context": dict(context),
    }


def _wildcard(pattern: str) -> re.Pattern[str]:
    # IAM resource matching: '*' is any run of characters (including '/'), '?' one character.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def arn_matches(pattern: str, arn: str) -> bool:
    return _wildcard(pattern).fullmatch(arn) is not None


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("policy Action/Resource must be a string or a list of strings")


def evaluate_policy(document: Mapping[str, Any], method_arn: str) -> bool:
    """Does the policy let the caller invoke ``method_arn``? An explicit Deny wins; no Allow denies.

    Raises ValueError on a document API Gateway would reject (it answers 500).
    """
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise ValueError("policyDocument.Statement must be a list")
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            raise ValueError("each statement needs Effect Allow or Deny")
        actions = _strings(statement.get("Action"))
        if not any(arn_matches(a, "execute-api:Invoke") for a in actions):
            continue
        if not any(arn_matches(r, method_arn) for r in _strings(statement.get("Resource"))):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(realm: str, service: str, scope: str | None = None, error: str | None = None) -> str:
    """The ``WWW-Authenticate`` value of the Docker token-auth convention."""
    parts = [f"realm={_quoted(realm)}", f"service={_quoted(service)}"]
    if scope:
        parts.append(f"scope={_quoted(scope)}")
    if error:
        parts.append(f"error={_quoted(error)}")
    return "Bearer " + ",".join(parts)


def scope_challenge(
    settings: Settings, repository: str, action: str | None, error: str | None = None
) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401/403, naming the scope the request needs when it has one.

    A push asks for ``pull,push``, as Docker registries do: a client pushing
    also reads (it checks which blobs exist), so one token serves the whole push.
    """
    # Only names of the grammar go into a header: they are ASCII, nothing else is.
    scope = None
    if action and is_valid_name(repository):
        scope = format_scope(repository, ["pull", "push"] if action == "push" else [action])
    return {"WWW-Authenticate": challenge(settings.auth_realm, settings.auth_service, scope, error)}


def event_header(event: Mapping[str, Any], name: str) -> str | None:
    """A header of an API Gateway event, by case-insensitive name (the last value if it repeats)."""
    for source in ("headers", "multiValueHeaders"):
        for key, value in (event.get(source) or {}).items():
            if key.lower() == name.lower():
                if isinstance(value, list):
                    return str(value[-1]) if value else None
                return str(value) if value is not None else None
    return None
