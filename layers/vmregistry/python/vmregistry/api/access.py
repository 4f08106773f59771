"""Defence in depth: handlers re-check the authorizer's verdict against the request.

PLACEHOLDER until the JWT authorizer lands (issue 3): with no authorizer
configured every request is allowed, which is the local mode's documented
behaviour without ``auth.pub``. Issue 3 replaces the bodies of these two
functions; their signatures are what handlers rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmregistry.routes import Action, Route

__all__ = ["check", "may"]


def may(authorizer: Mapping[str, Any] | None, repository: str, action: Action) -> bool:
    """Does the authorizer context grant ``action`` on ``repository``?"""
    return True


def check(route: Route, repository: str, authorizer: Mapping[str, Any] | None) -> None:
    """Raise UNAUTHORIZED/DENIED unless the context grants what ``route`` needs on ``repository``."""
    return None
