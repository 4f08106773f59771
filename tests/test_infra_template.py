"""What the synthesized stack promises: functions, layers, bucket, API stage, authorizer, outputs."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import aws_cdk.aws_lambda as lambda_
import pytest
from aws_cdk import assertions
from vmregistry import routes
from vmregistry.auth import IDENTITY_SOURCES, RESULT_CACHE_TTL
from vmregistry.config import SETTINGS_HELP, env_name
from vmregistry.paths import UPLOADS_PREFIX
from vmregistry.routes import AUTHORIZER, ROUTES

from infra.config import PYTHON_VERSION
from infra.functions import function_specs
from tests.infra_synth import Synthesized, infra_context, resources_of_type, synthesized


@pytest.fixture(scope="module")
def synth() -> Synthesized:
    return synthesized()


@pytest.fixture(scope="module")
def template(synth: Synthesized) -> assertions.Template:
    return assertions.Template.from_json(synth.template)


def functions_by_handler(synth: Synthesized) -> dict[str, dict[str, Any]]:
    functions = resources_of_type(synth.template, "AWS::Lambda::Function")
    return {f["Properties"]["Handler"]: f["Properties"] for f in functions.values()}


# --- functions ---------------------------------------------------------------------------------


def test_one_function_per_operation_plus_the_authorizer(synth: Synthesized) -> None:
    # GIVEN the functions in the template
    handlers = sorted(
        f["Properties"]["Handler"] for f in resources_of_type(synth.template, "AWS::Lambda::Function").values()
    )
    # THEN they are exactly the route table's handlers (and workers', if any) and the authorizer's
    assert handlers == sorted(spec.handler for spec in function_specs())
    assert {route.handler for route in ROUTES} | {AUTHORIZER.handler} <= set(handlers)


@pytest.mark.parametrize("spec", function_specs(), ids=lambda s: s.name)
def test_handler_strings_name_modules_that_import(spec: Any) -> None:
    # GIVEN a handler string as Lambda will read it: <module>.<function>, relative to functions/
    module_name, _, attribute = spec.handler.rpartition(".")
    # WHEN the module is imported
    module = importlib.import_module(module_name)
    # THEN the entry point exists and is callable
    assert callable(getattr(module, attribute))


def test_functions_run_the_chosen_python_on_arm64(synth: Synthesized) -> None:
    for props in functions_by_handler(synth).values():
        assert props["Runtime"] == f"python{PYTHON_VERSION}"
        assert props["Architectures"] == ["arm64"]
        assert props["LoggingConfig"]["LogFormat"] == "JSON"


def test_python_version_is_offered_and_is_the_one_that_builds_the_layers() -> None:
    # GIVEN every Python runtime this CDK knows
    offered = {
        tuple(int(p) for p in name.removeprefix("PYTHON_").split("_"))
        for name in dir(lambda_.Runtime)
        if re.fullmatch(r"PYTHON_\d+_\d+", name)
    }
    # THEN the stack's runtime is one of them, and the same CPython compiles the layers' bytecode
    # (a runtime without matching bytecode recompiles every module at every cold start)
    assert tuple(int(p) for p in PYTHON_VERSION.split(".")) in offered
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION


def test_every_function_has_the_three_layers(synth: Synthesized) -> None:
    layers = resources_of_type(synth.template, "AWS::Lambda::LayerVersion")
    assert len(layers) == 3
    for props in functions_by_handler(synth).values():
        assert sorted(ref["Ref"] for ref in props["Layers"]) == sorted(layers)


def test_every_function_logs_to_its_own_group_with_retention(synth: Synthesized) -> None:
    groups = resources_of_type(synth.template, "AWS::Logs::LogGroup")
    used = [props["LoggingConfig"]["LogGroup"]["Ref"] for props in functions_by_handler(synth).values()]
    assert len(set(used)) == len(used)
    for group in used:
        assert groups[group]["Properties"]["RetentionInDays"] == int(synth.context["logRetentionDays"])


def test_environment_uses_only_the_local_servers_setting_names(synth: Synthesized) -> None:
    # GIVEN the variables every function is configured with
    known = {env_name(setting) for setting in SETTINGS_HELP}
    for handler, props in functions_by_handler(synth).items():
        variables = props["Environment"]["Variables"]
        # THEN each VMREGISTRY_* variable is one the local server's flags set too
        assert {k for k in variables if k.startswith("VMREGISTRY_")} <= known, handler
        # ... the storage is S3, on the stack's bucket, never created by the function
        assert variables["VMREGISTRY_STORAGE"] == "s3"
        assert variables["VMREGISTRY_S3_BUCKET"] == {"Ref": _bucket_id(synth)}
        assert variables["VMREGISTRY_S3_SKIP_BUCKET_CREATION"] == "true"
        assert variables["VMREGISTRY_PRESIGN_EXPIRES"] == str(synth.context["presignExpires"])
        assert variables["VMREGISTRY_VERIFY_INLINE_BYTES"] == str(synth.context["verifyInlineBytes"])
        # ... and the public key is the file the key layer puts there
        assert variables["VMREGISTRY_AUTH_PUBLIC_KEY"] == "/opt/vmregistry-auth/public.pem"
        # ... and a request without verified grants is refused by the handler itself
        assert variables["VMREGISTRY_AUTH"] == "jwt"
        assert variables["POWERTOOLS_SERVICE_NAME"] == "vmregistry"
        assert variables["POWERTOOLS_METRICS_NAMESPACE"]


def test_api_functions_stop_when_api_gateway_gives_up(synth: Synthesized) -> None:
    for route in ROUTES:
        assert functions_by_handler(synth)[route.handler]["Timeout"] == 29


def test_workers_get_their_declared_time_and_a_full_vcpu(synth: Synthesized) -> None:

    for worker in routes.workers():
        props = functions_by_handler(synth)[worker.handler]
        assert props["Timeout"] == worker.timeout_seconds
        assert props["MemorySize"] >= 1769


# --- bucket ------------------------------------------------------------------------------------


def _bucket_id(synth: Synthesized) -> str:
    (bucket,) = resources_of_type(synth.template, "AWS::S3::Bucket")
    return bucket


def test_bucket_is_private_encrypted_and_retained(synth: Synthesized, template: assertions.Template) -> None:
    bucket = synth.resources[_bucket_id(synth)]
    # THEN a stack deletion keeps the images
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # ... and plain-HTTP requests are denied by policy
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": assertions.Match.array_with(
                    [
                        assertions.Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_abandoned_uploads_clean_themselves_up(synth: Synthesized) -> None:
    rules = synth.resources[_bucket_id(synth)]["Properties"]["LifecycleConfiguration"]["Rules"]
    days = int(synth.context["uploadExpiryDays"])
    abort = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    staging = [r for r in rules if r.get("Prefix") == UPLOADS_PREFIX]
    assert [r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in abort] == [days]
    assert [(r["ExpirationInDays"], r["Status"]) for r in staging] == [(days, "Enabled")]
    # Nothing else expires: blobs and manifests live until deleted
    assert all(r in abort or r in staging for r in rules)


def test_bucket_can_be_made_disposable_by_context() -> None:
    from infra.config import DeploymentConfig

    assert DeploymentConfig.from_context({"retainBucket": "false"}).retain_bucket is False
    assert DeploymentConfig.from_context({}).retain_bucket is True


# --- API ---------------------------------------------------------------------------------------


def test_api_passes_binary_bodies_untouched(template: assertions.Template) -> None:
    template.has_resource_properties("AWS::ApiGateway::RestApi", {"BinaryMediaTypes": ["*/*"]})


def test_stage_has_access_logs_tracing_and_throttling(synth: Synthesized) -> None:
    (stage,) = resources_of_type(synth.template, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == synth.context["stageName"]
    assert props["TracingEnabled"] is True
    parts = props["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1]
    (access_group,) = [p["Ref"] for p in parts if isinstance(p, dict) and p.get("Ref", "AWS::").count("AWS::") == 0]
    assert synth.resources[access_group]["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in synth.resources[access_group]["Properties"]
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == synth.context["throttleRateLimit"]
    assert settings["ThrottlingBurstLimit"] == synth.context["throttleBurstLimit"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")


def test_the_authorizer_guards_every_method(synth: Synthesized) -> None:
    # GIVEN the one authorizer
    (authorizer_id, authorizer), *others = resources_of_type(synth.template, "AWS::ApiGateway::Authorizer").items()
    assert others == []
    props = authorizer["Properties"]
    # THEN it is a REQUEST authorizer whose cache follows the authorizer's design
    assert props["Type"] == "REQUEST"
    assert props["IdentitySource"] == ",".join(IDENTITY_SOURCES)
    assert props["AuthorizerResultTtlInSeconds"] == RESULT_CACHE_TTL
    uri = "".join(p if isinstance(p, str) else str(p) for p in props["AuthorizerUri"]["Fn::Join"][1])
    authorizer_function = next(k for k, f in functions_by_handler_ids(synth).items() if f == AUTHORIZER.handler)
    assert authorizer_function in uri
    # ... and every method uses it: none is open
    methods = resources_of_type(synth.template, "AWS::ApiGateway::Method")
    assert methods
    for key, method in methods.items():
        assert method["Properties"]["AuthorizationType"] == "CUSTOM", key
        assert method["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}, key


def functions_by_handler_ids(synth: Synthesized) -> dict[str, str]:
    functions = resources_of_type(synth.template, "AWS::Lambda::Function")
    return {key: f["Properties"]["Handler"] for key, f in functions.items()}


def test_gateway_refusals_speak_the_registry_error_format(synth: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources_of_type(synth.template, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    assert '"code":"UNAUTHORIZED"' in responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"]
    assert responses["UNAUTHORIZED"]["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"].startswith(
        "'Bearer realm="
    )
    assert responses["ACCESS_DENIED"]["StatusCode"] == "403"
    assert '"code":"DENIED"' in responses["ACCESS_DENIED"]["ResponseTemplates"]["application/json"]
    denied_header = responses["ACCESS_DENIED"]["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"]
    assert denied_header.endswith(""",error="insufficient_scope"'""")


