"""Defence in depth: handlers re-check the authorizer's verdict against the request.

API Gateway runs the JWT authorizer before a handler, but a route wired
without it (a mistake in the stack, a test harness, a future integration)
must not become a way around the scopes. So every handler, in
:meth:`Request.parse <vmregistry.api.endpoint.Request.parse>`, asks
:func:`check` whether the authorizer context it received grants the action
the route table assigns to its operation on the request's repository.

Whether a token is required at all is the ``VMREGISTRY_AUTH`` setting:

* ``jwt``: every request needs an authorizer context carrying grants; a
  request without one is refused with 401 (deny by default).
* ``none``: requests without a context are allowed. That is local mode
  without ``auth.pub`` (``vmregistry serve`` sets it).
* unset: ``jwt`` inside AWS Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set),
  ``none`` elsewhere, so a deployment that forgets the setting fails closed.
  Any other value also means ``jwt``.

A context that carries grants is always enforced, whatever the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vmregistry.auth.context import grants_of
from vmregistry.auth.policy import challenge
from vmregistry.auth.scopes import format_scope
from vmregistry.config import Settings
from vmregistry.errors import RegistryError
from vmregistry.names import is_valid_name
from vmregistry.routes import Action, Route

__all__ = ["AUTH_ENV", "auth_required", "check", "may"]

AUTH_ENV = "VMREGISTRY_AUTH"


def auth_required() -> bool:
    mode = os.environ.get(AUTH_ENV, "").strip().lower()
    if mode == "none":
        return False
    if mode:
        return True
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def may(authorizer: Mapping[str, Any] | None, repository: str, action: Action) -> bool:
    """Does the authorizer context grant ``action`` on ``repository``?"""
    access = grants_of(authorizer)
    if access is None:
        return not auth_required()
    return access.allows(repository, action)


def _challenge(route: Route, repository: str, error: str | None = None) -> dict[str, str]:
    settings = Settings.from_env()
    # Only names of the grammar go into a header: they are ASCII, nothing else is.
    scope = format_scope(repository, [route.action]) if route.action and is_valid_name(repository) else None
    return {"WWW-Authenticate": challenge(settings.auth_realm, settings.auth_service, scope, error)}


def check(route: Route, repository: str, authorizer: Mapping[str, Any] | None) -> None:
    """Raise UNAUTHORIZED/DENIED unless the context grants what ``route`` needs on ``repository``."""
    access = grants_of(authorizer)
    if access is None:
        if auth_required():
            raise RegistryError(
                "UNAUTHORIZED",
                "this registry requires a bearer token, and none was verified for this request",
                headers=_challenge(route, repository),
            )
        return
    if route.action is None:
        return
    if not access.allows(repository, route.action):
        raise RegistryError(
            "DENIED",
            f"the token does not grant {route.action} on {repository}",
            {"name": repository, "action": route.action},
            headers=_challenge(route, repository, "insufficient_scope"),
        )
