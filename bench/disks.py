"""Whole VM disks pushed and pulled as users do it: ``vmregistry push/pull`` against skopeo with distribution.

Two disks of the same apparent size (2 GiB by default): a *sparse* one, as a
freshly installed VM's raw disk is (about 600 MiB of random data in 4 MiB
extents scattered over the disk, holes elsewhere), and a *dense* one (random
bytes throughout). Each run first changes 16 bytes of the first data extent,
so every run moves content neither registry (nor skopeo's blob-location
cache) has seen; within a run the tools alternate, push then pull, so a burst
of load from elsewhere hits them all, and take turns at going first. ``sync``
runs before each command: none pays for writing back what another left in
the page cache (distribution and skopeo's ``dir:`` do not fsync; vmregistry
makes a blob durable before it is visible, and a pulled file before it is named).

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

In S3 mode (LocalStack on the host, ``make localstack``) the sparse and dense
disks are pushed and pulled once more through ``vmregistry serve -storage s3``
(and the ``before`` version, each on its own bucket): the bytes then go to
LocalStack through presigned URLs, zero parts are server-side copies there,
and the verification reads back only what is not a declared zero.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.disktools import (
    BEFORE,
    EXTENT,
    GIB,
    MIB,
    SKOPEO,
    VMREGISTRY,
    DiskSpec,
    SkopeoTool,
    VmregistryTool,
    export,
    hash_file,
    make_disk,
    peak_rss,
    summary,
    vary,
)
from bench.servers import Server, Unavailable, local_s3, start_distribution, start_vmregistry

__all__ = ["measure", "render", "targets"]


def _case(spec: DiskSpec, runs: int, work: Path, options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    home = work / f"disks-{spec.name}"
    for directory in ("new", "before", "distribution"):
        (home / directory).mkdir(parents=True)
    disk = home / "disk.img"
    first = make_disk(disk, spec)
    servers: list[Server] = []
    try:
        servers.append(start_vmregistry(home / "new", workers=options["workers"]))
        tools: list[Any] = [VmregistryTool(VMREGISTRY, servers[-1], home)]
        if options["before"] is not None:
            env = {"PYTHONPATH": str(options["before"])}
            servers.append(start_vmregistry(home / "before", env, workers=options["workers"]))
            tools.append(VmregistryTool(BEFORE, servers[-1], home, options["before"]))
        if options["distribution"]:
            servers.append(start_distribution(home / "distribution"))
            tools.append(SkopeoTool(servers[-1], home))
        times: dict[str, dict[str, list[float]]] = {t.name: {"push": [], "pull": []} for t in tools}
        rss: dict[str, dict[str, float]] = {t.name: {"push": 0.0, "pull": 0.0} for t in tools}
        allocated: dict[str, float] = {}
        for run in range(runs):
            vary(disk, first, run)
            digest = hash_file(disk)
            for tool in tools[run % len(tools) :] + tools[: run % len(tools)]:  # each tool goes first in turn
                log(f"disks {spec.name} run {run + 1}/{runs}: {tool.name}")
                out = home / "pulled"
                shutil.rmtree(out, ignore_errors=True)
                os.sync()  # nothing the tool before left dirty is written back on this one's time
                seconds, peak = tool.push(disk, f"r{run}", digest)
                times[tool.name]["push"].append(seconds)
                rss[tool.name]["push"] = max(rss[tool.name]["push"], peak)
                os.sync()
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
            gzip = round(SkopeoTool(servers[-1], home, preserve=False).push(disk, "gzip", hash_file(disk))[0], 2)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "disk": spec.describe(),
        "seconds": {name: {op: summary(v) for op, v in ops.items()} for name, ops in times.items()},
        "clientpeak_rss_mib": {name: {op: round(v, 1) for op, v in ops.items()} for name, ops in rss.items()},
        "pulled_allocated_mib": allocated,
        "skopeo_gzip_push_s": gzip,
    }


def _s3(specs: list[DiskSpec], runs: int, work: Path, before: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """The disks through vmregistry on LocalStack's S3 (and the earlier version, on a bucket of its own)."""
    home = work / "disks-s3"
    out: dict[str, Any] = {}
    try:
        with local_s3(home) as localstack:
            for spec in specs:
                disk = home / f"{spec.name}.img"
                first = make_disk(disk, spec)
                servers: list[Server] = []
                try:
                    tools: list[Any] = []
                    for name, python_path in ((VMREGISTRY, None), (BEFORE, before)):
                        if name == BEFORE and python_path is None:
                            continue
                        env = localstack.env("disks")
                        env |= {"PYTHONPATH": python_path} if python_path else {}
                        (home / name).mkdir(exist_ok=True)
                        servers.append(start_vmregistry(home / name, env, "-storage", "s3"))
                        tools.append(VmregistryTool(name, servers[-1], home, python_path))
                    times: dict[str, dict[str, list[float]]] = {t.name: {"push": [], "pull": []} for t in tools}
                    for run in range(runs):
                        vary(disk, first, run)
                        digest = hash_file(disk)
                        for tool in tools:
                            log(f"disks s3 {spec.name} run {run + 1}/{runs}: {tool.name}")
                            shutil.rmtree(home / "pulled", ignore_errors=True)
                            times[tool.name]["push"].append(tool.push(disk, f"r{run}", digest)[0])
                            (seconds, _), pulled = tool.pull(f"r{run}", home / "pulled", disk, digest)
                            times[tool.name]["pull"].append(seconds)
                            if hash_file(pulled) != digest:
                                raise RuntimeError(f"{tool.name} on S3 pulled other bytes than were pushed")
                finally:
                    for server in servers:
                        server.stop()
                    disk.unlink(missing_ok=True)
                out[spec.name] = {
                    "disk": spec.describe(),
                    "seconds": {name: {op: summary(v) for op, v in ops.items()} for name, ops in times.items()},
                }
    except Unavailable as exc:
        return {"skipped": str(exc)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


def _server_peak(server: Server) -> float:
    """The highest ``VmHWM`` among the server's processes (MiB)."""
    peaks = [server.status_field("VmHWM")]
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        peaks.append(peak_rss(int(pid)))
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
                tool = VmregistryTool(VMREGISTRY, server, home)
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
    s3_runs: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``{"sparse", "dense", "memory", "s3"}``: vmregistry alone without skopeo and distribution."""
    if distribution and (shutil.which("skopeo") is None or shutil.which("docker-registry") is None):
        return {"skipped": "skopeo or docker-registry is not installed (make bench installs them)"}
    path = export(before, work) if before else None
    options = {"workers": workers, "distribution": distribution, "before": path}
    specs = [DiskSpec("sparse", apparent, data // EXTENT * EXTENT), DiskSpec("dense", apparent, None)]
    result: dict[str, Any] = {"before": before}
    for spec in specs:
        result[spec.name] = _case(spec, runs, work, options, log)
    result["memory"] = _memory(list(memory_sizes), work, log)
    if s3_runs:
        result["s3"] = _s3(specs, s3_runs, work, path, log)
    return result


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
        rss, allocated = row.get("clientpeak_rss_mib") or {}, row.get("pulled_allocated_mib") or {}
        shown = "; ".join(
            f"{name}: push {v['push']} MiB, pull {v['pull']} MiB, pulled file {allocated.get(name, '-')} MiB on disk"
            for name, v in rss.items()
        )
        gzip = row.get("skopeo_gzip_push_s")
        out.append(
            f"- {case}: client peak RSS {shown}" + (f"; skopeo push gzipping the layer: {gzip} s" if gzip else "")
        )
    s3 = disks.get("s3") or {}
    if "skipped" in s3:
        out += ["", f"S3 mode: not measured ({s3['skipped']})."]
    elif s3:
        shown = f" | {before}" if before else ""
        out += [
            "",
            f"| On LocalStack's S3 | Operation | {VMREGISTRY}{shown} |",
            "|---|---|---|" + ("---|" if before else ""),
        ]
        for row in s3.values():
            for op in ("push", "pull"):
                cells = [row["disk"], op, _cell((row["seconds"].get(VMREGISTRY) or {}).get(op))]
                if before:
                    cells.append(_cell((row["seconds"].get(BEFORE) or {}).get(op)))
                out.append("| " + " | ".join(cells) + " |")
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
