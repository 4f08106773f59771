"""S3 mode on LocalStack: what the registry adds to a transfer S3 makes anyway.

The registry never carries blob bytes in S3 mode: a push is an API call, a
presigned PUT (with the signed SHA-256 that makes S3 verify the body) and a
completion that moves the object under its digest; a pull is an API call
that redirects to a presigned GET. So the figure that matters is the
difference from a client talking to S3 directly with the same kind of URL,
minted here by the same backend code (``S3Storage.presign_put/presign_get``)
for the same object. LocalStack's S3 runs on the host (``tests/localstack.py``,
``make localstack``); without it this section reports why it was skipped.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.client import BenchError, curl, pull_blob, push_blob
from bench.servers import Unavailable, local_s3, start_vmregistry
from bench.throughput import MIB, make_blob, rate, summarise

__all__ = ["measure"]

S3_SIZES_MAX = 1024 * MIB


def _direct_put(url: str, headers: dict[str, str], path: Path) -> None:
    args = [arg for key, value in headers.items() for arg in ("-H", f"{key}: {value}")]
    done = curl("-X", "PUT", *args, "-T", str(path), url)
    if done.status != 200:
        raise BenchError(f"direct PUT: HTTP {done.status} {done.body[:300]!r}")


def _direct_get(url: str) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url], capture_output=True, text=True, check=False
    )
    if done.stdout.strip() != "200":
        raise BenchError(f"direct GET: HTTP {done.stdout.strip()} {done.stderr.strip()}")


def measure(sizes: list[int], runs: int, work: Path) -> dict[str, Any]:
    from vmregistry import paths
    from vmregistry.config import Settings
    from vmregistry.storage.s3 import S3Storage

    home = work / "s3"
    try:
        with local_s3(home) as localstack:
            env = localstack.env("bench")
            storage = S3Storage.from_settings(Settings.from_env(env))
            with start_vmregistry(home, env, "-storage", "s3") as server:
                return _measure(server, storage, paths, sizes, runs, home)
    except Unavailable as exc:
        return {"skipped": str(exc)}


def _measure(server: Any, storage: Any, paths: Any, sizes: list[int], runs: int, home: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"throughput": {}}
    api_ms: list[float] = []
    for size in (s for s in sizes if s <= S3_SIZES_MAX):
        source, digest = make_blob(home, size)
        hexdigest = digest.removeprefix("sha256:")
        direct_key = f"bench-direct/{hexdigest}"
        push: dict[str, list[float]] = {"registry": [], "direct": []}
        pull: dict[str, list[float]] = {"registry": [], "direct": []}
        for _ in range(runs):
            push["registry"].append(rate(size, partial(push_blob, server, "bench/s3", source, digest, size)))
            request = storage.presign_put(direct_key, 900, sha256=hexdigest, size=size)
            push["direct"].append(rate(size, partial(_direct_put, request.url, dict(request.headers), source)))
            pull["registry"].append(rate(size, partial(pull_blob, server, "bench/s3", digest)))
            url = storage.presign_get(paths.blob_key(digest), 900)
            pull["direct"].append(rate(size, partial(_direct_get, url)))
            # One API round trip on its own: the redirect, not followed.
            started = time.perf_counter()
            answer = curl(f"{server.url}/v1/bench/s3/blobs/{digest}")
            api_ms.append((time.perf_counter() - started) * 1000)
            if answer.status != 307:
                raise BenchError(f"GET blob: HTTP {answer.status}, expected a 307 redirect")
        stored = storage.read(paths.blob_key(digest), 0, MIB)
        with open(source, "rb") as handle:
            if handle.read(MIB) != stored:
                raise BenchError("S3 holds other bytes than were pushed")
        storage.delete(direct_key)
        source.unlink()
        out["throughput"][str(size // MIB)] = {
            "push": {k: summarise(v) for k, v in push.items()},
            "pull": {k: summarise(v) for k, v in pull.items()},
        }
    out["api_ms"] = round(statistics.median(api_ms), 1) if api_ms else None
    return out
