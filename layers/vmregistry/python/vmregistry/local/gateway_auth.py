"""API Gateway's authorizer step, for local mode: the same authorizer, the same event shapes.

:class:`GatewayAuthorizer` is what ``LocalServer(authorizer=...)`` calls with
each REST proxy event. It does what API Gateway does before a method with a
REQUEST authorizer runs:

1. read the identity sources (:data:`vmregistry.auth.IDENTITY_SOURCES`); if
   one is missing or empty, answer 401 without calling the authorizer;
2. look the identity-source values up in a result cache
   (:data:`vmregistry.auth.RESULT_CACHE_TTL`); on a miss, build the
   ``"type": "REQUEST"`` event, call the authorizer's ``lambda_handler`` and
   cache its answer (401s are not cached);
3. evaluate the answer's IAM policy against *this* request's method ARN
   (explicit Deny wins, wildcards ``*`` and ``?``): Allow -> the context goes
   to the handler under ``requestContext.authorizer`` (values as strings, plus
   ``principalId``); otherwise 403.

Unlike API Gateway it answers 401 and 403 with the registry's JSON error
bodies and a ``WWW-Authenticate`` challenge naming the scope the request
needs (Docker's token-auth convention).

:func:`local_authorizer` decides at start-up whether ``vmregistry serve``
requires tokens at all.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vmregistry.auth import IDENTITY_SOURCES, RESULT_CACHE_TTL, MethodArn, Unauthorized, evaluate_policy
from vmregistry.auth.authorizer import CONTEXT_REASON, required_access
from vmregistry.auth.policy import event_header, scope_challenge
from vmregistry.auth.tokens import load_public_key
from vmregistry.config import Settings
from vmregistry.errors import RegistryError
from vmregistry.local.events import LambdaContext
from vmregistry.routes import AUTHORIZER

__all__ = [
    "DEFAULT_KEY_FILE",
    "GatewayAuthorizer",
    "KeyUnusable",
    "authorizer_event",
    "identity_key",
    "local_authorizer",
]

log = logging.getLogger("vmregistry.local.auth")

DEFAULT_KEY_FILE = "auth.pub"


LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def identity_key(event: Mapping[str, Any], sources: tuple[str, ...]) -> tuple[str, ...] | None:
    """The identity-source values of a proxy event (the cache key); None if any is missing or empty."""
    values: list[str] = []
    for source in sources:
        value: Any = None
        if source.startswith("method.request.header."):
            value = event_header(event, source.removeprefix("method.request.header."))
        elif source.startswith("method.request.querystring."):
            value = (event.get("queryStringParameters") or {}).get(source.removeprefix("method.request.querystring."))
        elif source.startswith("context."):
            value = (event.get("requestContext") or {}).get(source.removeprefix("context."))
        elif source.startswith("stageVariables."):
            value = (event.get("stageVariables") or {}).get(source.removeprefix("stageVariables."))
        if value is None or str(value) == "":
            return None
        values.append(str(value))
    return tuple(values)


def authorizer_event(event: Mapping[str, Any], method_arn: str) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway (REST) sends for a proxy event."""
    context = {k: v for k, v in (event.get("requestContext") or {}).items() if k != "authorizer"}
    return {
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": event.get("resource"),
        "path": event.get("path"),
        "httpMethod": event.get("httpMethod"),
        "headers": event.get("headers") or {},
        "multiValueHeaders": event.get("multiValueHeaders") or {},
        "queryStringParameters": event.get("queryStringParameters") or {},
        "multiValueQueryStringParameters": event.get("multiValueQueryStringParameters") or {},
        "pathParameters": event.get("pathParameters") or {},
        "stageVariables": event.get("stageVariables") or {},
        "requestContext": context,
    }


