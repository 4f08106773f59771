"""Scheduled upkeep: the garbage collector, run by an EventBridge rule.

The rule invokes the ``garbage_collect`` worker of the function table with
the deployment's choices as its event. By default it runs daily as a dry
run: it deletes nothing and reports what it would free (``ReclaimableBytes``
in CloudWatch, a log line per run), so an operator sees the cost of keeping
everything before deciding; ``-c gcDelete=true`` makes it delete
(docs/gc.md). ``-c gcSchedule=off`` removes the rule.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import DeploymentConfig

__all__ = ["Maintenance"]


class Maintenance(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, collector: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule: events.Rule | None = None
        if config.gc_schedule == "off":
            return
        self.rule = events.Rule(
            self,
            "GarbageCollection",
            description="vm-registry garbage collection" + ("" if config.gc_delete else " (dry run: reports only)"),
            schedule=events.Schedule.expression(config.gc_schedule),
            targets=[
                targets.LambdaFunction(
                    collector,
                    event=events.RuleTargetInput.from_object(
                        {
                            "dryRun": not config.gc_delete,
                            "deleteUntagged": config.gc_delete_untagged,
                            "graceHours": config.gc_grace_hours,
                        }
                    ),
                    retry_attempts=0,  # the next scheduled run is the retry
                )
            ],
        )
