"""What each Lambda function costs: cold import, warm invocation, artefact size.

* **Cold import**: ``python -S -X importtime`` importing the handler module in a
  fresh interpreter whose path is what Lambda's holds (the function code and the
  shared layer precompiled as the stack ships them, then the dependencies; warm
  disk cache, as on a Lambda host that has the layers in its page cache), with
  the environment a deployed function has (``AWS_LAMBDA_FUNCTION_NAME`` set),
  tracing on (the stack's default) and off, median of several runs; the time is
  also split by top-level package so the heavy dependency is named.
* **Warm invocation**: each ``lambda_handler`` called in one process with the
  API Gateway REST event :func:`vmregistry.local.events.build_event` builds,
  against the filesystem backend on a temporary root (the warm path of the
  code, not S3's latency); setup that an operation needs each time (a session
  to complete, a tag to delete) is done before the clock starts. Tracing and
  metrics are off as in local mode: X-Ray has no daemon to talk to here.
* **Artefact sizes**: the function code, the domain layer and the dependency
  layer as the CDK build leaves them under ``build/`` (precompiled), zipped as
  CDK would.

Run in a subprocess by :mod:`bench.run` (``python -m bench.lambda_costs``) so
the process-wide registry and Powertools' environment stay its own.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["artefact_sizes", "import_times", "warm_invocations"]

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "vmregistry-bench",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "vmregistry",
    "POWERTOOLS_METRICS_NAMESPACE": "VmRegistry",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "VMREGISTRY_STORAGE": "s3",
    "VMREGISTRY_S3_BUCKET": "vmregistry-bench",
}


def _operations() -> list[str]:
    from vmregistry.routes import ROUTES

    return [route.operation for route in ROUTES]


def _lambda_path() -> list[str]:
    """What a deployed function's sys.path holds: its precompiled code, then the layers.

    Built the way the stack builds them (bytecode for the runtime), so the figure is the
    one Lambda pays, not one inflated by compiling sources; the venv's site-packages stand
    in for the dependency layer (pip precompiled it at install).
    """
    from infra.build_layers import build_code_asset

    assets = Path(tempfile.mkdtemp(prefix="vmr-lambda-code-"))
    functions = build_code_asset(ROOT / "functions", assets / "functions", "/var/task")
    shared = build_code_asset(ROOT / "layers" / "vmregistry", assets / "vmregistry", "/opt")
    import sysconfig

    return [str(functions), str(shared / "python"), sysconfig.get_paths()["purelib"]]


def _import_once(module: str, path: list[str], traced: bool) -> tuple[float, dict[str, float]]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VMREGISTRY_", "POWERTOOLS_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    environ |= LAMBDA_ENV | ({} if traced else {"POWERTOOLS_TRACE_DISABLED": "true"})
    code = f"import sys; sys.path[:0] = {path!r}; import {module}"
    done = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
    )
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


def import_times(runs: int, operations: list[str] | None = None) -> dict[str, Any]:
    """``{operation: {"ms": median, "min", "max", "top": [[package, ms], ...]}}``."""
    out: dict[str, Any] = {}
    path = _lambda_path()
    for operation in operations or _operations():
        module = f"vmregistry_functions.{operation}"
        samples = [_import_once(module, path, traced=True) for _ in range(runs)]
        untraced = [_import_once(module, path, traced=False)[0] for _ in range(runs)]
        times = [total for total, _ in samples]
        packages = samples[len(samples) // 2][1]
        top = sorted(packages.items(), key=lambda item: -item[1])[:4]
        out[operation] = {
            "ms": round(statistics.median(times), 1),
            "untraced_ms": round(statistics.median(untraced), 1),
            "min": round(min(times), 1),
            "max": round(max(times), 1),
            "top": [[name, round(ms, 1)] for name, ms in top],
        }
    return out


def _zip_size(directory: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():  # bytecode included: the stack ships it
                archive.write(path, path.relative_to(directory))
    return buffer.tell()


def _tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def artefact_sizes() -> dict[str, Any]:
    """Zipped and unzipped bytes of the function code and each layer."""
    out: dict[str, Any] = {}
    # What the stack uploads: precompiled copies under build/ (made by its synth).
    candidates = {
        "functions": ROOT / "build" / "functions",
        "layer vmregistry": ROOT / "build" / "layers" / "vmregistry",
        "layer deps": ROOT / "build" / "layers" / "deps",
    }
    for name, directory in candidates.items():
        if directory.is_dir():
            out[name] = {"zipped": _zip_size(directory), "unzipped": _tree_size(directory)}
        else:
            out[name] = {"missing": f"{directory.relative_to(ROOT)} not built (the CDK build makes it)"}
    return out


def warm_invocations(iterations: int) -> dict[str, Any]:
    """``{operation: {"p50_ms", "p99_ms", "status"}}`` for every handler, in this process."""
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    import importlib

    from vmregistry.config import Settings
    from vmregistry.local.events import LambdaContext, build_event, split_response
    from vmregistry.registry import Registry
    from vmregistry.routes import find_route
    from vmregistry.runtime import configure
    from vmregistry.storage.filesystem import FilesystemStorage
    from vmregistry.storage.signing import UrlSigner

    tmp = tempfile.mkdtemp(prefix="bench-lambda-")
    settings = Settings(fs_path=tmp)
    configure(Registry(FilesystemStorage(tmp, UrlSigner("http://127.0.0.1:9", b"bench")), settings))
    handlers = {op: importlib.import_module(f"vmregistry_functions.{op}").lambda_handler for op in _operations()}

    def call(
        method: str, path: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        found = find_route(method, path)
        assert found, (method, path)
        route, params = found
        event = build_event(route, params, method, path, query, (headers or {}).items(), body)
        response = handlers[route.operation](
            event, LambdaContext(route.operation, event["requestContext"]["requestId"])
        )
        status, _, out = split_response(response)
        return status, out

    def digest_of(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    repo = "bench/lambda"
    config, layer = b'{"architecture":"amd64"}', os.urandom(4096)
    for blob in (config, layer):
        call("PUT", f"/v1/{repo}/blobs/{digest_of(blob)}", body=blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.vmregistry.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.vmregistry.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.vmregistry.disk.v1", "digest": digest_of(layer), "size": len(layer)}
            ],
        }
    ).encode()
    manifest_type = {"Content-Type": "application/vnd.vmregistry.manifest.v1+json"}
    call("PUT", f"/v1/{repo}/manifests/v1", body=manifest, headers=manifest_type)

    def session(mode: str = "multipart") -> str:
        status, out = call("POST", f"/v1/{repo}/blobs/uploads/", f"mode={mode}")
        assert status == 202, out
        return str(json.loads(out)["uuid"])

    counter = iter(range(10**9))
    small = os.urandom(1024)
    open_session = session()
    # Each case: (setup run before the clock starts -> the request to time).
    Case = Callable[[], tuple[str, str, str, bytes, dict[str, str]]]
    cases: dict[str, Case] = {
        "version_check": lambda: ("GET", "/v1/", "", b"", {}),
        "catalog_list": lambda: ("GET", "/v1/_catalog", "", b"", {}),
        "tags_list": lambda: ("GET", f"/v1/{repo}/tags/list", "", b"", {}),
        "blob_head": lambda: ("HEAD", f"/v1/{repo}/blobs/{digest_of(layer)}", "", b"", {}),
        "blob_get": lambda: ("GET", f"/v1/{repo}/blobs/{digest_of(layer)}", "", b"", {}),
        "blob_put": lambda: ("PUT", f"/v1/{repo}/blobs/{digest_of(small)}", "", small, {}),
        "blob_delete": lambda: (
            call("PUT", f"/v1/{repo}/blobs/{digest_of(small)}", body=small),
            ("DELETE", f"/v1/{repo}/blobs/{digest_of(small)}", "", b"", {}),
        )[1],
        "upload_start": lambda: (
            "POST",
            f"/v1/{repo}/blobs/uploads/",
            f"digest={digest_of(layer)}&size={len(layer)}",
            b"",
            {},
        ),
        "upload_patch": lambda: ("PATCH", f"/v1/{repo}/blobs/uploads/{open_session}", "part=1", b"", {}),
        "upload_status": lambda: ("GET", f"/v1/{repo}/blobs/uploads/{open_session}", "", b"", {}),
        "upload_complete": lambda: (
            "PUT",
            f"/v1/{repo}/blobs/uploads/{session()}",
            f"digest={digest_of(small)}",
            small,
            {},
        ),
        "upload_cancel": lambda: ("DELETE", f"/v1/{repo}/blobs/uploads/{session()}", "", b"", {}),
        "manifest_head": lambda: ("HEAD", f"/v1/{repo}/manifests/v1", "", b"", {}),
        "manifest_get": lambda: ("GET", f"/v1/{repo}/manifests/v1", "", b"", {}),
        "manifest_put": lambda: ("PUT", f"/v1/{repo}/manifests/v1", "", manifest, manifest_type),
        "manifest_delete": lambda: (
            call("PUT", f"/v1/{repo}/manifests/del{(n := next(counter))}", body=manifest, headers=manifest_type),
            ("DELETE", f"/v1/{repo}/manifests/del{n}", "", b"", {}),
        )[1],
    }
    out: dict[str, Any] = {}
    for operation in _operations():
        make = cases.get(operation)
        if make is None:
            out[operation] = {"missing": "no benchmark case"}
            continue
        samples = []
        status = 0
        for i in range(iterations + max(5, iterations // 10)):
            method, path, query, body, headers = make()
            found = find_route(method, path)
            assert found, (method, path)
            route, params = found
            event = build_event(route, params, method, path, query, headers.items(), body)
            context = LambdaContext(route.operation, event["requestContext"]["requestId"])
            started = time.perf_counter()
            response = handlers[operation](event, context)
            elapsed = time.perf_counter() - started
            status = int(response["statusCode"])
            if i >= max(5, iterations // 10):  # the first calls warm caches: not counted
                samples.append(elapsed * 1000)
        samples.sort()
        out[operation] = {
            "p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
            "status": status,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lambda_costs")
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--import-only", nargs="*", metavar="OPERATION", help="time the import of these handlers only")
    args = parser.parse_args(argv)
    result = {
        "import": import_times(args.import_runs, args.import_only),
        "invoke": warm_invocations(args.iterations),
        "artefacts": artefact_sizes(),
    }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
