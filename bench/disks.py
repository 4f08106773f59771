"""Whole VM disks pushed and pulled as users do it: ``vmregistry push/pull`` against skopeo with distribution.

Two disks of the same apparent size (2 GiB by default): a *sparse* one, as a
freshly installed VM's raw disk is (about 600 MiB of random data in 4 MiB
extents scattered over the disk, holes elsewhere), and a *dense* one (random
bytes throughout). Each run changes a few bytes of the first data extent
first, so every run moves content neither registry (nor skopeo's blob-location
cache) has seen. Within a run the tools alternate, push then pull, so a burst
of load from elsewhere hits both.

* vmregistry: ``vmregistry push HOST/bench/disk:rN -disk FILE`` and
  ``vmregistry pull HOST/bench/disk:rN -o DIR`` (the reference client, its
  defaults, a fresh cache directory), against ``vmregistry serve`` on the
  filesystem backend with its default workers.
* skopeo: the same file as the one layer of an OCI image layout
  (``application/vnd.oci.image.layer.v1.tar``, hard-linked, so sparse too),
  ``skopeo copy --preserve-digests oci:LAYOUT docker://HOST/bench/disk:rN``
  into distribution, then ``skopeo copy docker://... dir:DIR`` out of it.
  ``--preserve-digests`` keeps the layer the same raw disk with the same
  digest (without it skopeo gzips the layer on the way, a different blob);
  the compressing push is measured too, once per case, for reference.

Every figure is wall time of the whole command, median (min-max) of the runs;
the pulled disk is checked against the pushed digest (untimed). The clients'
peak RSS is their ``VmHWM``, sampled while they run. A last measurement pushes and pulls sparse disks
of growing apparent size through a one-worker server and records the peak RSS
of the server and of each client: flat means streaming, whatever the size.
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
import time
from pathlib import Path
from typing import Any

from bench.servers import Server, start_distribution, start_vmregistry

__all__ = ["DiskSpec", "hash_file", "make_disk", "measure", "vary"]

MIB = 1024 * 1024
GIB = 1024 * MIB
EXTENT = 4 * MIB
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class DiskSpec:
    """A disk to generate: ``apparent`` bytes, ``data`` of them random (all when ``data`` is ``None``)."""

    def __init__(self, name: str, apparent: int, data: int | None) -> None:
        self.name = name
        self.apparent = apparent
        self.data = data

    def describe(self) -> str:
        data = "all" if self.data is None else f"{self.data // MIB} MiB in {EXTENT // MIB} MiB extents"
        return f"{self.apparent / GIB:g} GiB apparent, data: {data}"


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


def _peak_rss(pid: int) -> int:
    """``VmHWM`` of a running process, bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command to completion: (wall seconds, peak RSS MiB of the process).

    The peak is the kernel's high-water mark, sampled every 20 ms while the process
    runs (``wait4``'s ``ru_maxrss`` would count the forking bench process's own RSS).
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _peak_rss(process.pid))
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({process.returncode}): {error[-2000:]}")
    return elapsed, peak / MIB


class _Vmregistry:
    name = "vmregistry"

    def __init__(self, server: Server, work: Path) -> None:
        self.server = server
        self.host = server.url.removeprefix("http://")
        self.cache = work / "client-cache"
        self.command = str(Path(sys.executable).with_name("vmregistry"))

    def _env(self) -> dict[str, str]:
        shutil.rmtree(self.cache, ignore_errors=True)
        return {**os.environ, "VMREGISTRY_CACHE_DIR": str(self.cache)}

    def push(self, disk: Path, tag: str) -> tuple[float, float]:
        reference = f"{self.host}/bench/disk:{tag}"
        return _run([self.command, "push", reference, "-disk", str(disk), "-q"], self._env())

    def pull(self, tag: str, out: Path, disk_name: str) -> tuple[tuple[float, float], Path]:
        figures = _run([self.command, "pull", f"{self.host}/bench/disk:{tag}", "-o", str(out), "-q"], self._env())
        return figures, out / disk_name


class _Skopeo:
    name = "skopeo + distribution"

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

        def put(document: dict[str, Any]) -> tuple[str, int]:
            data = json.dumps(document).encode()
            hexdigest = hashlib.sha256(data).hexdigest()
            (blobs / hexdigest).write_bytes(data)
            return "sha256:" + hexdigest, len(data)

        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}}
        config_digest, config_size = put(config)
        manifest_digest, manifest_size = put(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": config_size,
                },
                "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": disk.stat().st_size}],
            }
        )
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"org.opencontainers.image.ref.name": "latest"},
                }
            ],
        }
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        return layout

    def push(self, disk: Path, tag: str, digest: str) -> tuple[float, float]:
        layout = self._layout(disk, digest)
        flags = ["--preserve-digests"] if self.preserve else []
        command = ["skopeo", "copy", "-q", *flags, "--dest-tls-verify=false"]
        figures = _run([*command, f"oci:{layout}:latest", f"docker://{self.host}/bench/disk:{tag}"])
        shutil.rmtree(layout, ignore_errors=True)
        return figures

    def pull(self, tag: str, out: Path, digest: str) -> tuple[tuple[float, float], Path]:
        command = ["skopeo", "copy", "-q", "--src-tls-verify=false"]
        figures = _run([*command, f"docker://{self.host}/bench/disk:{tag}", f"dir:{out}"])
        return figures, out / digest.removeprefix("sha256:")


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "runs": len(samples),
    }


