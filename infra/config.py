"""Deployment parameters: CDK context values, read once into one typed object.

Every knob of the stack is a context value, so ``cdk.json`` holds the defaults,
``npx cdk deploy -c maxRepositoryDepth=6`` overrides one, and a test builds
exactly the template ``cdk synth`` builds by handing the same context to
``cdk.App(context=...)`` (``cdk.App()`` in a test does not read ``cdk.json``:
:func:`cdk_json_context` does it for them). Values arrive as strings from the
command line and as JSON values from ``cdk.json``; :meth:`DeploymentConfig.from_context`
accepts both and refuses nonsense early, at synth, with the context key named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ARCHITECTURES",
    "CONTEXT_KEYS",
    "DEFAULT_ARCHITECTURE",
    "LAMBDA_PLATFORMS",
    "MAX_SUPPORTED_DEPTH",
    "PYTHON_VERSION",
    "ROOT",
    "TRACING_MODES",
    "Architecture",
    "ConfigError",
    "DeploymentConfig",
    "Tracing",
    "cdk_json_context",
]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: assets (``functions/``, ``layers/``, ``build/``) are found from here."""

PYTHON_VERSION = "3.13"
"""The Lambda runtime's Python, and the interpreter that must build the layers.

Not simply the newest runtime CDK offers (3.14): Lambda's ``/opt`` and ``/var/task``
are read-only, so modules without precompiled bytecode are compiled again at every
cold start (``blob_head`` imported in ~2.9 s instead of ~0.6 s), and bytecode can only
be produced by the same CPython version. 3.13 is the newest one the project's machines
have; move to a newer runtime together with the interpreter that builds the layers.
The dependency layer's wheels are chosen for this version too."""

Architecture = Literal["arm64", "x86_64"]
ARCHITECTURES: tuple[Architecture, ...] = ("arm64", "x86_64")

DEFAULT_ARCHITECTURE: Architecture = "arm64"
"""Graviton: cheaper per GB-second than x86_64, and every dependency ships aarch64 wheels."""

LAMBDA_PLATFORMS: dict[Architecture, str] = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
"""The pip platform whose wheels each architecture's functions load (the dependency layer)."""

MAX_SUPPORTED_DEPTH = 7
"""Each repository depth adds 48 API Gateway resources and methods to the one template (``/v1`` and
``/v2``: 20 resources, 28 methods); at depth 7 the template holds 467 of CloudFormation's 500
(``tests/test_infra_checks.py`` checks the arithmetic). Deeper names would need a second stack."""


Tracing = Literal["off", "active", "sdk"]
TRACING_MODES: tuple[Tracing, ...] = ("off", "active", "sdk")
_TRACING_BOOLEANS: dict[str, Tracing] = {
    **dict.fromkeys(("true", "1", "yes"), "active"),
    **dict.fromkeys(("false", "0", "no"), "off"),
}
"""What the former on/off parameter meant, in today's modes: traces (Lambda's own), or none."""


