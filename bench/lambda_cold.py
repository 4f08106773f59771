"""What a Lambda cold start costs each handler, in fresh interpreters laid out as Lambda's.

Every figure comes from a new ``python -S`` whose path holds the function code
and the shared layer precompiled as the stack ships them, then the
dependencies (the venv's site-packages), with a deployed function's
environment (``AWS_LAMBDA_FUNCTION_NAME`` set, metrics on); warm disk cache,
as on a Lambda host that has the layers in its page cache. Medians of several
runs, because one sample on a shared machine says little.

* **Cold import**, ``-X importtime``, in the two configurations a function can
  have: Powertools' Tracer off (``tracing`` ``off`` or ``active``: the stack
  sets ``POWERTOOLS_TRACE_DISABLED``, so the X-Ray SDK is never imported) and
  on (``tracing`` ``sdk``). The time is also split by top-level package so the
  heavy dependency is named.
* **First invocation**: the import and then one call with the API Gateway
  event of a typical request, against the filesystem backend on a copy of a
  prepared root, the registry built from the environment as Lambda builds it
  (:func:`vmregistry.runtime.get_registry`). Whatever a handler defers from
  its import to its first call shows here.
* **S3 backend setup**: after the import, building the registry on S3
  (``VMREGISTRY_STORAGE=s3``), which every handler does on its first call in
  AWS: boto3 and botocore imports and the S3 client, no request sent. Paid
  once per cold start on top of the first invocation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LAMBDA_ENV", "cold_costs", "lambda_path", "operations", "vm_manifest"]

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "vmregistry-bench",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "vmregistry",
    "POWERTOOLS_METRICS_NAMESPACE": "VmRegistry",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "VMREGISTRY_STORAGE": "s3",
    "VMREGISTRY_S3_BUCKET": "vmregistry-bench",
    "VMREGISTRY_S3_REGION": "us-east-1",
    "VMREGISTRY_S3_SKIP_BUCKET_CREATION": "true",
}
NO_SDK = {"POWERTOOLS_TRACE_DISABLED": "true"}
REPO = "bench/lambda"
GRANTS = json.dumps([{"name": REPO, "actions": ["delete", "pull", "push"]}])
"""The authorizer context every benchmark request carries, as API Gateway passes it on."""

Request = tuple[str, str, str, bytes, dict[str, str]]


def operations() -> list[str]:
    from vmregistry.routes import ROUTES

    return list(dict.fromkeys(route.operation for route in ROUTES))  # a /v2 twin shares its /v1 function


def lambda_path() -> list[str]:
    """What a deployed function's sys.path holds: its precompiled code, then the layers.

    Built the way the stack builds them (bytecode for the runtime), so the figure is the
    one Lambda pays, not one inflated by compiling sources; the venv's site-packages stand
    in for the dependency layer (pip precompiled it at install).
    """
    import sysconfig

    from infra.build_layers import build_code_asset

    assets = Path(tempfile.mkdtemp(prefix="vmr-lambda-code-"))
    functions = build_code_asset(ROOT / "functions", assets / "functions", "/var/task")
    shared = build_code_asset(ROOT / "layers" / "vmregistry", assets / "vmregistry", "/opt")
    return [str(functions), str(shared / "python"), sysconfig.get_paths()["purelib"]]


def _environ(extra: dict[str, str]) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VMREGISTRY_", "POWERTOOLS_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return inherited | LAMBDA_ENV | extra


def _python(code: str, extra_env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", *flags, "-c", code], capture_output=True, text=True, env=_environ(extra_env), check=True
    )


def _import_once(module: str, path: list[str], sdk: bool) -> tuple[float, dict[str, float]]:
    done = _python(f"import sys; sys.path[:0] = {path!r}; import {module}", {} if sdk else NO_SDK, "-X", "importtime")
    total = 0.0
    by_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0.0) + int(self_us) / 1000
        if name == module:
            total = int(cumulative_us) / 1000
    return total, by_package


# The child times itself with nothing of ours loaded before the clock starts: the event is a
# Python literal and the context a SimpleNamespace (``types`` is loaded at interpreter start).
_FIRST_CALL = """\
import sys, time, types
sys.path[:0] = {path!r}
started = time.perf_counter()
import {module} as handler
imported = time.perf_counter()
context = types.SimpleNamespace(
    function_name="vmregistry-bench", memory_limit_in_mb=512, aws_request_id="bench-1",
    invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:vmregistry-bench",
)
status = handler.lambda_handler({event!r}, context)["statusCode"]
done = time.perf_counter()
print("FIRST", (imported - started) * 1000, (done - started) * 1000, status)
"""

_S3_SETUP = """\
import sys, time
sys.path[:0] = {path!r}
import {module}
started = time.perf_counter()
from vmregistry.runtime import get_registry
get_registry()
print("S3", (time.perf_counter() - started) * 1000)
"""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def vm_manifest(config: bytes, layer: bytes) -> bytes:
    """A vmregistry manifest of one config blob and one disk layer (push both first)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.vmregistry.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.vmregistry.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.vmregistry.disk.v1", "digest": _digest(layer), "size": len(layer)}
            ],
        }
    ).encode()