def _flat(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("authorizer context values must be strings, numbers or booleans")


class GatewayAuthorizer:
    """API Gateway's REQUEST-authorizer step around one authorizer ``lambda_handler``."""

    def __init__(
        self,
        handler: LambdaHandler,
        settings: Settings,
        *,
        identity_sources: tuple[str, ...] = IDENTITY_SOURCES,
        ttl: float = RESULT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.settings = settings
        self.identity_sources = identity_sources
        self.ttl = ttl
        self.clock = clock
        self.invocations = 0
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _unauthorized(self, event: Mapping[str, Any], reason: str) -> RegistryError:
        needed = required_access(event)
        repository, action = (needed[1], needed[2]) if needed else ("", None)
        headers = scope_challenge(self.settings, repository, action)
        return RegistryError("UNAUTHORIZED", f"authentication required: {reason}", headers=headers)

    def _denied(self, event: Mapping[str, Any], reason: str) -> RegistryError:
        needed = required_access(event)
        repository, action = (needed[1], needed[2]) if needed else ("", None)
        headers = scope_challenge(self.settings, repository, action, "insufficient_scope")
        detail = {"name": repository[:300], "action": action} if action else None
        return RegistryError("DENIED", f"access denied: {reason}", detail, headers=headers)

    def _invoke(self, event: Mapping[str, Any], method_arn: str) -> dict[str, Any]:
        self.invocations += 1
        request_event = authorizer_event(event, method_arn)
        context = LambdaContext("authorizer", str((event.get("requestContext") or {}).get("requestId", "")))
        return self.handler(request_event, context)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        method_arn = str(MethodArn.for_event(event))
        key = identity_key(event, self.identity_sources)
        if key is None:
            raise self._unauthorized(event, "the request has no Authorization header")
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            response = cached[1]
        else:
            try:
                response = self._invoke(event, method_arn)
            except Unauthorized as exc:
                raise self._unauthorized(event, exc.reason) from None
            except Exception as exc:
                if str(exc) == "Unauthorized":  # any authorizer's way of saying 401
                    raise self._unauthorized(event, "the token was refused") from None
                log.exception("the authorizer failed")
                raise RegistryError("INTERNAL", "the authorizer failed; see the server log") from None
            if self.ttl > 0:
                with self._lock:
                    self._cache[key] = (now + self.ttl, response)
        try:
            allowed = evaluate_policy(response["policyDocument"], method_arn)
            context = {k: _flat(v) for k, v in (response.get("context") or {}).items()}
            context["principalId"] = _flat(response["principalId"])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("the authorizer returned an invalid answer: %s", exc)
            raise RegistryError("INTERNAL", "the authorizer returned an invalid answer") from None
        if not allowed:
            raise self._denied(event, context.get(CONTEXT_REASON) or "the token does not grant this request")
        return context


class KeyUnusable(ValueError):
    """The operator named a public key (or left ``./auth.pub``) that cannot verify tokens."""


def local_authorizer(settings: Settings, workdir: Path | None = None) -> tuple[GatewayAuthorizer | None, Settings]:
    """Decide whether ``vmregistry serve`` requires tokens: the authorizer step, and the settings to serve with.

    The key is ``settings.auth_public_key`` (flag or environment) or else
    ``./auth.pub`` if it exists. Neither: no authentication, loudly (the seed's
    default). A key that is there but cannot be used (a typo in the path, not
    a PEM RSA public key) is :class:`KeyUnusable`: starting open instead of
    closed would be the worst reading of the operator's intent.
    """
    source = settings.auth_public_key
    if source is None:
        default = (workdir or Path.cwd()) / DEFAULT_KEY_FILE
        if not default.exists():
            log.warning(
                "authentication is DISABLED: no ./%s and no -auth-public-key; anyone who can reach this"
                " server may pull, push and delete. Create a key pair with `vmregistry keygen`.",
                DEFAULT_KEY_FILE,
            )
            return None, dataclasses.replace(settings, auth="none")
        source = str(default)
    path = os.path.abspath(source)
    try:
        load_public_key(path)
    except (OSError, ValueError) as exc:
        raise KeyUnusable(
            f"cannot use the public key {path} ({exc}); fix -auth-public-key / VMREGISTRY_AUTH_PUBLIC_KEY, or"
            " remove it (and ./auth.pub) to serve without authentication"
        ) from None
    settings = dataclasses.replace(settings, auth_public_key=path, auth="jwt")
    handler: LambdaHandler = importlib.import_module(AUTHORIZER.module).lambda_handler
    log.info("authentication enabled: every request needs a bearer token verified with %s", path)
    return GatewayAuthorizer(handler, settings), settings
