"""Defence in depth: handlers re-check the authorizer's verdict against the request.

API Gateway runs the JWT authorizer before a handler, but a route wired
without it (a mistake in the stack, a test harness, a future integration)
must not become a way around the scopes. So every handler, in
:meth:`Request.parse <vmregistry.api.endpoint.Request.parse>`, asks
:func:`check` whether the authorizer context it received grants the action
the route table assigns to its operation on the request's repository.

Whether a token is required at all is the ``auth`` setting
(:attr:`Settings.auth <vmregistry.config.Settings.auth>`, ``VMREGISTRY_AUTH``):

* ``jwt``: every request needs an authorizer context carrying grants; a
  request without one is refused with 401 (deny by default).
* ``none``: requests without a context are allowed. That is local mode
  without a public key (``vmregistry serve`` decides it at start).
* unset: ``jwt`` inside AWS Lambda, ``none`` elsewhere, so a deployment that
  forgets the setting fails closed. Any other value also means ``jwt``.

A context that carries grants is always enforced, whatever the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmregistry.auth.context import grants_of
from vmregistry.auth.policy import scope_challenge
from vmregistry.config import Settings
from vmregistry.errors import RegistryError
from vmregistry.routes import Action, Route

__all__ = ["check", "may"]


def may(authorizer: Mapping[str, Any] | None, repository: str, action: Action, settings: Settings) -> bool:
    """Does the authorizer context grant ``action`` on ``repository``?"""
    access = grants_of(authorizer)
    if access is None:
        return not settings.auth_required
    return access.allows(repository, action)


def check(route: Route, repository: str, authorizer: Mapping[str, Any] | None, settings: Settings) -> None:
    """Raise UNAUTHORIZED/DENIED unless the context grants what ``route`` needs on ``repository``."""
    access = grants_of(authorizer)
    if access is None:
        if settings.auth_required:
            raise RegistryError(
                "UNAUTHORIZED",
                "this registry requires a bearer token, and none was verified for this request",
                headers=scope_challenge(settings, repository, route.action),
            )
        return
    if route.action is None:
        return
    if not access.allows(repository, route.action):
        raise RegistryError(
            "DENIED",
            f"the token does not grant {route.action} on {repository}",
            {"name": repository, "action": route.action},
            headers=scope_challenge(settings, repository, route.action, "insufficient_scope"),
        )