def test_outputs_name_the_api_url_and_the_bucket(synth: Synthesized) -> None:
    outputs = synth.template["Outputs"]
    assert outputs["BucketName"]["Value"] == {"Ref": _bucket_id(synth)}
    url = str(outputs["ApiUrl"]["Value"])
    assert "execute-api" in url
    assert synth.context["stageName"] in url


# --- monitoring --------------------------------------------------------------------------------


def test_alarms_watch_client_visible_failures_and_notify_the_topic(synth: Synthesized) -> None:
    alarms = list(resources_of_type(synth.template, "AWS::CloudWatch::Alarm").values())
    (topic,) = resources_of_type(synth.template, "AWS::SNS::Topic")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    # THEN the API's server errors and latency, and Lambda errors (authorizer, workers) are watched
    assert {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Latency"), ("AWS/Lambda", "Errors")} <= watched

    lambda_alarms = [a for a in alarms if a["Properties"]["MetricName"] == "Errors"]
    assert len(lambda_alarms) == 1 + len(routes.workers())
    # ... every alarm notifies the topic
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic}] for a in alarms)
    # ... and they stay inside CloudWatch's free tier (10 alarms): the stack costs nothing at rest
    assert len(alarms) <= 10


def test_default_tracing_is_lambdas_own_without_the_sdk(synth: Synthesized) -> None:
    # GIVEN the default deployment (tracing "active")
    (stage,) = resources_of_type(synth.template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True
    for props in functions_by_handler(synth).values():
        # THEN Lambda traces every function, and the handlers leave the X-Ray SDK unloaded
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"


@pytest.mark.parametrize(
    ("tracing", "lambda_mode", "stage_traced", "sdk"),
    [("off", "PassThrough", False, False), ("sdk", "Active", True, True)],
)
def test_tracing_modes(tmp_path: Path, tracing: str, lambda_mode: str, stage_traced: bool, sdk: bool) -> None:
    # GIVEN a deployment that chooses no traces (less cold start than none) or the SDK's subsegments
    from infra.app import build_app

    app, stack = build_app(infra_context(tracing=tracing), outdir=str(tmp_path / "cdk.out"))
    app.synth()
    template = json.loads((tmp_path / "cdk.out" / f"{stack.stack_name}.template.json").read_text())
    # THEN the stage, every function, and whether the handlers load the SDK follow the choice
    (stage,) = resources_of_type(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is stage_traced
    for function in resources_of_type(template, "AWS::Lambda::Function").values():
        props = function["Properties"]
        assert props.get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": lambda_mode}
        assert ("POWERTOOLS_TRACE_DISABLED" not in props["Environment"]["Variables"]) is sdk


# --- garbage collection --------------------------------------------------------------------


def test_garbage_collection_runs_daily_as_a_dry_run_by_default(synth: Synthesized) -> None:
    # GIVEN cdk.json's defaults THEN one rule invokes the garbage_collect worker daily, reporting only
    (rule,) = resources_of_type(synth.template, "AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "rate(1 day)"
    (target,) = props["Targets"]
    assert json.loads(target["Input"]) == {"dryRun": True, "deleteUntagged": False, "graceHours": 24}
    collector = next(
        name
        for name, f in resources_of_type(synth.template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == routes.function("garbage_collect").handler
    )
    assert target["Arn"] == {"Fn::GetAtt": [collector, "Arn"]}
    # AND EventBridge may invoke it (and only it)
    permissions = [
        p["Properties"]
        for p in resources_of_type(synth.template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert [p["FunctionName"] for p in permissions] == [{"Fn::GetAtt": [collector, "Arn"]}]


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"gcSchedule": "off"}, None),
        (
            {"gcDelete": "true", "gcDeleteUntagged": True, "gcSchedule": "cron(0 3 ? * SUN *)", "gcGraceHours": 48},
            ("cron(0 3 ? * SUN *)", {"dryRun": False, "deleteUntagged": True, "graceHours": 48}),
        ),
    ],
)
def test_garbage_collection_follows_the_deployments_choices(
    context: dict[str, Any], expected: tuple[str, dict[str, Any]] | None
) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.config import DeploymentConfig
    from infra.maintenance import Maintenance

    # GIVEN a deployment's context values
    stack = cdk.Stack(cdk.App())
    collector = lambda_.Function(
        stack, "Collector", runtime=lambda_.Runtime.PYTHON_3_13, handler="x.y", code=lambda_.Code.from_inline("x")
    )
    Maintenance(stack, "Maintenance", config=DeploymentConfig.from_context(context), collector=collector)
    rules = assertions.Template.from_stack(stack).find_resources("AWS::Events::Rule")
    # THEN the rule is absent, or runs when and how the deployment chose
    if expected is None:
        assert rules == {}
        return
    (rule,) = rules.values()
    assert rule["Properties"]["ScheduleExpression"] == expected[0]
    assert json.loads(rule["Properties"]["Targets"][0]["Input"]) == expected[1]


@pytest.mark.parametrize("bad", [{"gcSchedule": "daily"}, {"gcGraceHours": "0"}])
def test_garbage_collection_refuses_nonsense_at_synth(bad: dict[str, Any]) -> None:
    from infra.config import ConfigError, DeploymentConfig

    with pytest.raises(ConfigError, match="gc"):
        DeploymentConfig.from_context(bad)
