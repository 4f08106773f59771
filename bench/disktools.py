"""The pieces of ``bench/disks.py``: disks to move, and the tools that move them, each run as a user runs it.

* :func:`make_disk` writes a sparse disk (random 4 MiB extents at seeded
  places, holes elsewhere) or a dense one; :func:`vary` changes 16 bytes of
  its first extent, so each run moves content no registry has seen.
* :class:`VmregistryTool`: ``vmregistry push/pull`` (this checkout, or the
  library and handlers of an earlier commit, :func:`export`, on PYTHONPATH)
  with a fresh cache directory per command.
* :class:`SkopeoTool`: ``skopeo copy`` of the disk as the one layer of an OCI
  layout, into a registry and back out to ``dir:``.
* :func:`run_command` times a command and samples its peak RSS.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import Server

__all__ = [
    "BEFORE",
    "EXTENT",
    "GIB",
    "MIB",
    "SKOPEO",
    "VMREGISTRY",
    "DiskSpec",
    "SkopeoTool",
    "VmregistryTool",
    "export",
    "hash_file",
    "make_disk",
    "peak_rss",
    "run_command",
    "summary",
    "vary",
]

MIB = 1024 * 1024
GIB = 1024 * MIB
EXTENT = 4 * MIB
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
VMREGISTRY = "vmregistry"
SKOPEO = "skopeo + distribution"
BEFORE = "vmregistry before"
ROOT = Path(__file__).resolve().parent.parent


class DiskSpec:
    """A disk to generate: ``apparent`` bytes, ``data`` of them random (all when ``data`` is ``None``)."""

    def __init__(self, name: str, apparent: int, data: int | None) -> None:
        self.name = name
        self.apparent = apparent
        self.data = data

    def describe(self) -> str:
        data = "random throughout" if self.data is None else f"{self.data // MIB} MiB of data in 4 MiB extents"
        return f"{self.apparent / GIB:g} GiB, {data}"


def make_disk(path: Path, spec: DiskSpec, seed: int = 14) -> int:
    """Write the disk; returns the offset of its first data byte (where :func:`vary` writes)."""
    with open(path, "wb") as handle:
        handle.truncate(spec.apparent)
        if spec.data is None:
            for offset in range(0, spec.apparent, 8 * MIB):
                handle.write(os.urandom(min(8 * MIB, spec.apparent - offset)))
            return 0
        slots = random.Random(seed).sample(range(spec.apparent // EXTENT), spec.data // EXTENT)
        for slot in sorted(slots):
            handle.seek(slot * EXTENT)
            handle.write(os.urandom(EXTENT))
        return min(slots) * EXTENT


def vary(path: Path, offset: int, run: int) -> None:
    """New content: 16 bytes of the first data extent change (the file keeps its holes)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(run.to_bytes(8, "big") + os.urandom(8))


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def peak_rss(pid: int) -> int:
    """``VmHWM`` of a running process, bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def run_command(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command to completion: (wall seconds, peak RSS MiB).

    The peak is the kernel's high-water mark, sampled every 20 ms while the process
    runs (``wait4``'s ``ru_maxrss`` would count the forking bench process's own RSS).
    """
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        peak = 0
        while process.poll() is None:
            peak = max(peak, peak_rss(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command[:3])} ... failed ({process.returncode}): {message}")
    return elapsed, peak / MIB


class VmregistryTool:
    """The reference client (this one, or an exported earlier version) against its own server."""

    def __init__(self, name: str, server: Server, work: Path, python_path: str | None = None) -> None:
        self.name = name
        self.host = server.url.removeprefix("http://")
        self.cache = work / f"cache-{abs(hash(name))}"
        self.command = [str(Path(sys.executable).with_name("vmregistry"))]
        self.extra = {"PYTHONPATH": python_path} if python_path is not None else {}

    def _env(self) -> dict[str, str]:
        shutil.rmtree(self.cache, ignore_errors=True)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
        return environ | self.extra | {"VMREGISTRY_CACHE_DIR": str(self.cache)}

    def push(self, disk: Path, tag: str, digest: str) -> tuple[float, float]:
        return run_command(
            [*self.command, "push", f"{self.host}/bench/disk:{tag}", "-disk", str(disk), "-q"], self._env()
        )

    def pull(self, tag: str, out: Path, disk: Path, digest: str) -> tuple[tuple[float, float], Path]:
        command = [*self.command, "pull", f"{self.host}/bench/disk:{tag}", "-o", str(out), "-q"]
        return run_command(command, self._env()), out / disk.name


class SkopeoTool:
    name = SKOPEO

    def __init__(self, server: Server, work: Path, *, preserve: bool = True) -> None:
        self.host = server.url.removeprefix("http://")
        self.work = work
        self.preserve = preserve

    def _layout(self, disk: Path, digest: str) -> Path:
        layout = self.work / "oci-layout"
        shutil.rmtree(layout, ignore_errors=True)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        os.link(disk, blobs / digest.removeprefix("sha256:"))

        def put(document: dict[str, Any]) -> dict[str, Any]:
            data = json.dumps(document).encode()
            hexdigest = hashlib.sha256(data).hexdigest()
            (blobs / hexdigest).write_bytes(data)
            return {"digest": "sha256:" + hexdigest, "size": len(data)}

        config = put({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}})
        manifest = put(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": disk.stat().st_size}],
            }
        )
        reference = {"org.opencontainers.image.ref.name": "latest"}
        index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, **manifest, "annotations": reference}]}
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        return layout

    def push(self, disk: Path, tag: str, digest: str) -> tuple[float, float]:
        layout = self._layout(disk, digest)
        flags = ["--preserve-digests"] if self.preserve else []
        command = ["skopeo", "copy", "-q", *flags, "--dest-tls-verify=false"]
        figures = run_command([*command, f"oci:{layout}:latest", f"docker://{self.host}/bench/disk:{tag}"])
        shutil.rmtree(layout, ignore_errors=True)
        return figures

    def pull(self, tag: str, out: Path, disk: Path, digest: str) -> tuple[tuple[float, float], Path]:
        command = ["skopeo", "copy", "-q", "--src-tls-verify=false"]
        figures = run_command([*command, f"docker://{self.host}/bench/disk:{tag}", f"dir:{out}"])
        return figures, out / digest.removeprefix("sha256:")


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "runs": len(samples),
    }


def export(reference: str, work: Path) -> str:
    """The library and the handlers as they were at ``reference`` (``git archive``): a PYTHONPATH."""
    target = work / f"before-{reference}"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", reference, "layers/vmregistry/python", "functions"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return f"{target / 'layers' / 'vmregistry' / 'python'}{os.pathsep}{target / 'functions'}"
