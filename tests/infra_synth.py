"""The CDK app, synthesized once per test session, shared by every ``test_infra_*`` module.

Synth takes tens of seconds (jsii starts a Node process, the dependency
layer may have to be built), so :func:`synthesized` caches its result for the
process. The context is ``cdk.json``'s, so the tests see the template
``npx cdk synth`` produces, with only the public key replaced by a fresh
test key (the real ``auth.pub`` is the deployer's).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

__all__ = ["CLI_CONTEXT", "Synthesized", "infra_context", "resources_of_type", "synthesized"]


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    context: dict[str, Any]
    template: dict[str, Any]
    stack: Any  # infra.stack.VmRegistryStack (typed loosely: importing it loads the CDK)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    @property
    def template_file(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"


def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="vmregistry-infra-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def scratch_public_key() -> Path:
    from vmregistry.auth import generate_key_pair

    path = _scratch() / "auth.pub"
    path.write_bytes(generate_key_pair(2048)[1])
    return path


CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
}
"""What the CDK CLI adds to every synth. Path metadata feeds the API deployment's logical id,
so without these the tests would examine a template that differs from ``cdk synth``'s."""


def infra_context(**overrides: Any) -> dict[str, Any]:
    """The context ``npx cdk synth`` runs with: ``cdk.json``'s, the CLI's own, the test key, overrides."""
    from infra.config import cdk_json_context

    return cdk_json_context() | CLI_CONTEXT | {"publicKeyFile": str(scratch_public_key())} | overrides


@functools.cache
def synthesized() -> Synthesized:
    from infra.app import build_app

    outdir = _scratch() / "cdk.out"
    context = infra_context()
    app, stack = build_app(context, outdir=str(outdir))
    app.synth()
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return Synthesized(outdir=outdir, context=context, template=template, stack=stack)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}
