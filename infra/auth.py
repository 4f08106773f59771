"""The REQUEST authorizer in front of every method, and its result cache.

The authorizer function (``vmregistry_functions.authorizer``) verifies the
bearer token with the Auth Server's public key, which reaches it as a file in
a layer (``VMREGISTRY_AUTH_PUBLIC_KEY=/opt/vmregistry-auth/public.pem``),
exactly as local mode reads ``-auth-public-key auth.pub``: one setting, one
meaning. Changing the key (``-c publicKeyFile=...``) publishes a new layer
version and so updates every function on the next deploy.

The cache design is the authorizer's, not this module's: it is keyed by the
token, the method and the concrete path, because the policy allows exactly
the request's own method ARN (see :mod:`vmregistry.auth.policy`). So the
identity sources and TTL are imported from there, never restated here; a
``REQUEST`` authorizer (not ``TOKEN``) is what allows ``context.path`` and
``context.httpMethod`` as identity sources.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from vmregistry.auth import IDENTITY_SOURCES, RESULT_CACHE_TTL

__all__ = ["Auth"]


class Auth(Construct):
    """The API Gateway authorizer object for the authorizer function."""

    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "JwtAuthorizer",
            handler=handler,
            identity_sources=list(IDENTITY_SOURCES),
            results_cache_ttl=Duration.seconds(RESULT_CACHE_TTL),
        )
