"""Latency of each operation through the deployed stack in MiniStack: cold, then warm.

The stack is deployed into the emulator (:mod:`emulator`) as ``make
emulator-up`` does, and each operation is requested over HTTPS through API
Gateway, the authorizer and its function. Cold: the first request each
function ever serves, before any setup (most answer 404 for want of data,
which costs the same start: the emulator starts a host process, unpacks its
layers, imports the handler); the first of them, ``version_check``, also pays
the authorizer's cold start. Warm: ``runs`` requests that succeed, after setup;
setup an operation needs each time (a session to cancel, a tag to delete)
happens before the clock starts. Requests on a new path also run the
authorizer (its cache is keyed by method and path), as they would in AWS.

Informational only: the emulator is not AWS. Its cold starts unpack every layer
from zip on each start and its warm path adds an HTTP server, TLS and JSON
pipes in Python; :mod:`bench.lambda_costs` has the in-process figures they sit
beside in the report. The ``blob_verify`` worker answers no request and is not
timed here.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmregistry import mediatypes
from vmregistry.auth import generate_key_pair, mint_token

from emulator.deploy import Deployment, deploy
from emulator.fetch import Answer, fetch
from emulator.process import MINISTACK_PYTHON, MINISTACK_VERSION, start

__all__ = ["measure"]

REPO = "bench/emulator"
Step = tuple[str, str, bytes | None, dict[str, str]]
"""method, path (under the stage), body, headers."""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Api:
    def __init__(self, deployment: Deployment, token: str) -> None:
        self.deployment = deployment
        self.context = deployment.emulator.ssl_context()
        self.auth = {"Authorization": f"Bearer {token}"}

    def __call__(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        stage = f"/{self.deployment.stage}"
        url = f"https://{self.deployment.host}{path if path.startswith(stage + '/') else stage + path}"
        return fetch(self.context, method, url, body, {**self.auth, **(headers or {})})

    def ok(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        answer = self(method, path, body, headers)
        if answer.status >= 300 and answer.status != 307:
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.body[:300]!r}")
        return answer


CONFIG = json.dumps({"cpus": 1}).encode()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mediatypes.MANIFEST,
        "config": {"mediaType": mediatypes.CONFIG, "digest": _digest(CONFIG), "size": len(CONFIG)},
        "layers": [],
    }
).encode()
AS_MANIFEST = {"Content-Type": mediatypes.MANIFEST}
AS_BYTES = {"Content-Type": "application/octet-stream"}
"""API Gateway passes a body to the function untouched (base64) only with a binary Content-Type."""
MISSING = "sha256:" + "0" * 64
UNKNOWN = "12345678-1234-4234-8234-123456789abc"

COLD: dict[str, Step] = {
    "version_check": ("GET", "/v1/", None, {}),
    "catalog_list": ("GET", "/v1/_catalog", None, {}),
    "tags_list": ("GET", f"/v1/{REPO}/tags/list", None, {}),
    "blob_head": ("HEAD", f"/v1/{REPO}/blobs/{MISSING}", None, {}),
    "blob_get": ("GET", f"/v1/{REPO}/blobs/{MISSING}", None, {}),
    "blob_put": ("PUT", f"/v1/{REPO}/blobs/{_digest(CONFIG)}", CONFIG, AS_BYTES),
    "blob_delete": ("DELETE", f"/v1/{REPO}/blobs/{MISSING}", None, {}),
    "upload_start": ("POST", f"/v1/{REPO}/blobs/uploads/", None, {}),
    "upload_patch": ("PATCH", f"/v1/{REPO}/blobs/uploads/{UNKNOWN}?part=1", None, {}),
    "upload_status": ("GET", f"/v1/{REPO}/blobs/uploads/{UNKNOWN}", None, {}),
    "upload_complete": ("PUT", f"/v1/{REPO}/blobs/uploads/{UNKNOWN}?digest={MISSING}", None, {}),
    "upload_cancel": ("DELETE", f"/v1/{REPO}/blobs/uploads/{UNKNOWN}", None, {}),
    "manifest_head": ("HEAD", f"/v1/{REPO}/manifests/latest", None, {}),
    "manifest_get": ("GET", f"/v1/{REPO}/manifests/latest", None, {"Accept": mediatypes.MANIFEST}),
    "manifest_put": ("PUT", f"/v1/{REPO}/manifests/latest", MANIFEST, AS_MANIFEST),
    "manifest_delete": ("DELETE", f"/v1/{REPO}/manifests/nothing", None, {}),
}
"""Each function's first request: one that needs no setup (blob_put stores the config that
manifest_put, later in the same order, references)."""


def _operations(api: _Api) -> dict[str, Callable[[], Step]]:
    """Operation -> a function that prepares one successful request (untimed) and returns it."""
    config, manifest, as_manifest = CONFIG, MANIFEST, AS_MANIFEST

    def session() -> str:
        return api.ok("POST", f"/v1/{REPO}/blobs/uploads/").headers["Location"]

    def blob_delete() -> Step:
        blob = uuid.uuid4().bytes
        api.ok("PUT", f"/v1/{REPO}/blobs/{_digest(blob)}", blob, AS_BYTES)
        return "DELETE", f"/v1/{REPO}/blobs/{_digest(blob)}", None, {}

    def upload_complete() -> Step:
        blob = uuid.uuid4().bytes
        started = api.ok("POST", f"/v1/{REPO}/blobs/uploads/?digest={_digest(blob)}&size={len(blob)}")
        upload = json.loads(started.body)["upload"]
        sent = fetch(api.context, upload["method"], upload["url"], blob, upload["headers"])
        if sent.status != 200:
            raise RuntimeError(f"presigned PUT: {sent.status} {sent.body[:300]!r}")
        return "PUT", f"{started.headers['Location']}?digest={_digest(blob)}", None, {}

    def manifest_delete() -> Step:
        tag = f"t{uuid.uuid4().hex[:8]}"
        api.ok("PUT", f"/v1/{REPO}/manifests/{tag}", manifest, as_manifest)
        return "DELETE", f"/v1/{REPO}/manifests/{tag}", None, {}

    status_session = session()
    return {
        "version_check": lambda: ("GET", "/v1/", None, {}),
        "catalog_list": lambda: ("GET", "/v1/_catalog", None, {}),
        "tags_list": lambda: ("GET", f"/v1/{REPO}/tags/list", None, {}),
        "blob_head": lambda: ("HEAD", f"/v1/{REPO}/blobs/{_digest(config)}", None, {}),
        "blob_get": lambda: ("GET", f"/v1/{REPO}/blobs/{_digest(config)}", None, {}),
        "blob_put": lambda: ("PUT", f"/v1/{REPO}/blobs/{_digest(config)}", config, AS_BYTES),
        "blob_delete": blob_delete,
        "upload_start": lambda: ("POST", f"/v1/{REPO}/blobs/uploads/", None, {}),
        "upload_patch": lambda: ("PATCH", f"{status_session}?part=1", None, {}),
        "upload_status": lambda: ("GET", status_session, None, {}),
        "upload_complete": upload_complete,
        "upload_cancel": lambda: ("DELETE", session(), None, {}),
        "manifest_head": lambda: ("HEAD", f"/v1/{REPO}/manifests/latest", None, {}),
        "manifest_get": lambda: ("GET", f"/v1/{REPO}/manifests/latest", None, {"Accept": mediatypes.MANIFEST}),
        "manifest_put": lambda: ("PUT", f"/v1/{REPO}/manifests/latest", manifest, as_manifest),
        "manifest_delete": manifest_delete,
    }


def _timed(api: _Api, step: Step) -> tuple[float, int]:
    method, path, body, headers = step
    started = time.perf_counter()
    answer = api(method, path, body, headers)
    return (time.perf_counter() - started) * 1000, answer.status


def measure(runs: int, workdir: Path | None = None) -> dict[str, Any]:
    """``{"operations": {op: {cold_ms, warm_p50_ms, warm_p90_ms, status}}, "deploy_s", "emulator"}``."""
    if not MINISTACK_PYTHON.exists():
        return {"skipped": f"{MINISTACK_PYTHON} is missing (make ministack)"}
    work = Path(tempfile.mkdtemp(prefix="vmregistry-bench-emulator-", dir=workdir))
    private, public = generate_key_pair(2048)
    (work / "auth.pub").write_bytes(public)
    token = mint_token(private, subject="bench", scopes=["repository:**:pull,push,delete"])
    emulator = start(work / "emulator")
    try:
        deployment = deploy(emulator, work / "auth.pub")
        api = _Api(deployment, token)
        results: dict[str, Any] = {}
        for operation, step in COLD.items():
            cold_ms, cold_status = _timed(api, step)
            results[operation] = {"cold_ms": round(cold_ms), "cold_status": cold_status}
        for operation, prepare in _operations(api).items():
            timed = [_timed(api, prepare()) for _ in range(runs)]
            warm = [ms for ms, _ in timed]
            quantiles = statistics.quantiles(warm, n=10) if len(warm) > 1 else warm * 9
            results[operation] |= {
                "warm_p50_ms": round(statistics.median(warm), 1),
                "warm_p90_ms": round(quantiles[8], 1),
                "status": timed[-1][1],
            }
        return {
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "emulator": f"MiniStack {MINISTACK_VERSION}",
            "deploy_s": round(deployment.seconds),
            "runs": runs,
            "operations": results,
        }
    finally:
        emulator.stop()
