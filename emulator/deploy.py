"""Synthesize the real stack once, bootstrap the emulator's account, deploy, read the outputs.

The CDK CLI pinned in ``package.json`` does the work, through ``cdklocal``
(npm ``aws-cdk-local``, pinned beside it): it drops every ``AWS_*`` variable
of the caller's shell except endpoints and those allowed explicitly, so a
developer's AWS profile can never be what the deploy talks to. The app is
synthesized once into the state folder and that cloud assembly is what both
``bootstrap`` and ``deploy`` read (``--app <folder>``), so the template
deployed is exactly the one ``cdk synth`` writes for the same context. Then,
as an operator would beside the stack, the API gets a custom domain with the
stage at its root, for OCI clients (:mod:`emulator.domain`).

Context: ``cdk.json``'s, then the emulator's own (:func:`emulator_context`),
then the caller's. Only two values differ from a default deployment, and
neither changes what AWS would run: the functions' ``architecture`` is the
host's (the emulator runs them on this machine) and the bucket is not
retained (the emulator's state is thrown away).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulator.domain import map_custom_domain
from emulator.process import ACCOUNT, REGION, ROOT, Emulator
from emulator.tls import CUSTOM_DOMAIN

__all__ = ["STACK", "DeployError", "Deployment", "deploy", "emulator_context", "host_architecture"]

STACK = "VmRegistry"
CDKLOCAL = ROOT / "node_modules" / ".bin" / "cdklocal"
DEPLOY_TIMEOUT = 600


class DeployError(RuntimeError):
    """The CDK CLI failed; the message carries the end of its output."""


def host_architecture() -> str:
    """The Lambda architecture this machine runs natively: emulated functions are host processes."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise DeployError(f"Lambda has no architecture for this machine ({machine}): the emulator cannot run the functions")


def emulator_context(public_key: Path) -> dict[str, str]:
    return {
        "publicKeyFile": str(public_key.resolve()),
        "architecture": host_architecture(),
        "retainBucket": "false",
    }


@dataclass(frozen=True)
class Deployment:
    """The deployed stack, and the ways to reach its API on this machine."""

    emulator: Emulator
    outputs: Mapping[str, str]
    seconds: float
    """Synth, bootstrap and deploy, wall clock."""

    @property
    def aws_url(self) -> str:
        """``ApiUrl`` as the stack outputs it: the URL this API would have in AWS."""
        return self.outputs["ApiUrl"]

    @property
    def api_id(self) -> str:
        return (urlsplit(self.aws_url).hostname or "").split(".", 1)[0]

    @property
    def stage(self) -> str:
        return urlsplit(self.aws_url).path.strip("/")

    @property
    def url(self) -> str:
        """The API on the emulator, path-style (``<endpoint>/_aws/execute-api/<api-id>/<stage>``).

        What the reference client is given: it resolves names like ``localhost``, unlike
        ``<api-id>.execute-api.localhost``. A client that follows ``Location`` literally
        should use :attr:`host` instead (see docs/deploy.md)."""
        return f"{self.emulator.endpoint}/_aws/execute-api/{self.api_id}/{self.stage}"

    @property
    def host(self) -> str:
        """The ``Host`` of the API's AWS-shaped form: ``<api-id>.execute-api.localhost:<port>``.

        Sent to 127.0.0.1, it makes the emulator serve the API at ``/<stage>/...``, exactly
        the paths AWS serves (and writes into ``Location``)."""
        return f"{self.api_id}.execute-api.localhost:{urlsplit(self.emulator.endpoint).port}"

    @property
    def oci_host(self) -> str:
        """The API's custom domain, the stage mapped at its root: where OCI clients find ``/v2/``.

        ``registry.localhost:<port>`` (:mod:`emulator.domain`); AWS's equivalent is the
        custom domain docs/deploy.md describes for OCI clients."""
        return f"{CUSTOM_DOMAIN}:{urlsplit(self.emulator.endpoint).port}"

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]


def _cli(emulator: Emulator, *args: str, log: Path) -> None:
    if not CDKLOCAL.exists():
        raise DeployError(f"{CDKLOCAL} is missing: run `make cdk`")
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "npm_config_cache")
    environment = {k: v for k, v in os.environ.items() if k in keep}
    environment |= emulator.aws_environment()
    environment |= {
        # cdklocal removes AWS_* variables it is not told to keep; the CA is one to keep.
        "AWS_ENVAR_ALLOWLIST": "AWS_CA_BUNDLE,AWS_REGION,AWS_DEFAULT_REGION",
        "CDK_DEFAULT_ACCOUNT": ACCOUNT,
        "CDK_DEFAULT_REGION": REGION,
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CI": "true",  # no interactive progress bars in the log
    }
    with open(log, "ab") as handle:
        handle.write(f"\n$ cdklocal {' '.join(args)}\n".encode())
        handle.flush()
        result = subprocess.run(
            [str(CDKLOCAL), *args],
            cwd=ROOT,
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=DEPLOY_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-6000:]
        raise DeployError(f"cdklocal {args[0]} failed ({result.returncode}); {log}:\n{tail}")


def deploy(emulator: Emulator, public_key: Path, context: Mapping[str, Any] | None = None) -> Deployment:
    """Synthesize, bootstrap and deploy the stack into ``emulator``; its outputs when done."""
    started = time.monotonic()
    assembly = emulator.state / "cdk.out"
    shutil.rmtree(assembly, ignore_errors=True)  # stale assets stay in cdk.out between synths
    log = emulator.state / "deploy.log"
    flags = [f"--context={key}={value}" for key, value in (emulator_context(public_key) | dict(context or {})).items()]
    _cli(emulator, "synth", "--quiet", f"--output={assembly}", *flags, log=log)
    app = f"--app={assembly}"
    _cli(emulator, "bootstrap", app, f"aws://{ACCOUNT}/{REGION}", log=log)
    outputs_file = emulator.state / "outputs.json"
    _cli(emulator, "deploy", app, STACK, "--require-approval=never", f"--outputs-file={outputs_file}", log=log)
    outputs: dict[str, str] = json.loads(outputs_file.read_text())[STACK]
    deployment = Deployment(emulator, outputs, time.monotonic() - started)
    map_custom_domain(emulator, deployment.api_id, deployment.stage)
    return deployment
