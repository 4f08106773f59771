"""Blob push and pull throughput, and the machine's limits measured beside them.

Each size gets one random file, pushed to and pulled from both registries in
alternation (so a burst of load from elsewhere hits both), several times;
the figure is the median with min and max. Pulls go to ``/dev/null``: the
client's disk is not what is measured. Once per size and server the pulled
bytes are hashed and compared (untimed), so a fast wrong answer cannot win.

Each blob is pulled three times per run, because where its pages are decides
the rate more than either server does (issue 16):

* ``pull``: right after the push. distribution's filesystem driver does not
  fsync, so its blob is still dirty in the page cache; vmregistry's was
  fsync'd before it became visible.
* ``pull_settled``: after ``sync`` and a pause of :data:`SETTLE_PAUSE`
  seconds, when both blobs are clean pages in the page cache: a warm read,
  what a blob pulled again soon after its push costs.
* ``pull_cold``: after the stored blob file was dropped from the page cache
  (``posix_fadvise(POSIX_FADV_DONTNEED)`` on that file alone, so other work on
  the machine keeps its cache; ``fincore`` confirms nothing of it stayed
  resident): a read from the disk, what a blob nobody pulled lately costs.

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
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.client import BenchError, pull_blob, push_blob
from bench.servers import Server

__all__ = ["MIB", "PULLS", "machine_limits", "make_blob", "measure_throughput", "rate", "summarise", "vary"]

MIB = 1024 * 1024
SETTLE_PAUSE = 3.0
PULLS = ("pull", "pull_settled", "pull_cold")
"""Right after the push, settled in the page cache, from the disk (see the module docstring)."""


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


def stored_blob(server: Server, digest: str) -> Path:
    """The file each registry's filesystem driver keeps a blob's bytes in."""
    hexdigest = digest.removeprefix("sha256:")
    if server.api == "/v2":  # distribution 2.8: <root>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data
        return server.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
    from vmregistry import paths

    return server.root / paths.blob_key(digest)


def resident_bytes(path: Path) -> int | None:
    """How much of ``path`` is in the page cache (util-linux ``fincore``; ``None`` without it)."""
    if shutil.which("fincore") is None:
        return None
    command = ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None


def evict(path: Path) -> int | None:
    """Drop ``path``'s clean pages from the page cache; returns what stayed resident."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident_bytes(path)


def measure_throughput(
    servers: list[Server], source: Path, digest: str, size: int, runs: int, work: Path
) -> dict[str, Any]:
    """Push and pull MiB/s per server for one blob (servers alternate within each run)."""
    push: dict[str, list[float]] = {s.name: [] for s in servers}
    pulls: dict[str, dict[str, list[float]]] = {kind: {s.name: [] for s in servers} for kind in PULLS}
    left_resident = 0
    repo = f"bench/throughput-{size}"
    for run in range(runs):
        if run:
            digest = vary(source, run)
        for server in servers:
            push[server.name].append(rate(size, partial(push_blob, server, repo, source, digest, size)))
            pulls["pull"][server.name].append(rate(size, partial(pull_blob, server, repo, digest)))
        os.sync()
        time.sleep(SETTLE_PAUSE)
        for server in servers:
            pulls["pull_settled"][server.name].append(rate(size, partial(pull_blob, server, repo, digest)))
        for server in servers:
            left_resident = max(left_resident, evict(stored_blob(server, digest)) or 0)
            pulls["pull_cold"][server.name].append(rate(size, partial(pull_blob, server, repo, digest)))
        if run == 0:
            for server in servers:
                _verify(server, repo, digest, work)
    return {
        "size_mib": size // MIB,
        "push": {name: summarise(values) for name, values in push.items()},
        **{kind: {name: summarise(values) for name, values in by.items()} for kind, by in pulls.items()},
        "cold_resident_bytes": left_resident,
    }
