"""The API Gateway REQUEST authorizer: verify the bearer token, answer with an IAM policy.

All the deciding happens in :func:`vmregistry.auth.authorize`; this module
only binds it to the configuration (read once per cold start) and logs the
outcome. A refusal is raised as ``Unauthorized`` (API Gateway's 401); a
valid token without the needed scope gets a Deny policy (403).
"""

from __future__ import annotations

import functools
from typing import Any

from vmregistry import coldstart
from vmregistry.api.observability import logger
from vmregistry.auth import Unauthorized, Verifier, authorize
from vmregistry.config import Settings
from vmregistry.runtime import get_settings


@functools.lru_cache(maxsize=4)
def _verifier(settings: Settings) -> Verifier:
    return Verifier.from_settings(settings)


def verifier() -> Verifier:
    """The verifier for the current configuration; the key is loaded once per cold start."""
    settings = get_settings()
    try:
        return _verifier(settings)
    except (OSError, ValueError) as exc:
        # A misconfiguration, not the caller's fault, but an authorizer that raises
        # anything other than Unauthorized makes API Gateway answer 500: fail closed.
        logger.error("cannot load the token verification key", extra={"error": str(exc)})
        raise Unauthorized("the registry cannot verify tokens right now") from None


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        response = authorize(event, verifier())
    except Unauthorized as exc:
        logger.info("token refused", extra={"reason": exc.reason, "methodArn": event.get("methodArn")})
        raise
    except Exception:
        # A bug here must still not open anything, nor turn into API Gateway's 500.
        logger.exception("authorizer failed")
        raise Unauthorized("the token could not be checked") from None
    statement = response["policyDocument"]["Statement"][0]
    logger.info(
        "token verified",
        extra={
            "principal": response["principalId"],
            "effect": statement["Effect"],
            "reason": response["context"]["reason"],
        },
    )
    return response


# The module has loaded: end the init the functions package paused (API handlers, in instrument).
coldstart.resume()
