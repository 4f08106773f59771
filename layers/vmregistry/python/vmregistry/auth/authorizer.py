"""The authorizer's decision: a REQUEST authorizer event in, an IAM policy out.

This is everything the Lambda authorizer does, minus the Lambda plumbing
(``vmregistry_functions.authorizer`` is three lines around it), so the same
code runs in the cloud and, through :mod:`vmregistry.local.gateway_auth`, in
local mode.

* No acceptable token -> :class:`Unauthorized`, whose message is exactly
  ``"Unauthorized"``: the one error API Gateway turns into a 401.
* A valid token -> a policy for exactly this request's method ARN: Allow when
  the token grants the action the route table says the operation needs on
  the request's repository, Deny (403) otherwise. Routes without an action
  (version check, catalog) need only a valid token.
* Except on ``/v2``, where a valid token that lacks the action is let through
  to the function, which refuses it (403 DENIED) with the challenge naming
  the scope the request needs (:mod:`vmregistry.api.access`, the check every
  handler makes anyway): OCI clients such as oras fetch a token for that scope
  only from such a challenge, and API Gateway's own 403 can only carry a
  fixed one. The token is verified and the name checked here all the same.
* A repository name outside the grammar is never allowed.

Any other failure also becomes :class:`Unauthorized` (logged): an authorizer
that raises something else makes API Gateway answer 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmregistry.auth.context import CONTEXT_GRANTS, CONTEXT_REASON, CONTEXT_SUBJECT, grants_of
from vmregistry.auth.policy import build_policy, event_header
from vmregistry.auth.tokens import Identity, TokenError, Verifier, bearer_token
from vmregistry.names import is_valid_name
from vmregistry.routes import Action, Route, find_route

__all__ = [
    "CONTEXT_GRANTS",
    "CONTEXT_REASON",
    "CONTEXT_SUBJECT",
    "Unauthorized",
    "authorize",
    "context_for",
    "decide",
    "grants_of",
    "required_access",
]


class Unauthorized(Exception):
    """Raised for a 401. ``str(exc)`` is always ``"Unauthorized"``; ``reason`` explains."""

    def __init__(self, reason: str) -> None:
        super().__init__("Unauthorized")
        self.reason = reason


def required_access(event: Mapping[str, Any]) -> tuple[Route, str, Action | None] | None:
    """(route, repository, action) the request needs; None when no route serves it."""
    found = find_route(str(event.get("httpMethod") or ""), str(event.get("path") or ""))
    if not found:
        return None
    route, params = found
    return route, params.get("name", ""), route.action


def decide(event: Mapping[str, Any], identity: Identity) -> tuple[bool, str]:
    """(allowed, reason) for a verified identity."""
    needed = required_access(event)
    if needed is None:
        return False, "no route serves this method and path"
    route, repository, action = needed
    if action is None:
        return True, "any valid token"
    if not is_valid_name(repository):
        return False, "the repository name is outside the name grammar"
    if identity.access.allows(repository, action):
        return True, f"{action} granted on {repository}"
    if route.api == "v2":
        return True, f"the token does not grant {action} on {repository}: the function answers 403 with the scope"
    return False, f"the token does not grant {action} on {repository}"


def context_for(identity: Identity, reason: str) -> dict[str, str]:
    return {
        CONTEXT_SUBJECT: identity.subject,
        CONTEXT_GRANTS: identity.access.to_json(),
        CONTEXT_REASON: reason,
    }


def authorize(event: Mapping[str, Any], verifier: Verifier) -> dict[str, Any]:
    """The authorizer response for one REQUEST event; raises :class:`Unauthorized` for 401."""
    method_arn = event.get("methodArn")
    if not isinstance(method_arn, str) or not method_arn:
        raise Unauthorized("the authorizer event has no methodArn")
    try:
        identity = verifier.verify(bearer_token(event_header(event, "Authorization")))
    except TokenError as exc:
        raise Unauthorized(exc.reason) from None
    allowed, reason = decide(event, identity)
    return build_policy(identity.subject, "Allow" if allowed else "Deny", method_arn, context_for(identity, reason))
