"""Alarms that say the registry is failing its clients, and where to send them.

A few alarms, chosen so that each one means "clients see failures" rather
than "something moved": the API's 5XX count (a handler that raised, timed out
or was throttled surfaces here as 502/503/504), the API's p99 latency
approaching the 29-second integration limit, authorizer errors (a broken
authorizer turns every request into 401 or 500, which the 5XX alarm alone
would half miss) and each background worker's errors (a failed verification
never reaches the API's metrics). They stay inside CloudWatch's free tier of
ten alarms, so a stack at rest still costs only its S3 storage.

``-c alarmEmail=ops@example.com`` subscribes an address to the alarms' topic;
without it the alarms still show in the console but notify nobody.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import DeploymentConfig

__all__ = ["Monitoring"]


class Monitoring(Construct):
    """An SNS topic and the alarms that publish to it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        rest_api: apigw.RestApi,
        authorizer: lambda_.IFunction,
        workers: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="vm-registry alarms", enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=[self.topic.topic_arn],
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        period = Duration.minutes(5)
        self.alarms = [
            rest_api.metric_server_error(period=period, statistic="Sum").create_alarm(
                self,
                "ServerErrors",
                alarm_description="The API answered 5XX: a function failed, timed out or was throttled",
                threshold=5,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            rest_api.metric_latency(period=period, statistic="p99").create_alarm(
                self,
                "Latency",
                alarm_description="p99 latency near API Gateway's 29 s integration limit",
                threshold=20_000,
                evaluation_periods=3,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            authorizer.metric_errors(period=period, statistic="Sum").create_alarm(
                self,
                "AuthorizerErrors",
                alarm_description="The JWT authorizer crashed: requests fail with 401/500",
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]
        for operation, worker in sorted(workers.items()):
            self.alarms.append(
                worker.metric_errors(period=period, statistic="Sum").create_alarm(
                    self,
                    f"{operation.title().replace('_', '')}Errors",
                    alarm_description=f"The {operation} worker failed: uploads stay unpublished until retried",
                    threshold=1,
                    evaluation_periods=1,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
