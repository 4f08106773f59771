"""Least privilege: each function's IAM policy grants only what its operation's route grants."""

from __future__ import annotations

from typing import Any

import pytest
from vmregistry import routes
from vmregistry.config import env_name
from vmregistry.routes import AUTHORIZER

from infra.functions import S3_ACTIONS, function_specs
from tests.infra_synth import Synthesized, resources_of_type, synthesized

ROLE_FOR_LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.fixture(scope="module")
def synth() -> Synthesized:
    return synthesized()


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def statements_by_handler(synth: Synthesized) -> dict[str, list[dict[str, Any]]]:
    """Handler -> every statement of every policy attached to its function's role."""
    functions = resources_of_type(synth.template, "AWS::Lambda::Function")
    policies = resources_of_type(synth.template, "AWS::IAM::Policy").values()
    out: dict[str, list[dict[str, Any]]] = {}
    for function in functions.values():
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = [
            s
            for p in policies
            if {"Ref": role} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        out[function["Properties"]["Handler"]] = statements
    return out


def s3_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in _actions(s) if a.startswith("s3:")}


def test_each_function_holds_exactly_its_routes_storage_grants(synth: Synthesized) -> None:
    by_handler = statements_by_handler(synth)
    for spec in function_specs():
        # GIVEN what the route table says the operation may do to storage
        expected = {a for grant in spec.grants for a in S3_ACTIONS[grant][0] + S3_ACTIONS[grant][1]}
        # THEN its role allows those S3 actions and no other
        assert s3_actions(by_handler[spec.handler]) == expected, spec.name


def test_download_functions_cannot_write_and_only_deleters_delete(synth: Synthesized) -> None:
    by_handler = statements_by_handler(synth)
    # The function that presigns downloads signs with its own credentials: it must not hold a write grant
    blob_get = s3_actions(by_handler[routes.function("blob_get").handler])
    assert "s3:GetObject" in blob_get
    assert not blob_get & {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    # Only the operations (routes and workers) whose table entry grants delete can delete objects
    deleters = {h for h, statements in by_handler.items() if "s3:DeleteObject" in s3_actions(statements)}
    assert deleters == {spec.handler for spec in function_specs() if "delete" in spec.grants}
    assert deleters  # blob_delete, manifest_delete, ...
    # No function may touch the bucket's configuration or policy
    for handler, statements in by_handler.items():
        assert all(
            a.startswith(("s3:Get", "s3:Put", "s3:List", "s3:Delete", "s3:Abort")) for a in s3_actions(statements)
        )
        assert not {a for a in s3_actions(statements) if "Bucket" in a and a != "s3:ListBucket"}, handler


def test_the_authorizer_has_no_storage_access(synth: Synthesized) -> None:
    assert s3_actions(statements_by_handler(synth)[AUTHORIZER.handler]) == set()


def test_object_actions_apply_to_objects_and_bucket_actions_to_the_bucket(synth: Synthesized) -> None:
    (bucket,) = resources_of_type(synth.template, "AWS::S3::Bucket")
    for handler, statements in statements_by_handler(synth).items():
        for statement in statements:
            actions = _actions(statement)
            if actions == {"s3:ListBucket"}:
                assert statement["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}, handler
            elif any(a.startswith("s3:") for a in actions):
                assert statement["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}, handler


def test_functions_write_logs_only_to_their_own_group_and_use_no_managed_policy(synth: Synthesized) -> None:
    functions = resources_of_type(synth.template, "AWS::Lambda::Function")
    by_handler = statements_by_handler(synth)
    for function in functions.values():
        props = function["Properties"]
        role = synth.resources[props["Role"]["Fn::GetAtt"][0]]
        assert "ManagedPolicyArns" not in role["Properties"]
        own_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        for statement in by_handler[props["Handler"]]:
            actions = _actions(statement)
            # THEN every statement is logs (own group), X-Ray, S3, or invoking a worker: nothing else
            assert (
                actions <= ROLE_FOR_LOGS | XRAY
                or actions == {"lambda:InvokeFunction"}
                or all(a.startswith("s3:") for a in actions)
            ), actions
            if actions & ROLE_FOR_LOGS:
                assert statement["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [own_group, "Arn"]}, ":*"]]}


def test_only_a_workers_invokers_may_invoke_it_and_know_its_name(synth: Synthesized) -> None:
    functions = resources_of_type(synth.template, "AWS::Lambda::Function")
    id_of = {f["Properties"]["Handler"]: key for key, f in functions.items()}
    by_handler = statements_by_handler(synth)
    workers = [spec for spec in function_specs() if spec.setting is not None]
    expected: dict[str, set[str]] = {}
    for worker in workers:
        for operation in worker.invoked_by:
            expected.setdefault(routes.function(operation).handler, set()).add(id_of[worker.handler])
    # GIVEN the statements that allow lambda:InvokeFunction
    invoking = {
        handler: {s["Resource"]["Fn::GetAtt"][0] for s in statements if _actions(s) == {"lambda:InvokeFunction"}}
        for handler, statements in by_handler.items()
    }
    # THEN exactly the declared invokers hold them, each on its worker's ARN alone
    assert {h: targets for h, targets in invoking.items() if targets} == expected
    # ... and each invoker is told the worker's function name through the worker's setting
    for worker in workers:
        for operation in worker.invoked_by:
            variables = functions[id_of[routes.function(operation).handler]]["Properties"]["Environment"]["Variables"]
            assert variables[env_name(worker.setting or "")] == {"Ref": id_of[worker.handler]}
