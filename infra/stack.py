"""The one stack: storage, functions, auth, API and monitoring, wired together.

Each part is a construct in its own module; this module only connects them,
publishes the outputs (API URL, bucket name) and records, with a reason, every
cdk-nag AwsSolutions finding the design accepts instead of fixing.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct
from vmregistry.routes import AUTHORIZER

from infra.api import Api
from infra.auth import Auth
from infra.config import DeploymentConfig
from infra.functions import Functions
from infra.maintenance import Maintenance
from infra.monitoring import Monitoring
from infra.storage import Storage

__all__ = ["NAG_ACKNOWLEDGEMENTS", "VmRegistryStack"]

NAG_ACKNOWLEDGEMENTS: dict[str, str] = {
    "AwsSolutions::AwsSolutions-L1": (
        "The runtime is the newest Python whose bytecode the build can produce (infra.config.PYTHON_VERSION): "
        "Lambda's code directories are read-only, so a runtime without matching precompiled bytecode would "
        "recompile every module at every cold start (seconds). Move with the interpreter that builds the layers."
    ),
    "AwsSolutions-S1": (
        "Server access logs would need a second bucket that costs money at rest; every request to the "
        "bucket is made by a function (logged, traced) or by a presigned URL that a logged API call issued."
    ),
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AmazonAPIGatewayPushToCloudWatchLogs]": (
        "API Gateway's account-wide CloudWatch role needs this managed policy for access logging; "
        "functions use no managed policy (each may write only to its own log group)."
    ),
    "AwsSolutions-APIG2": (
        "Every handler validates its request (names, digests, bodies) and answers with the registry's error "
        "format; API Gateway's request validation would answer in another format first."
    ),
    "AwsSolutions-APIG3": "WAF costs money at rest; the stage's throttling limits and the JWT authorizer gate traffic.",
    "AwsSolutions-COG4": (
        "Tokens come from the registry's own Auth Server (RS256 JWTs), verified by the REQUEST authorizer "
        "on every method; there is no Cognito user pool."
    ),
    "AwsSolutions-SNS2": "The alarm topic carries CloudWatch alarm state changes only, no data worth a KMS key.",
}
"""cdk-nag rule -> why this stack accepts its finding (read by reviewers, applied below). IAM5
(wildcard resources) is acknowledged per role and per wildcard where the role is made,
in :mod:`infra.functions`."""


class VmRegistryStack(cdk.Stack):
    """The registry in one AWS account and region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        self.functions = Functions(self, "Functions", config=config, bucket=self.storage.bucket)
        authorizer_function = self.functions.by_operation[AUTHORIZER.name]
        self.auth = Auth(self, "Auth", handler=authorizer_function)
        self.api = Api(
            self,
            "Api",
            config=config,
            functions=self.functions.by_operation,
            authorizer=self.auth.authorizer,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            rest_api=self.api.rest_api,
            authorizer=authorizer_function,
            workers={op: fn for op, fn in self.functions.by_operation.items() if op in self.functions.workers},
        )
        self.maintenance = Maintenance(
            self, "Maintenance", config=config, collector=self.functions.by_operation["garbage_collect"]
        )
        cdk.CfnOutput(self, "ApiUrl", value=self.api.url, description="Point registry clients at this URL")
        cdk.CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="Where images live")
        cdk.Validations.of(self).acknowledge(
            *(cdk.Acknowledgment(id=rule, reason=reason) for rule, reason in NAG_ACKNOWLEDGEMENTS.items())
        )
