"""One Lambda function per entry of the function table, each allowed only what it needs.

Nothing here names a function: the loop over :data:`vmregistry.routes.FUNCTIONS`
(API operations, background workers, the authorizer) is the only list. What
differs between functions is data in the table: the handler string and
:attr:`Function.grants`, which :data:`S3_ACTIONS` turns into IAM actions, so
the function that presigns downloads holds no ``s3:PutObject`` and only the
functions that grant ``delete`` hold ``s3:DeleteObject``. A presigned URL is
signed with the function's own credentials, so a grant here is also the
ceiling of what any URL the function hands out can do. A worker's invokers
(:attr:`Function.invoked_by`) may invoke that one function and learn its
name from the worker's setting (``VMREGISTRY_VERIFY_FUNCTION``).

Every function runs the same code assets (the ``functions/`` package, the
shared ``vmregistry`` layer, the dependency layer, the public-key layer) on
the deployment's ``architecture`` (arm64 unless chosen otherwise) with X-Ray
active, an explicit log group (retention set, removed with the stack), and the
same ``VMREGISTRY_*`` variables the local server's flags set (see
:mod:`vmregistry.config`), plus Powertools' own variables.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct
from vmregistry import routes
from vmregistry.config import Settings, env_name
from vmregistry.routes import FUNCTIONS, Function, Grant, routes_of

from infra.build_layers import AUTH_KEY_LAMBDA_PATH, build_auth_key_layer, build_code_asset, ensure_deps_layer
from infra.config import DEFAULT_ARCHITECTURE, PYTHON_VERSION, ROOT, Architecture, DeploymentConfig

__all__ = [
    "API_TIMEOUT",
    "S3_ACTIONS",
    "Functions",
    "architecture",
    "description",
    "function_specs",
    "log_retention",
    "runtime",
]

API_TIMEOUT = Duration.seconds(routes.API_TIMEOUT_SECONDS)

S3_ACTIONS: Mapping[Grant, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # grant: (object-level actions, bucket-level actions)
    "read": (("s3:GetObject", "s3:ListMultipartUploadParts"), ("s3:ListBucket",)),
    "write": (("s3:PutObject", "s3:AbortMultipartUpload"), ()),
    "delete": (("s3:DeleteObject",), ()),
}
"""What each :data:`vmregistry.routes.Grant` means in IAM. ``read`` covers HeadObject and
ListParts; ``write`` covers multipart create/part/complete and copy destinations (CopyObject
is GetObject on the source plus PutObject on the target); only ``delete`` removes objects."""

BUILD_ROOT = ROOT / "build"
"""Precompiled copies of our code go here (see :func:`infra.build_layers.build_code_asset`)."""


def function_specs() -> tuple[Function, ...]:
    """Every function the stack declares: the function table, as it is."""
    return FUNCTIONS


def description(spec: Function) -> str:
    """What the console shows for a function: its routes, or what kind of function it is."""
    served = "; ".join(f"{r.method} {r.template}" for r in routes_of(spec.name))
    if spec.kind == "worker":
        return f"worker: {spec.summary}"[:256]
    return (f"{served}: {spec.summary}" if served else spec.summary)[:256]


def runtime() -> lambda_.Runtime:
    """CDK's runtime object for :data:`PYTHON_VERSION` (``Runtime.PYTHON_3_14``)."""
    found: lambda_.Runtime = getattr(lambda_.Runtime, "PYTHON_" + PYTHON_VERSION.replace(".", "_"))
    return found


def architecture(name: Architecture = DEFAULT_ARCHITECTURE) -> lambda_.Architecture:
    """CDK's architecture object for ``name``, the one the dependency layer is built for."""
    return lambda_.Architecture.ARM_64 if name == "arm64" else lambda_.Architecture.X86_64


def _construct_id(operation: str) -> str:
    return "".join(part.title() for part in operation.split("_"))


def grant_statements(bucket: s3.IBucket, grants: frozenset[Grant]) -> list[iam.PolicyStatement]:
    """The IAM statements for ``grants`` on ``bucket``: nothing more."""
    object_actions = sorted({a for g in grants for a in S3_ACTIONS[g][0]})
    bucket_actions = sorted({a for g in grants for a in S3_ACTIONS[g][1]})
    statements = []
    if object_actions:
        statements.append(iam.PolicyStatement(actions=object_actions, resources=[bucket.arn_for_objects("*")]))
    if bucket_actions:
        statements.append(iam.PolicyStatement(actions=bucket_actions, resources=[bucket.bucket_arn]))
    return statements


