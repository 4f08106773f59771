"""Whole VM disks pushed and pulled as users do it: ``vmregistry push/pull`` against skopeo with distribution.

Two disks of the same apparent size (2 GiB by default): a *sparse* one, as a
freshly installed VM's raw disk is (about 600 MiB of random data in 4 MiB
extents scattered over the disk, holes elsewhere), and a *dense* one (random
bytes throughout). Each run first changes 16 bytes of the first data extent,
so every run moves content neither registry (nor skopeo's blob-location
cache) has seen; within a run the tools alternate, push then pull, so a burst
of load from elsewhere hits them all.

* vmregistry: ``vmregistry push HOST/bench/disk:rN -disk FILE`` and
  ``vmregistry pull HOST/bench/disk:rN -o DIR`` (the reference client with
  its defaults and a fresh cache directory) against ``vmregistry serve`` on
  the filesystem backend with its default workers.
* skopeo: the same file as the one layer of an OCI image layout
  (``application/vnd.oci.image.layer.v1.tar``, hard-linked, so sparse too),
  ``skopeo copy --preserve-digests oci:LAYOUT docker://HOST/bench/disk:rN``
  into distribution, then ``skopeo copy docker://... dir:DIR`` out of it.
  ``--preserve-digests`` keeps the layer the same raw disk with the same
  digest; without it skopeo gzips the layer on the way (another blob): that
  push is timed once per case too, for reference.
* ``before`` (``--disks-before REF``): vmregistry as it was at commit REF,
  server and client (its layer exported with ``git archive``, run by the same
  interpreter), in the same runs.

Every figure is the wall time of the whole command, median (min-max) of the
runs; the pulled disk is checked against the pushed digest (untimed), and
its allocated size recorded (a pull that keeps holes allocates the data
only). The clients' peak RSS is their ``VmHWM``, sampled while they run. A
last measurement pushes and pulls sparse disks of growing apparent size (the
same 64 MiB of data) through a one-worker server and records the peak RSS of
the server and of each client: flat means they stream, whatever the size.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.servers import Server, start_distribution, start_vmregistry

__all__ = ["DiskSpec", "hash_file", "make_disk", "measure", "render", "targets"]

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


def _peak_rss(pid: int) -> int:
    """``VmHWM`` of a running process, bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command to completion: (wall seconds, peak RSS MiB).

    The peak is the kernel's high-water mark, sampled every 20 ms while the process
    runs (``wait4``'s ``ru_maxrss`` would count the forking bench process's own RSS).
    """
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _peak_rss(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command[:3])} ... failed ({process.returncode}): {message}")
    return elapsed, peak / MIB


class _Vmregistry:
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
        return _run([*self.command, "push", f"{self.host}/bench/disk:{tag}", "-disk", str(disk), "-q"], self._env())

    def pull(self, tag: str, out: Path, disk: Path, digest: str) -> tuple[tuple[float, float], Path]:
        command = [*self.command, "pull", f"{self.host}/bench/disk:{tag}", "-o", str(out), "-q"]
        return _run(command, self._env()), out / disk.name


class _Skopeo:
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
        figures = _run([*command, f"oci:{layout}:latest", f"docker://{self.host}/bench/disk:{tag}"])
        shutil.rmtree(layout, ignore_errors=True)
        return figures

    def pull(self, tag: str, out: Path, disk: Path, digest: str) -> tuple[tuple[float, float], Path]:
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


def _export(reference: str, work: Path) -> str:
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


def _case(spec: DiskSpec, runs: int, work: Path, options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    home = work / f"disks-{spec.name}"
    for directory in ("new", "before", "distribution"):
        (home / directory).mkdir(parents=True)
    disk = home / "disk.img"
    first = make_disk(disk, spec)
    servers: list[Server] = []
    try:
        servers.append(start_vmregistry(home / "new", workers=options["workers"]))
        tools: list[Any] = [_Vmregistry(VMREGISTRY, servers[-1], home)]
        if options["before"] is not None:
            env = {"PYTHONPATH": str(options["before"])}
            servers.append(start_vmregistry(home / "before", env, workers=options["workers"]))
            tools.append(_Vmregistry(BEFORE, servers[-1], home, options["before"]))
        if options["distribution"]:
            servers.append(start_distribution(home / "distribution"))
            tools.append(_Skopeo(servers[-1], home))
        times: dict[str, dict[str, list[float]]] = {t.name: {"push": [], "pull": []} for t in tools}
        rss: dict[str, dict[str, float]] = {t.name: {"push": 0.0, "pull": 0.0} for t in tools}
        allocated: dict[str, float] = {}
        for run in range(runs):
            vary(disk, first, run)
            digest = hash_file(disk)
            for tool in tools:
                log(f"disks {spec.name} run {run + 1}/{runs}: {tool.name}")
                out = home / "pulled"
                shutil.rmtree(out, ignore_errors=True)
                seconds, peak = tool.push(disk, f"r{run}", digest)
                times[tool.name]["push"].append(seconds)
                rss[tool.name]["push"] = max(rss[tool.name]["push"], peak)
                (seconds, peak), pulled = tool.pull(f"r{run}", out, disk, digest)
                times[tool.name]["pull"].append(seconds)
                rss[tool.name]["pull"] = max(rss[tool.name]["pull"], peak)
                if hash_file(pulled) != digest:
                    raise RuntimeError(f"{tool.name} pulled other bytes than were pushed")
                allocated[tool.name] = round(os.stat(pulled).st_blocks * 512 / MIB, 1)
                shutil.rmtree(out, ignore_errors=True)
        gzip = None
        if options["distribution"]:
            vary(disk, first, runs)
            gzip = round(_Skopeo(servers[-1], home, preserve=False).push(disk, "gzip", hash_file(disk))[0], 2)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "disk": spec.describe(),
        "seconds": {name: {op: _summary(v) for op, v in ops.items()} for name, ops in times.items()},
        "client_peak_rss_mib": {name: {op: round(v, 1) for op, v in ops.items()} for name, ops in rss.items()},
        "pulled_allocated_mib": allocated,
        "skopeo_gzip_push_s": gzip,
    }


def _server_peak(server: Server) -> float:
    """The highest ``VmHWM`` among the server's processes (MiB)."""
    peaks = [server.status_field("VmHWM")]
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        peaks.append(_peak_rss(int(pid)))
    return round(max(peaks) / MIB, 1)