class ConfigError(ValueError):
    """A context value the stack cannot be built from."""


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """What a deployment may choose; each field is the context key in camelCase."""

    max_repository_depth: int = 4
    public_key_file: str = "auth.pub"
    auth_issuer: str = ""
    auth_audience: str = ""
    auth_leeway: int = 30
    auth_realm: str = "vmregistry"
    auth_service: str = "vmregistry"
    bucket_name: str = ""
    retain_bucket: bool = True
    presign_expires: int = 900
    upload_expiry_days: int = 3
    log_retention_days: int = 30
    memory_size: int = 512
    stage_name: str = "registry"
    throttle_rate_limit: int = 100
    throttle_burst_limit: int = 200
    alarm_email: str = ""
    architecture: Architecture = DEFAULT_ARCHITECTURE
    """What the functions run on, and what the dependency layer's compiled wheels are built for:
    ``x86_64`` where a dependency ships no aarch64 wheel or Graviton is not wanted (and to run
    the functions on an x86_64 host, as the emulator does)."""
    verify_inline_bytes: int = 1024 * 1024 * 1024
    """``VMREGISTRY_VERIFY_INLINE_BYTES``: a multipart blob larger than this is verified by the
    ``blob_verify`` worker after the API answered 202. The default lets ``upload_complete`` hash
    up to 1 GiB within API Gateway's 29 s; a smaller value sends more uploads to the worker."""
    tracing: Tracing = "active"
    """X-Ray. ``active``: API Gateway and Lambda trace every request themselves (the function's
    init and invocation appear in the trace), and the handlers never import the X-Ray SDK.
    ``sdk``: Powertools' Tracer adds the handler's own subsegment and one per AWS call, at
    ~0.3-0.5 s more cold start (the SDK's imports). ``off``: no traces. ``true`` and ``false``
    (and 1/0, yes/no), the values of the former on/off parameter, mean ``active`` and ``off``."""
    gc_schedule: str = "rate(1 day)"
    """When the garbage collector runs (an EventBridge ``rate(...)`` or ``cron(...)``); ``off``: never."""
    gc_delete: bool = False
    """``false`` (the default): each run is a dry run that only reports (``ReclaimableBytes``);
    ``true``: it deletes. Deleting is a decision an operator makes once, knowingly."""
    gc_delete_untagged: bool = False
    """Also delete manifests no tag reaches (images only pullable by digest)."""
    gc_grace_hours: int = 24
    """What is younger than this is never collected (uploads and pushes in flight)."""

    @classmethod
    def from_context(cls, get: Mapping[str, Any] | Any) -> DeploymentConfig:
        """Build from a mapping or from ``node.try_get_context`` (anything callable with a key)."""
        lookup = get.get if isinstance(get, Mapping) else get
        defaults = cls()
        values: dict[str, Any] = {}
        for field_name, key in CONTEXT_KEYS.items():
            raw = lookup(key)
            default = getattr(defaults, field_name)
            if raw is None:
                values[field_name] = default
            elif field_name == "tracing":
                values[field_name] = _tracing(key, raw)
            elif field_name == "architecture":
                values[field_name] = _architecture(key, raw)
            else:
                values[field_name] = _coerce(key, raw, type(default))
        config = cls(**values)
        config._validate()
        return config

    def _validate(self) -> None:
        if not 1 <= self.max_repository_depth <= MAX_SUPPORTED_DEPTH:
            raise ConfigError(f"maxRepositoryDepth must be between 1 and {MAX_SUPPORTED_DEPTH}")
        if not 60 <= self.presign_expires <= 7 * 24 * 3600:
            raise ConfigError("presignExpires must be between 60 s and 7 days (SigV4's limit)")
        if self.upload_expiry_days < 1:
            raise ConfigError("uploadExpiryDays must be at least 1")
        if not 128 <= self.memory_size <= 10240:
            raise ConfigError("memorySize must be between 128 and 10240 MB")
        if self.throttle_rate_limit < 1 or self.throttle_burst_limit < 1:
            raise ConfigError("throttleRateLimit and throttleBurstLimit must be positive")
        if self.gc_schedule != "off" and not self.gc_schedule.startswith(("rate(", "cron(")):
            raise ConfigError("gcSchedule must be an EventBridge rate(...) or cron(...) expression, or off")
        if self.gc_grace_hours < 1:
            raise ConfigError("gcGraceHours must be at least 1: younger objects may belong to pushes in flight")
        if self.verify_inline_bytes < 0:
            raise ConfigError("verifyInlineBytes must be 0 or more")
        if not self.stage_name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError("stageName may hold letters, digits, '-' and '_'")

    def public_key_path(self, root: Path = ROOT) -> Path:
        """The PEM file of the Auth Server's public key; relative paths are from the repository root."""
        path = Path(self.public_key_file).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ConfigError(
                f"publicKeyFile {self.public_key_file!r} not found: pass the Auth Server's RSA public key "
                "(PEM) with -c publicKeyFile=<path>; a registry without it would be open to anyone"
            )
        return path


CONTEXT_KEYS: dict[str, str] = {
    name: name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:])
    for name in DeploymentConfig.__dataclass_fields__
}
"""Field name -> context key (``max_repository_depth`` -> ``maxRepositoryDepth``)."""


def _coerce(key: str, raw: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"true", "1", "yes"}:
            return True
        if text in {"false", "0", "no"}:
            return False
        raise ConfigError(f"{key} must be true or false, not {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, not {raw!r}") from None
    return str(raw)


def _tracing(key: str, raw: Any) -> Tracing:
    text = str(raw).strip().lower()  # JSON true/false arrive as bool: str() makes "True"/"False"
    text = _TRACING_BOOLEANS.get(text, text)
    if text not in TRACING_MODES:
        raise ConfigError(f"{key} must be one of {', '.join(TRACING_MODES)}, not {raw!r}")
    return text


def _architecture(key: str, raw: Any) -> Architecture:
    text = str(raw).strip().lower()
    for architecture in ARCHITECTURES:
        if text == architecture:
            return architecture
    raise ConfigError(f"{key} must be one of {', '.join(ARCHITECTURES)}, not {raw!r}")


def cdk_json_context(root: Path = ROOT) -> dict[str, Any]:
    """The ``context`` of ``cdk.json``: what ``cdk synth`` passes to the app, for tests to pass too."""
    data = json.loads((root / "cdk.json").read_text())
    context: dict[str, Any] = data.get("context", {})
    return context
