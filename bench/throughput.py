"""Blob push and pull throughput, and the machine's limits measured beside them.

Each size gets one random file, pushed to and pulled from both registries in
alternation (so a burst of load from elsewhere hits both), several times;
the figure is the median with min and max. Pulls go to ``/dev/null``: the
client's disk is not what is measured. Once per size and server the pulled
bytes are hashed and compared (untimed), so a fast wrong answer cannot win.

The limits: Python's hashlib SHA-256 over an in-memory buffer (the ceiling
for any push that verifies the digest on the fly), a plain file copy through
the page cache, and the same copy with an fsync at the end (vmregistry makes
every blob durable before it is visible; distribution's filesystem driver
does not fsync).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.client import BenchError, pull_blob, push_blob
from bench.servers import Server

__all__ = ["MIB", "machine_limits", "make_blob", "measure_throughput", "rate", "summarise", "vary"]

MIB = 1024 * 1024


def make_blob(directory: Path, size: int) -> tuple[Path, str]:
    """A file of ``size`` random bytes and its digest."""
    path = directory / f"blob-{size}"
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return path, "sha256:" + digest.hexdigest()


def vary(path: Path, run: int) -> str:
    """Make ``path`` a new blob (its first bytes changed) and return its digest.

    Every run pushes a blob neither registry has: pushing the same digest again
    would make both replace the stored copy, and freeing a GiB of extents costs
    the filesystem a measurable fraction of a second that a first push does not pay.
    """
    with open(path, "r+b") as handle:
        handle.write(run.to_bytes(8, "big") + os.urandom(8))
        handle.seek(0)
        digest = hashlib.sha256()
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def summarise(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 1),
        "min": round(min(samples), 1),
        "max": round(max(samples), 1),
        "runs": len(samples),
    }


def rate(size: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return size / MIB / (time.perf_counter() - started)


def machine_limits(source: Path, size: int, runs: int) -> dict[str, Any]:
    """hashlib SHA-256, page-cache copy and copy+fsync rates over ``source`` (``size`` bytes)."""
    buffer = memoryview(bytearray(8 * MIB))
    total = max(size, 256 * MIB)

    def hash_buffer() -> None:
        digest = hashlib.sha256()
        for _ in range(total // len(buffer)):
            digest.update(buffer)

    def copy(fsync: bool) -> None:
        with tempfile.NamedTemporaryFile(dir=source.parent) as target, open(source, "rb") as handle:
            shutil.copyfileobj(handle, target, 8 * MIB)
            target.flush()
            if fsync:
                os.fsync(target.fileno())

    return {
        "size_mib": size // MIB,
        "sha256": summarise([rate(total, hash_buffer) for _ in range(runs)]),
        "copy": summarise([rate(size, lambda: copy(False)) for _ in range(runs)]),
        "copy_fsync": summarise([rate(size, lambda: copy(True)) for _ in range(runs)]),
    }


def _verify(server: Server, repo: str, digest: str, work: Path) -> None:
    target = work / "pulled"
    pull_blob(server, repo, digest, str(target))
    actual = hashlib.sha256()
    with open(target, "rb") as handle:
        while chunk := handle.read(8 * MIB):
            actual.update(chunk)
    target.unlink()
    if "sha256:" + actual.hexdigest() != digest:
        raise BenchError(f"{server.name} returned other bytes for {digest}")


def measure_throughput(
    servers: list[Server], source: Path, digest: str, size: int, runs: int, work: Path
) -> dict[str, Any]:
    """Push and pull MiB/s per server for one blob (servers alternate within each run)."""
    push: dict[str, list[float]] = {s.name: [] for s in servers}
    pull: dict[str, list[float]] = {s.name: [] for s in servers}
    repo = f"bench/throughput-{size}"
    for run in range(runs):
        if run:
            digest = vary(source, run)
        for server in servers:
            push[server.name].append(rate(size, partial(push_blob, server, repo, source, digest, size)))
            if run == 0:
                _verify(server, repo, digest, work)
            pull[server.name].append(rate(size, partial(pull_blob, server, repo, digest)))
    return {
        "size_mib": size // MIB,
        "push": {name: summarise(values) for name, values in push.items()},
        "pull": {name: summarise(values) for name, values in pull.items()},
    }