def _prepare(root: Path) -> dict[str, Request]:
    """Lay out a registry in ``root`` and return each operation's request against it.

    State a request consumes (a blob or tag to delete, a session to complete or
    cancel) is made here, once; every run works on a fresh copy of ``root``.
    """
    from vmregistry.config import Settings
    from vmregistry.local.events import LambdaContext, build_event, split_response
    from vmregistry.registry import Registry
    from vmregistry.routes import find_route
    from vmregistry.storage.filesystem import FilesystemStorage

    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    registry = Registry(FilesystemStorage(str(root)), Settings(fs_path=str(root)))
    from vmregistry import runtime

    runtime.configure(registry)
    import importlib

    def call(method: str, path: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        found = find_route(method, path)
        assert found, (method, path)
        route, params = found
        event = build_event(route, params, method, path, query, (headers or {}).items(), body, authorizer=_context())
        handler = importlib.import_module(route.module).lambda_handler
        status, _, out = split_response(handler(event, LambdaContext(route.operation, "prepare")))
        assert 200 <= status < 400, (method, path, status, out)
        return json.loads(out) if out.startswith(b"{") else None

    config, layer, small, extra, completed = (
        b'{"architecture":"amd64"}',
        os.urandom(4096),
        os.urandom(1024),
        os.urandom(1024),
        os.urandom(1024),
    )
    for blob in (config, layer, small):
        call("PUT", f"/v1/{REPO}/blobs/{_digest(blob)}", body=blob)
    manifest = vm_manifest(config, layer)
    typed = {"Content-Type": "application/vnd.vmregistry.manifest.v1+json"}
    for tag in ("v1", "old"):
        call("PUT", f"/v1/{REPO}/manifests/{tag}", body=manifest, headers=typed)

    def session() -> str:
        return str(call("POST", f"/v1/{REPO}/blobs/uploads/", "mode=multipart")["uuid"])

    open_, to_complete, to_cancel = session(), session(), session()
    runtime.reset()
    uploads = f"/v1/{REPO}/blobs/uploads"
    return {
        "version_check": ("GET", "/v1/", "", b"", {}),
        "catalog_list": ("GET", "/v1/_catalog", "", b"", {}),
        "tags_list": ("GET", f"/v1/{REPO}/tags/list", "", b"", {}),
        "blob_head": ("HEAD", f"/v1/{REPO}/blobs/{_digest(layer)}", "", b"", {}),
        "blob_get": ("GET", f"/v1/{REPO}/blobs/{_digest(layer)}", "", b"", {}),
        "blob_put": ("PUT", f"/v1/{REPO}/blobs/{_digest(extra)}", "", extra, {}),
        "blob_delete": ("DELETE", f"/v1/{REPO}/blobs/{_digest(small)}", "", b"", {}),
        "upload_start": ("POST", f"{uploads}/", f"digest={_digest(extra)}&size={len(extra)}", b"", {}),
        # A part sent inline: without a data plane (no URL signer in a function) URLs are refused.
        "upload_patch": ("PATCH", f"{uploads}/{open_}", "part=1", extra, {}),
        "upload_status": ("GET", f"{uploads}/{open_}", "", b"", {}),
        "upload_complete": ("PUT", f"{uploads}/{to_complete}", f"digest={_digest(completed)}", completed, {}),
        "upload_cancel": ("DELETE", f"{uploads}/{to_cancel}", "", b"", {}),
        "manifest_head": ("HEAD", f"/v1/{REPO}/manifests/v1", "", b"", {}),
        "manifest_get": ("GET", f"/v1/{REPO}/manifests/v1", "", b"", typed | {"Accept": typed["Content-Type"]}),
        "manifest_put": ("PUT", f"/v1/{REPO}/manifests/v2", "", manifest, typed),
        "manifest_delete": ("DELETE", f"/v1/{REPO}/manifests/old", "", b"", {}),
    }


def _context() -> dict[str, str]:
    return {"grants": GRANTS, "sub": "bench"}


def _event(request: Request) -> dict[str, Any]:
    from vmregistry.local.events import build_event
    from vmregistry.routes import find_route

    method, path, query, body, headers = request
    found = find_route(method, path)
    assert found, (method, path)
    route, params = found
    return build_event(route, params, method, path, query, headers.items(), body, authorizer=_context())


def _first_call_once(module: str, path: list[str], event: dict[str, Any], template: Path) -> tuple[float, float, int]:
    """(import ms, import + first call ms, status) in a fresh interpreter on a copy of ``template``."""
    work = Path(tempfile.mkdtemp(prefix="vmr-first-call-"))
    try:
        root = work / "root"
        shutil.copytree(template, root)
        env = NO_SDK | {"VMREGISTRY_STORAGE": "filesystem", "VMREGISTRY_FS_PATH": str(root)}
        done = _python(_FIRST_CALL.format(path=path, module=module, event=event), env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("FIRST "))
    imported, total, status = line.split()[1:]
    return float(imported), float(total), int(status)


def _s3_setup_once(module: str, path: list[str]) -> float:
    done = _python(_S3_SETUP.format(path=path, module=module), NO_SDK)
    return float(done.stdout.split()[-1])


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "ms": round(statistics.median(samples), 1),
        "min": round(min(samples), 1),
        "max": round(max(samples), 1),
    }