def _memory(sizes: list[int], work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS of a one-worker server and of the client, per apparent size (the same 64 MiB of data)."""
    out: dict[str, Any] = {}
    for size in sizes:
        log(f"disks memory {size // MIB} MiB")
        home = work / f"disks-memory-{size}"
        home.mkdir()
        disk = home / "disk.img"
        make_disk(disk, DiskSpec("memory", size, min(64 * MIB, size // 4 // EXTENT * EXTENT)))
        try:
            with start_vmregistry(home, workers=1) as server:
                tool = _Vmregistry(VMREGISTRY, server, home)
                push_s, push_rss = tool.push(disk, "m", "")
                (pull_s, pull_rss), _ = tool.pull("m", home / "pulled", disk, "")
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
    distribution: bool = True,
    before: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``{"sparse": case, "dense": case, "memory": {...}}``: vmregistry alone without skopeo and distribution."""
    if distribution and (shutil.which("skopeo") is None or shutil.which("docker-registry") is None):
        return {"skipped": "skopeo or docker-registry is not installed (make bench installs them)"}
    options = {"workers": workers, "distribution": distribution, "before": _export(before, work) if before else None}
    data = data // EXTENT * EXTENT
    return {
        "before": before,
        "sparse": _case(DiskSpec("sparse", apparent, data), runs, work, options, log),
        "dense": _case(DiskSpec("dense", apparent, None), runs, work, options, log),
        "memory": _memory(list(memory_sizes), work, log),
    }


def _cell(entry: dict[str, Any] | None) -> str:
    return f"{entry['median']:.1f} s ({entry['min']:.1f}-{entry['max']:.1f})" if entry else "-"


def _speedup(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    return theirs["median"] / ours["median"] if ours and theirs and ours["median"] else None


def render(result: dict[str, Any]) -> list[str]:
    disks = result.get("disks") or {}
    if not disks:
        return []
    out = ["## VM disks, whole images: vmregistry against skopeo with distribution", ""]
    if "skipped" in disks:
        return [*out, f"Not measured: {disks['skipped']}", ""]
    before = f"{BEFORE} ({disks['before']})" if disks.get("before") else None
    out += [
        "Wall time of the whole command, median (min-max) of the runs, fresh content each run (see"
        " bench/disks.py); speed-up = skopeo's time / vmregistry's.",
        "",
        f"| Disk | Operation | {VMREGISTRY} | {SKOPEO} | speed-up |" + (f" {before} |" if before else ""),
        "|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for case in ("sparse", "dense"):
        row = disks.get(case) or {}
        seconds = row.get("seconds") or {}
        for op in ("push", "pull"):
            ours, theirs = (seconds.get(VMREGISTRY) or {}).get(op), (seconds.get(SKOPEO) or {}).get(op)
            ratio = _speedup(ours, theirs)
            cells = [row.get("disk", case), op, _cell(ours), _cell(theirs), f"{ratio:.2f}x" if ratio else "-"]
            if before:
                cells.append(_cell((seconds.get(BEFORE) or {}).get(op)))
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for case in ("sparse", "dense"):
        row = disks.get(case) or {}
        rss, allocated = row.get("client_peak_rss_mib") or {}, row.get("pulled_allocated_mib") or {}
        shown = "; ".join(
            f"{name}: push {v['push']} MiB, pull {v['pull']} MiB, pulled file {allocated.get(name, '-')} MiB on disk"
            for name, v in rss.items()
        )
        gzip = row.get("skopeo_gzip_push_s")
        out.append(
            f"- {case}: client peak RSS {shown}" + (f"; skopeo push gzipping the layer: {gzip} s" if gzip else "")
        )
    memory = disks.get("memory") or {}
    if memory:
        out += ["", "| Sparse disk (64 MiB of data) | server peak RSS | push client | pull client | push | pull |"]
        out.append("|---|---|---|---|---|---|")
        for size, entry in memory.items():
            out.append(
                f"| {int(size) / 1024:g} GiB | {entry['server_peak_mib']} MiB | {entry['push_client_peak_mib']} MiB"
                f" | {entry['pull_client_peak_mib']} MiB | {entry['push_s']} s | {entry['pull_s']} s |"
            )
    return [*out, ""]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    disks = result.get("disks") or {}
    checks: list[tuple[str, str, bool | None]] = []
    for case, wanted in (("sparse", 2.0), ("dense", None)):
        seconds = ((disks.get(case) or {}).get("seconds")) or {}
        for op in ("push", "pull"):
            ours = (seconds.get(VMREGISTRY) or {}).get(op)
            ratio = _speedup(ours, (seconds.get(SKOPEO) or {}).get(op))
            if ratio is not None and wanted is not None:
                checks.append(
                    (f"{case} disk {op} >= {wanted:g}x skopeo + distribution", f"{ratio:.2f}x", ratio >= wanted)
                )
            earlier = _speedup(ours, (seconds.get(BEFORE) or {}).get(op))
            if earlier is not None and case == "dense":
                checks.append((f"dense disk {op} no slower than before", f"{earlier:.2f}x", earlier >= 0.95))
    memory = disks.get("memory") or {}
    if len(memory) > 1:
        small, large = memory[min(memory, key=int)], memory[max(memory, key=int)]
        keys = ("server_peak_mib", "push_client_peak_mib", "pull_client_peak_mib")
        grown = max(large[k] - small[k] for k in keys)
        checks.append(
            (
                f"peak RSS flat from {int(min(memory, key=int)) / 1024:g} to {int(max(memory, key=int)) / 1024:g} GiB",
                f"+{grown:.1f} MiB at most",
                grown < 16,
            )
        )
    return checks


if __name__ == "__main__":  # a look without the whole bench: python -m bench.disks [runs] [before-ref]
    scratch = Path(tempfile.mkdtemp(prefix="vmregistry-disks-"))
    try:
        figures = measure(
            int(sys.argv[1]) if len(sys.argv) > 1 else 1, scratch, before=sys.argv[2] if len(sys.argv) > 2 else None
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    print("\n".join(render({"disks": figures})))
