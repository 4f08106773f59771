"""Control plane: requests/s and p50/p99 latency of HEAD blob, GET manifest and two PUT manifests.

wrk (Debian's) drives each case at 1 and 16 connections against both
registries, with one Lua script (:file:`lua/request.lua`) that sets the
method and body and prints a JSON summary.

Two things are fixed per registry so the work compared is the same:

* HEAD blob asks for an **empty** blob. wrk's parser waits for the body a
  ``Content-Length`` announces, even on HEAD, so any other blob would hang it;
  the registries' work for HEAD (a metadata lookup) does not depend on size.
* Manifests are each registry's native format with the same shape (a config
  and one layer, pushed first): a Docker schema 2 manifest for distribution,
  a vmregistry manifest for vmregistry. ``put_manifest`` stores the same
  bytes under the same tag again and again (a CI job re-tagging ``latest``):
  distribution rewrites its link files each time, vmregistry sees the tag
  already holds those bytes and writes nothing. ``put_new_tag`` puts the
  same manifest under a new tag with every request, a durable write for
  vmregistry (fsync) and link files for distribution (no fsync).

A status other than 2xx counts as an error and is reported; the harness
refuses results where errors exceed 1 % of requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import BenchError, api, push_blob
from bench.servers import Server

__all__ = ["CONNECTIONS", "OPERATIONS", "measure_control_plane", "prepare"]

LUA = Path(__file__).with_name("lua") / "request.lua"
CONNECTIONS = (1, 16)
OPERATIONS = ("head_blob", "get_manifest", "put_manifest", "put_new_tag")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
VM_MANIFEST = "application/vnd.vmregistry.manifest.v1+json"
VM_CONFIG = "application/vnd.vmregistry.config.v1+json"
VM_DISK = "application/vnd.vmregistry.disk.v1"
EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
REPO = "bench/control"
TAG = "bench"


def _blob(work: Path, name: str, data: bytes) -> tuple[Path, str, int]:
    path = work / name
    path.write_bytes(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def prepare(server: Server, work: Path) -> dict[str, Any]:
    """Push the empty blob, a config, a layer and a manifest; returns what the cases need."""
    empty = _blob(work, "empty", b"")
    config = _blob(work, "config.json", json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    layer = _blob(work, "layer", os.urandom(4096))
    for path, digest, size in (empty, config, layer):
        push_blob(server, REPO, path, digest, size)
    if server.api == "/v2":
        media, config_type, layer_type = DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER
    else:
        media, config_type, layer_type = VM_MANIFEST, VM_CONFIG, VM_DISK
    manifest = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": config_type, "digest": config[1], "size": config[2]},
        "layers": [{"mediaType": layer_type, "digest": layer[1], "size": layer[2]}],
    }
    body = json.dumps(manifest, indent=3).encode()
    manifest_file = work / f"manifest-{server.name}.json"
    manifest_file.write_bytes(body)
    stored = api(server, "PUT", f"{server.api}/{REPO}/manifests/{TAG}", body, {"Content-Type": media})
    if stored.status != 201:
        raise BenchError(f"{server.name}: PUT manifest: HTTP {stored.status} {stored.body[:300]!r}")
    return {"media_type": media, "manifest_file": str(manifest_file)}


def _wrk(url: str, connections: int, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            raw = json.loads(line.removeprefix("BENCH "))
            break
    else:
        raise BenchError(f"wrk gave no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    errors = raw["status_errors"] + raw["socket_errors"]
    if raw["requests"] == 0 or errors > raw["requests"] / 100:
        raise BenchError(f"wrk {url}: {errors} errors in {raw['requests']} requests")
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "requests": raw["requests"],
        "errors": errors,
    }


def _cases(server: Server, prepared: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    manifests = f"{server.url}{server.api}/{REPO}/manifests/"
    put = {
        "BENCH_METHOD": "PUT",
        "BENCH_BODY_FILE": prepared["manifest_file"],
        "BENCH_CONTENT_TYPE": prepared["media_type"],
    }
    return {
        "head_blob": (f"{server.url}{server.api}/{REPO}/blobs/{EMPTY}", {"BENCH_METHOD": "HEAD"}),
        "get_manifest": (manifests + TAG, {"BENCH_METHOD": "GET", "BENCH_ACCEPT": prepared["media_type"]}),
        "put_manifest": (manifests + TAG, put),
        "put_new_tag": (manifests, put | {"BENCH_TAG_PREFIX": "new"}),
    }


def _fresh(env: dict[str, str]) -> dict[str, str]:
    """Make a tag prefix unique to one wrk run, so its tags were never put before."""
    if "BENCH_TAG_PREFIX" not in env:
        return env
    return env | {"BENCH_TAG_PREFIX": f"{env['BENCH_TAG_PREFIX']}-{time.monotonic_ns()}-"}


def measure_control_plane(servers: list[Server], seconds: float, warmup: float) -> dict[str, Any]:
    """``{operation: {connections: {server: figures}}}``, servers interleaved per case."""
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        prepared = {server.name: prepare(server, Path(tmp)) for server in servers}
        cases = {server.name: _cases(server, prepared[server.name]) for server in servers}
        results: dict[str, Any] = {}
        for operation in OPERATIONS:
            results[operation] = {}
            for connections in CONNECTIONS:
                row = {}
                for server in servers:
                    url, env = cases[server.name][operation]
                    if warmup > 0:
                        _wrk(url, connections, warmup, _fresh(env))
                    row[server.name] = _wrk(url, connections, seconds, _fresh(env))
                results[operation][str(connections)] = row
        return results
