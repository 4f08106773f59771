"""The REST API: every route of the table (``/v1`` and ``/v2``), for repository names of depth 1..N.

Routing names that contain slashes
----------------------------------
A repository name spans path segments (``team/app/vm``), and API Gateway
accepts a greedy ``{proxy+}`` only as the *last* segment of a resource, so
``/v1/{name+}/blobs/{digest}`` cannot exist. Instead each route is declared
once per depth, from ``/v1/{name1}/blobs/{digest}`` to
``/v1/{name1}/.../{nameN}/blobs/{digest}`` (:meth:`Route.resource`), with N =
the ``maxRepositoryDepth`` context value. Every method of every depth
integrates with the one function of its operation; the handler re-matches the
concrete path with :meth:`Route.match`, which accepts any depth, so depth is
only an API Gateway concern. A name deeper than N gets API Gateway's 403
"Missing Authentication Token" (its answer for a path with no resource).

At each level API Gateway prefers a static segment over a variable one
(``/v1/{name1}/blobs`` beats ``/v1/{name1}/{name2}``), so a name whose
component *after the first* is ``blobs``, ``manifests`` or ``tags`` would be
routed as if the name ended before it; :mod:`vmregistry.names` reserves those
components, so no accepted name is unroutable. ``tests/test_infra_routing.py`` resolves concrete paths
against the synthesized resource tree with these rules.

Bodies and limits: ``binaryMediaTypes: */*`` makes API Gateway hand every
body to Lambda base64-encoded and untouched; throttling defaults apply per
stage; access logs go to their own log group. A body too large for a function
gets API Gateway's own 413 (docs/api.md, "Bodies too large for AWS"); ``/v2``
advertises the chunk length that fits (``OCI-Chunk-Min-Length``, docs/oci.md).

API Gateway's own refusals speak the registry's error format and carry the
Docker token challenge: a 401 (no or bad token) names the realm and service,
a 403 adds ``error="insufficient_scope"``. A gateway response can only carry
a fixed header, so on ``/v2`` the authorizer lets a valid token that lacks
the scope through to the function, whose 403 names the scope it needs
(:mod:`vmregistry.auth.authorizer`): what makes oras fetch a token for it.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from vmregistry.auth import challenge
from vmregistry.errors import RegistryError, error_body
from vmregistry.routes import ROUTES, Route

from infra.config import DeploymentConfig
from infra.functions import log_retention

__all__ = ["Api", "resource_paths"]


def resource_paths(route: Route, max_depth: int) -> list[str]:
    """The API Gateway resource paths that serve ``route`` (one per depth for named routes)."""
    depths = range(1, max_depth + 1) if route.has_name else range(1, 2)
    # API Gateway resources never end in '/'; it routes '/v1/' and '/v1' alike.
    return [route.resource(depth).rstrip("/") or "/" for depth in depths]


class Api(Construct):
    """The RestApi, its stage settings, and one method per route and depth."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        functions: dict[str, lambda_.Function],
        authorizer: apigw.IAuthorizer,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            description="vm-registry: a registry for virtual-machine images (/v1) and the OCI Distribution API (/v2)",
            binary_media_types=["*/*"],
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Access logging needs API Gateway's account-wide CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            default_method_options=apigw.MethodOptions(
                authorizer=authorizer, authorization_type=apigw.AuthorizationType.CUSTOM
            ),
            deploy_options=apigw.StageOptions(
                stage_name=config.stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=config.tracing != "off",
                throttling_rate_limit=config.throttle_rate_limit,
                throttling_burst_limit=config.throttle_burst_limit,
            ),
        )
        self._gateway_responses(config)
        self.methods: list[apigw.Method] = []
        for route in ROUTES:
            # One integration per function: its single Lambda permission covers the whole API,
            # instead of one permission per method and depth (CloudFormation's 500-resource limit).
            integration = apigw.LambdaIntegration(
                functions[route.operation], proxy=True, scope_permission_to_method=False
            )
            for path in resource_paths(route, config.max_repository_depth):
                resource = self.rest_api.root if path == "/" else self.rest_api.root.resource_for_path(path)
                self.methods.append(resource.add_method(route.method, integration))

    def _gateway_responses(self, config: DeploymentConfig) -> None:
        """API Gateway's own 401/403 speak the registry's error format and carry the challenge."""
        # No REQUEST_TOO_LARGE: API Gateway does not let a REST API customize its 413 (docs/api.md).
        for response_type, status, error in (
            (
                apigw.ResponseType.UNAUTHORIZED,
                "401",
                RegistryError("UNAUTHORIZED", "authentication required"),
            ),
            (apigw.ResponseType.ACCESS_DENIED, "403", RegistryError("DENIED", "access denied")),
        ):
            scope_error = "insufficient_scope" if status == "403" else None
            header = challenge(config.auth_realm, config.auth_service, error=scope_error)
            self.rest_api.add_gateway_response(
                f"Gateway{status}",
                type=response_type,
                status_code=status,
                response_headers={"WWW-Authenticate": f"'{header}'"},
                templates={"application/json": error_body(error)},
            )

    @property
    def url(self) -> str:
        return self.rest_api.url
