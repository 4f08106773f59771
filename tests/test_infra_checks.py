"""The stack passes cdk-nag and cfn-lint, ``npx cdk synth`` builds the template the tests read,
and bad deployment parameters are refused at synth with the context key named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vmregistry.routes import ROUTES

from infra.api import resource_paths
from infra.config import MAX_SUPPORTED_DEPTH, ROOT, ConfigError, DeploymentConfig
from infra.stack import NAG_ACKNOWLEDGEMENTS
from tests.infra_synth import Synthesized, scratch_public_key, synthesized

CFN_LINT = Path(sys.executable).with_name("cfn-lint")
CDK_CLI = ROOT / "node_modules" / ".bin" / "cdk"

# W3005 "dependency already enforced by GetAtt": CDK makes each function DependsOn its role
# (so the role's policy exists before the first invocation) while also reading the role's Arn.
# The redundancy is CDK's, harmless, and not ours to remove.
CFN_LINT_IGNORED = ["W3005"]


@pytest.fixture(scope="module")
def synth() -> Synthesized:
    return synthesized()


def test_cdk_nag_finds_nothing_unacknowledged(synth: Synthesized) -> None:
    # GIVEN the validation report cdk-nag's AwsSolutions pack wrote at synth
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (nag,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    # THEN it passed, and every finding it let through was acknowledged with a written reason
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    for suppressed in nag["suppressedViolations"]:
        assert len(suppressed["reason"]) > 40, suppressed["ruleName"]
    # ... only for rules the stack documents (IAM5 evidence is acknowledged per role in infra.functions)
    documented = {rule.removeprefix("AwsSolutions::").split("[")[0] for rule in NAG_ACKNOWLEDGEMENTS} | {
        "AwsSolutions-IAM5"
    }
    assert {s["ruleName"].split("[")[0] for s in nag["suppressedViolations"]} <= documented


def test_cfn_lint_accepts_the_template(synth: Synthesized) -> None:
    # WHEN cfn-lint validates the synthesized template against the CloudFormation spec
    result = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", *CFN_LINT_IGNORED, "--", str(synth.template_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it reports nothing
    assert result.returncode == 0, result.stdout + result.stderr


def _api_elements(max_depth: int) -> int:
    """API Gateway resources and methods the route table needs for names of depth 1..``max_depth``."""
    resources: set[str] = set()
    methods = 0
    for route in ROUTES:
        for path in resource_paths(route, max_depth):
            segments = path.strip("/").split("/")
            resources.update("/".join(segments[:i]) for i in range(1, len(segments) + 1) if segments[0])
            methods += 1
    return len(resources) + methods


def test_template_stays_within_cloudformation_limits(synth: Synthesized) -> None:
    # GIVEN the template at the configured depth, and what the deepest supported depth adds to it
    depth = int(synth.context["maxRepositoryDepth"])
    added = _api_elements(MAX_SUPPORTED_DEPTH) - _api_elements(depth)
    # THEN even the deepest supported names fit in one template (500 resources), and one more would not
    assert len(synth.resources) + added < 500
    assert len(synth.resources) + _api_elements(MAX_SUPPORTED_DEPTH + 1) - _api_elements(depth) > 500


@pytest.mark.skipif(not CDK_CLI.exists(), reason="needs the pinned CDK CLI: run `npm ci` (make test does)")
def test_cdk_cli_synth_builds_the_template_the_tests_read(synth: Synthesized, tmp_path: Path) -> None:
    # GIVEN the pinned CLI, run the way a user runs it (cdk.json's app command and context),
    # without AWS credentials so no account or region leaks into the template
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env |= {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_VERSION_CHECK": "1",
    }
    outdir = tmp_path / "cdk.out"
    key_context = ["--context", f"publicKeyFile={scratch_public_key()}"]
    # WHEN it synthesizes (nag checks included) with the test's public key
    result = subprocess.run(
        [str(CDK_CLI), "synth", "--quiet", "--no-notices", "--output", str(outdir), *key_context],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # THEN it succeeds and its template is the one every infra test examined
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cli_template = json.loads((outdir / synth.template_file.name).read_text())
    assert cli_template == synth.template


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"maxRepositoryDepth": 0}, "maxRepositoryDepth"),
        ({"maxRepositoryDepth": MAX_SUPPORTED_DEPTH + 1}, "maxRepositoryDepth"),
        ({"maxRepositoryDepth": "deep"}, "maxRepositoryDepth"),
        ({"retainBucket": "maybe"}, "retainBucket"),
        ({"presignExpires": 8 * 24 * 3600}, "presignExpires"),
        ({"memorySize": 64}, "memorySize"),
        ({"stageName": "a/b"}, "stageName"),
        ({"tracing": "xray"}, "tracing"),
        ({"architecture": "aarch64"}, "architecture"),
        ({"verifyInlineBytes": -1}, "verifyInlineBytes"),
    ],
)
def test_bad_parameters_are_refused_with_the_key_named(context: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DeploymentConfig.from_context(context)


def test_command_line_strings_are_read_like_cdk_json_values() -> None:
    # GIVEN `-c maxRepositoryDepth=6 -c retainBucket=false` (strings) and cdk.json's JSON values
    from_cli = DeploymentConfig.from_context({"maxRepositoryDepth": "6", "retainBucket": "false"})
    from_json = DeploymentConfig.from_context({"maxRepositoryDepth": 6, "retainBucket": False})
    # THEN both mean the same deployment
    assert from_cli == from_json
    assert (from_cli.max_repository_depth, from_cli.retain_bucket) == (6, False)


@pytest.mark.parametrize(
    ("value", "mode"),
    [("off", "off"), ("ACTIVE", "active"), ("sdk", "sdk"), (True, "active"), ("false", "off"), (False, "off")],
)
def test_tracing_takes_a_mode_or_the_former_booleans(value: object, mode: str) -> None:
    # GIVEN a mode, or true/false as cdk.json and -c tracing=... held them before the modes
    # THEN on/off keep their meaning (traces or none), and traces no longer cost the SDK's import
    assert DeploymentConfig.from_context({"tracing": value}).tracing == mode


@pytest.mark.parametrize(("value", "architecture"), [("arm64", "arm64"), ("X86_64", "x86_64"), (None, "arm64")])
def test_architecture_is_chosen_by_context_and_defaults_to_graviton(value: str | None, architecture: str) -> None:
    # GIVEN `-c architecture=...` or nothing
    context = {} if value is None else {"architecture": value}
    # THEN the functions and the dependency layer's wheels are for that architecture, arm64 by default
    assert DeploymentConfig.from_context(context).architecture == architecture


def test_a_missing_public_key_stops_synth_with_instructions(tmp_path: Path) -> None:
    config = DeploymentConfig.from_context({"publicKeyFile": str(tmp_path / "absent.pub")})
    with pytest.raises(ConfigError, match="publicKeyFile"):
        config.public_key_path()


def test_cdk_json_holds_a_default_for_every_parameter() -> None:
    from infra.config import CONTEXT_KEYS, cdk_json_context

    context = cdk_json_context()
    assert set(CONTEXT_KEYS.values()) <= set(context)
    assert DeploymentConfig.from_context(context) == DeploymentConfig()
