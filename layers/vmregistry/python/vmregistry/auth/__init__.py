"""JWT authorization: who may pull, push and delete which repositories.

The pieces, in the order a request meets them:

* :mod:`~vmregistry.auth.tokens`: the bearer token, verified (RS256 only) with
  the Auth Server's public key;
* :mod:`~vmregistry.auth.scopes` and :mod:`~vmregistry.auth.patterns`: what
  the token grants, and which repository names a granted pattern covers;
* :mod:`~vmregistry.auth.authorizer`: the decision for one request, using the
  action the route table assigns to the operation (:attr:`Route.action`);
* :mod:`~vmregistry.auth.policy`: the IAM policy API Gateway receives, and
  the authorizer-cache design (:data:`IDENTITY_SOURCES`,
  :data:`RESULT_CACHE_TTL`, imported by the CDK stack).

Handlers re-check the authorizer's context in :mod:`vmregistry.api.access`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmregistry.auth.context import CONTEXT_GRANTS, grants_of
from vmregistry.auth.patterns import Pattern, PatternError
from vmregistry.auth.policy import (
    IDENTITY_SOURCES,
    RESULT_CACHE_TTL,
    MethodArn,
    build_policy,
    challenge,
    evaluate_policy,
)
from vmregistry.auth.scopes import ACTIONS, Access, AccessSet, ScopeError, format_scope
from vmregistry.lazy import lazy_exports

if TYPE_CHECKING:
    from vmregistry.auth.authorizer import Unauthorized, authorize
    from vmregistry.auth.tokens import (
        ALGORITHM,
        MAX_TOKEN_LENGTH,
        Identity,
        TokenError,
        Verifier,
        bearer_token,
        generate_key_pair,
        load_public_key,
        mint_token,
    )

# Token verification needs pyjwt and cryptography (~100 ms of imports); only the
# authorizer and the key tools use it, so it loads on first use, not with the package.
_LAZY = {
    "Unauthorized": "authorizer",
    "authorize": "authorizer",
    **dict.fromkeys(
        [
            "ALGORITHM",
            "MAX_TOKEN_LENGTH",
            "Identity",
            "TokenError",
            "Verifier",
            "bearer_token",
            "generate_key_pair",
            "load_public_key",
            "mint_token",
        ],
        "tokens",
    ),
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ACTIONS",
    "ALGORITHM",
    "CONTEXT_GRANTS",
    "IDENTITY_SOURCES",
    "MAX_TOKEN_LENGTH",
    "RESULT_CACHE_TTL",
    "Access",
    "AccessSet",
    "Identity",
    "MethodArn",
    "Pattern",
    "PatternError",
    "ScopeError",
    "TokenError",
    "Unauthorized",
    "Verifier",
    "authorize",
    "bearer_token",
    "build_policy",
    "challenge",
    "evaluate_policy",
    "format_scope",
    "generate_key_pair",
    "grants_of",
    "load_public_key",
    "mint_token",
]
