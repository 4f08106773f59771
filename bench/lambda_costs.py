"""What each Lambda function costs: cold start, warm invocation, artefact size.

* **Cold start** (:mod:`bench.lambda_cold`): the import of every handler module
  in a fresh interpreter laid out as Lambda's, without and with the X-Ray SDK,
  the import plus a first invocation, and the S3 backend's setup.
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
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lambda_cold import cold_costs, operations, vm_manifest
from infra.config import DEFAULT_ARCHITECTURE

__all__ = ["artefact_sizes", "warm_invocations"]

ROOT = Path(__file__).resolve().parent.parent


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
        "layer deps": ROOT / "build" / "layers" / f"deps-{DEFAULT_ARCHITECTURE}",
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
    handlers = {op: importlib.import_module(f"vmregistry_functions.{op}").lambda_handler for op in operations()}

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
    manifest = vm_manifest(config, layer)
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
        "referrers_list": lambda: ("GET", f"/v2/{repo}/referrers/{digest_of(manifest)}", "", b"", {}),
        "manifest_put": lambda: ("PUT", f"/v1/{repo}/manifests/v1", "", manifest, manifest_type),
        "manifest_delete": lambda: (
            call("PUT", f"/v1/{repo}/manifests/del{(n := next(counter))}", body=manifest, headers=manifest_type),
            ("DELETE", f"/v1/{repo}/manifests/del{n}", "", b"", {}),
        )[1],
    }
    out: dict[str, Any] = {}
    for operation in operations():
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
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument(
        "--import-only", nargs="*", metavar="OPERATION", help="time the cold start of these handlers only"
    )
    args = parser.parse_args(argv)
    # Every scratch directory the measurements make (code assets, storage roots) lands in
    # one, removed at the end: this process exists only to measure.
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as scratch:
        tempfile.tempdir = scratch
        try:
            result = {
                "import": cold_costs(args.import_runs, args.import_only, log=lambda op: print(op, file=sys.stderr)),
                "invoke": warm_invocations(args.iterations),
                "artefacts": artefact_sizes(),
            }
        finally:
            tempfile.tempdir = None
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