def _allocated_mib(path: Path) -> float:
    return round(os.stat(path).st_blocks * 512 / MIB, 1)


def _case(spec: DiskSpec, runs: int, work: Path, workers: int | None, log: Any) -> dict[str, Any]:
    home = work / f"disks-{spec.name}"
    home.mkdir()
    disk = home / "disk.img"
    first = make_disk(disk, spec)
    servers = [start_vmregistry(home, workers=workers), start_distribution(home)]
    tools: list[Any] = [_Vmregistry(servers[0], home), _Skopeo(servers[1], home)]
    times: dict[str, dict[str, list[float]]] = {t.name: {"push": [], "pull": []} for t in tools}
    rss: dict[str, dict[str, float]] = {t.name: {"push": 0.0, "pull": 0.0} for t in tools}
    allocated: dict[str, float] = {}
    try:
        for run in range(runs):
            vary(disk, first, run)
            digest = hash_file(disk)
            for tool in tools:
                log(f"disks {spec.name} run {run + 1}/{runs}: {tool.name}")
                tag = f"r{run}"
                seconds, peak = tool.push(disk, tag) if tool.name == "vmregistry" else tool.push(disk, tag, digest)
                times[tool.name]["push"].append(seconds)
                rss[tool.name]["push"] = max(rss[tool.name]["push"], peak)
                out = home / "pulled"
                shutil.rmtree(out, ignore_errors=True)
                (seconds, peak), pulled = tool.pull(tag, out, disk.name if tool.name == "vmregistry" else digest)
                times[tool.name]["pull"].append(seconds)
                rss[tool.name]["pull"] = max(rss[tool.name]["pull"], peak)
                if hash_file(pulled) != digest:
                    raise RuntimeError(f"{tool.name} pulled other bytes than were pushed")
                allocated[tool.name] = _allocated_mib(pulled)
                shutil.rmtree(out, ignore_errors=True)
        compressing = _Skopeo(servers[1], home, preserve=False)
        vary(disk, first, runs)
        gzip_push, _ = compressing.push(disk, "gzip", hash_file(disk))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "disk": spec.describe(),
        "apparent_mib": spec.apparent // MIB,
        "data_mib": None if spec.data is None else spec.data // MIB,
        "seconds": {name: {op: _summary(v) for op, v in ops.items()} for name, ops in times.items()},
        "client_peak_rss_mib": {name: {op: round(v, 1) for op, v in ops.items()} for name, ops in rss.items()},
        "pulled_allocated_mib": allocated,
        "skopeo_gzip_push_s": round(gzip_push, 2),
    }


def _server_peak(server: Server) -> float:
    """The highest ``VmHWM`` among the server's processes (MiB)."""
    peaks = [server.status_field("VmHWM")]
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        try:
            with open(f"/proc/{pid}/status") as status:
                peaks += [int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")]
        except FileNotFoundError:
            continue
    return round(max(peaks) / MIB, 1)


def _memory(sizes: list[int], work: Path, log: Any) -> dict[str, Any]:
    """Peak RSS of a one-worker server and of the client, per apparent size (64 MiB of data each)."""
    out: dict[str, Any] = {}
    for size in sizes:
        log(f"disks memory {size // GIB} GiB")
        home = work / f"disks-memory-{size}"
        home.mkdir()
        disk = home / "disk.img"
        make_disk(disk, DiskSpec("memory", size, min(64 * MIB, size // 4)))
        try:
            with start_vmregistry(home, workers=1) as server:
                tool = _Vmregistry(server, home)
                push_s, push_rss = tool.push(disk, "m")
                (pull_s, pull_rss), _ = tool.pull("m", home / "pulled", disk.name)
                server_rss = _server_peak(server)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        out[str(size // MIB)] = {
            "server_peak_mib": server_rss,
            "push_client_peak_mib": round(push_rss, 1),
            "pull_client_peak_mib": round(pull_rss, 1),
            "push_s": round(push_s, 2),
            "pull_s": round(pull_s, 2),
        }
    return out


def measure(
    runs: int,
    work: Path,
    *,
    apparent: int = 2 * GIB,
    data: int = 600 * MIB,
    memory_sizes: tuple[int, ...] = (GIB, 16 * GIB),
    workers: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """``{"sparse": case, "dense": case, "memory": {...}}``; skipped without skopeo or distribution."""
    missing = [tool for tool in ("skopeo", "docker-registry") if shutil.which(tool) is None]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed (make bench installs them)"}
    data = data // EXTENT * EXTENT
    return {
        "sparse": _case(DiskSpec("sparse", apparent, data), runs, work, workers, log),
        "dense": _case(DiskSpec("dense", apparent, None), runs, work, workers, log),
        "memory": _memory(list(memory_sizes), work, log),
    }


if __name__ == "__main__":  # a look without the whole bench: python -m bench.disks [runs]
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="vmregistry-disks-"))
    try:
        figures = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(figures, indent=1))
