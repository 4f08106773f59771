"""The CDK app: ``cdk.json`` runs ``python -m infra.app``; tests call :func:`build_app`.

cdk-nag's AwsSolutions pack runs as a validation plugin at synth, so an
unacknowledged finding fails ``cdk synth`` (and deploy) rather than hiding
in a report. The stack's account and region come from the CLI's environment
(``CDK_DEFAULT_ACCOUNT``/``CDK_DEFAULT_REGION``) when it has one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import DeploymentConfig
from infra.stack import VmRegistryStack

__all__ = ["STACK_NAME", "build_app", "main"]

STACK_NAME = "VmRegistry"


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[cdk.App, VmRegistryStack]:
    """The app and its stack; ``context`` is what ``cdk.json`` and ``-c`` would pass."""
    app = cdk.App(context=dict(context) if context is not None else None, outdir=outdir)
    config = DeploymentConfig.from_context(app.node.try_get_context)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    stack = VmRegistryStack(
        app,
        STACK_NAME,
        config=config,
        env=env,
        description="vm-registry: a serverless registry for virtual-machine images",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
