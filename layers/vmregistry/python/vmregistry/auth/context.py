"""What the authorizer hands the handlers: the token's grants, in API Gateway's context.

Kept apart from :mod:`~vmregistry.auth.tokens` on purpose: every API handler
reads this context, and none of them verifies a token, so none of them should
pay for importing pyjwt and cryptography at cold start.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from vmregistry.auth.scopes import AccessSet

__all__ = ["CONTEXT_GRANTS", "CONTEXT_REASON", "CONTEXT_SUBJECT", "grants_of"]

CONTEXT_GRANTS = "grants"
"""Authorizer context key: the token's grants, :meth:`AccessSet.to_json`."""
CONTEXT_SUBJECT = "sub"
CONTEXT_REASON = "reason"


def grants_of(context: Mapping[str, Any] | None) -> AccessSet | None:
    """The grants an authorizer context carries; None when it has no grants key (no token ran)."""
    if not context:
        return None
    raw = context.get(CONTEXT_GRANTS)
    if not isinstance(raw, str):
        return None
    return _parse_grants(raw)


@functools.lru_cache(maxsize=64)  # the catalog asks once per repository
def _parse_grants(raw: str) -> AccessSet:
    try:
        return AccessSet.from_json(raw)
    except ValueError:
        return AccessSet()  # a context with unreadable grants grants nothing