def cold_costs(runs: int, only: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per operation: cold import without and with the X-Ray SDK, first invocation, S3 setup."""
    path = lambda_path()
    template = Path(tempfile.mkdtemp(prefix="vmr-first-call-root-"))
    try:
        requests = _prepare(template)
        out: dict[str, Any] = {}
        for operation in only or operations():
            module = f"vmregistry_functions.{operation}"
            if log:
                log(operation)
            plain = [_import_once(module, path, sdk=False) for _ in range(runs)]
            sdk = [_import_once(module, path, sdk=True)[0] for _ in range(runs)]
            event = _event(requests[operation])
            first = [_first_call_once(module, path, event, template) for _ in range(runs)]
            s3 = [_s3_setup_once(module, path) for _ in range(runs)]
            ranked = sorted(plain, key=lambda sample: sample[0])
            top = sorted(ranked[len(ranked) // 2][1].items(), key=lambda item: -item[1])[:4]
            out[operation] = _summary([total for total, _ in plain]) | {
                "top": [[name, round(ms, 1)] for name, ms in top],
                "sdk": _summary(sdk),
                "first_call": _summary([total for _, total, _ in first])
                | {"import_ms": round(statistics.median(imported for imported, _, _ in first), 1)}
                | {"status": first[-1][2]},
                "s3_setup": _summary(s3),
            }
        return out
    finally:
        shutil.rmtree(template, ignore_errors=True)