class Functions(Construct):
    """The layers and one function per :class:`FunctionSpec`, keyed by operation."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.layers = [
            lambda_.LayerVersion(
                self,
                "DependenciesLayer",
                code=lambda_.Code.from_asset(str(ensure_deps_layer(config.architecture))),
                compatible_runtimes=[runtime()],
                compatible_architectures=[architecture(config.architecture)],
                description="Third-party packages (layers/deps/requirements.txt), manylinux wheels",
            ),
            lambda_.LayerVersion(
                self,
                "RegistryLayer",
                code=lambda_.Code.from_asset(
                    str(build_code_asset(ROOT / "layers" / "vmregistry", BUILD_ROOT / "layers" / "vmregistry", "/opt"))
                ),
                compatible_runtimes=[runtime()],
                description="The shared vmregistry package",
            ),
            lambda_.LayerVersion(
                self,
                "PublicKeyLayer",
                code=lambda_.Code.from_asset(str(build_auth_key_layer(config.public_key_path()))),
                description=f"The Auth Server's RSA public key, at {AUTH_KEY_LAMBDA_PATH}",
            ),
        ]
        self.code = lambda_.Code.from_asset(
            str(build_code_asset(ROOT / "functions", BUILD_ROOT / "functions", "/var/task"))
        )
        self.environment = self._environment(config, bucket)
        self.by_operation: dict[str, lambda_.Function] = {}
        specs = function_specs()
        self.workers = {spec.name for spec in specs if spec.kind == "worker"}
        """Functions no API route reaches, invoked by other functions."""
        for spec in specs:
            self.by_operation[spec.name] = self._declare(spec, config, bucket)
        for spec in specs:
            self._connect_invokers(spec)

    def _connect_invokers(self, worker: Function) -> None:
        """Let each invoking function call the worker asynchronously, and tell it the worker's name."""
        if not worker.invoked_by or worker.setting is None:
            return
        target = self.by_operation[worker.name]
        for operation in sorted(worker.invoked_by):
            invoker = self.by_operation[operation]
            invoker.add_environment(env_name(worker.setting), target.function_name)
            # Not grant_invoke(): that also allows every version (<arn>:*), which nothing here publishes.
            invoker.add_to_role_policy(
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[target.function_arn])
            )

    @staticmethod
    def _environment(config: DeploymentConfig, bucket: s3.IBucket) -> dict[str, str]:
        settings = {
            "storage": "s3",
            "s3_bucket": bucket.bucket_name,
            "s3_region": Stack.of(bucket).region,
            "s3_skip_bucket_creation": "true",
            "presign_expires": str(config.presign_expires),
            "verify_inline_bytes": str(config.verify_inline_bytes),
            "auth": "jwt",  # handlers re-check every request's grants; never "none" in the cloud
            "auth_public_key": AUTH_KEY_LAMBDA_PATH,
            "auth_issuer": config.auth_issuer,
            "auth_audience": config.auth_audience,
            "auth_leeway": str(config.auth_leeway),
            "auth_realm": config.auth_realm,
            "auth_service": config.auth_service,
            # A /v2 upload is hashed within its closing request: no larger than what the API verifies inline.
            "oci_upload_limit": str(Settings().verify_inline_bytes),
        }
        environment = {env_name(key): value for key, value in settings.items() if value}
        environment |= {
            "POWERTOOLS_SERVICE_NAME": "vmregistry",
            "POWERTOOLS_METRICS_NAMESPACE": "VmRegistry",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if config.tracing != "sdk":
            # Powertools' Tracer off: the handlers never import the X-Ray SDK at cold start
            # (with ``active`` Lambda still traces each invocation and its init, without it).
            environment["POWERTOOLS_TRACE_DISABLED"] = "true"
        return environment

    def _declare(self, spec: Function, config: DeploymentConfig, bucket: s3.IBucket) -> lambda_.Function:
        name = _construct_id(spec.name)
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"vmregistry {spec.name}: storage grants {sorted(spec.grants) or 'none'}",
        )
        # Instead of the AWSLambdaBasicExecutionRole managed policy: this function's log group only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[f"{log_group.log_group_arn}:*"]
            )
        )
        for statement in grant_statements(bucket, spec.grants):
            role.add_to_policy(statement)
        self._acknowledge_wildcards(role, log_group, bucket, spec.grants)
        return lambda_.Function(
            self,
            name,
            description=description(spec),
            runtime=runtime(),
            architecture=architecture(config.architecture),
            code=self.code,
            handler=spec.handler,
            layers=self.layers,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            memory_size=spec.memory_mb or config.memory_size,
            timeout=Duration.seconds(spec.timeout_seconds),
            tracing=lambda_.Tracing.DISABLED if config.tracing == "off" else lambda_.Tracing.ACTIVE,
            environment=dict(self.environment),
        )

    @staticmethod
    def _acknowledge_wildcards(
        role: iam.Role, log_group: logs.LogGroup, bucket: s3.IBucket, grants: frozenset[Grant]
    ) -> None:
        """cdk-nag IAM5, acknowledged per role and per wildcard, each with its reason."""
        stack = Stack.of(role)

        def logical(construct: IConstruct) -> str:
            element = construct.node.default_child
            assert isinstance(element, CfnElement)
            return stack.get_logical_id(element)

        reasons = {
            f"<{logical(log_group)}.Arn>:*": "Lambda names log streams at run time; the group is this function's.",
            "*": "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions.",
        }
        if grants:
            reasons[f"<{logical(bucket)}.Arn>/*"] = (
                "Object keys are content digests and client-chosen repository names, unknown at deploy time; "
                f"the actions are only this operation's grants ({', '.join(sorted(grants))})."
            )
        cdk.Validations.of(role).acknowledge(
            *(
                cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-IAM5[Resource::{resource}]", reason=reason)
                for resource, reason in reasons.items()
            )
        )


_RETENTION = {member.value: member for member in logs.RetentionDays}
_RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip


def log_retention(days: int) -> logs.RetentionDays:
    """CloudWatch accepts only some retention periods; take the shortest one holding ``days``."""
    for allowed in sorted(_RETENTION_DAYS):
        if allowed >= days:
            return _RETENTION[_RETENTION_DAYS[allowed]]
    return logs.RetentionDays.TEN_YEARS
