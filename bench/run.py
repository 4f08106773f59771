"""``python -m bench``: run every measurement, write ``bench/results/`` and ``docs/bench.md``.

Sections run in order (throughput, control plane, Lambda costs, memory, S3,
the deployed stack in the emulator, listing pages, manifest PUT by layer count,
whole VM disks against skopeo)
and each records the machine's load average before it starts: the machine
may be shared, and a figure means little without the load it ran under.
``--quick`` is the smoke run (tiny sizes, one run, our server only unless
distribution is installed) that ``tests/test_bench_smoke.py`` uses; it never
touches ``docs/bench.md``, and neither does a run written elsewhere (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmregistry.local.workers import default_workers

from bench import control, disks, emulator, listing, manifest_put, memory, report, s3, throughput
from bench.servers import Server, distribution_version, start_distribution, start_vmregistry
from bench.throughput import MIB

__all__ = ["main", "parse_size"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "bench.md"
SECTIONS = ("throughput", "control", "lambda", "memory", "s3", "emulator", "listing", "manifests", "disks")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def parse_size(text: str) -> int:
    found = re.fullmatch(r"(\d+)([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if found is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 1G)")
    return int(found.group(1)) * {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[found.group(2).upper()]


def _sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part]


def _version(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return ((done.stdout or done.stderr).strip().splitlines() or [""])[0] or None


def machine() -> dict[str, Any]:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "distribution": distribution_version(),
        "curl": " ".join((_version(["curl", "--version"]) or "").split()[:2]) or None,
        "wrk": " ".join((_version(["wrk", "--version"]) or "").split()[:2]) or None,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("64M,1G"), help="blob sizes for throughput")
    parser.add_argument("--runs", type=int, default=5, help="runs per throughput figure")
    parser.add_argument("--s3-runs", type=int, default=3, help="runs per S3-mode figure (LocalStack is slow)")
    parser.add_argument("--memory-sizes", type=_sizes, default=_sizes("64M,4G"), help="blob sizes for peak RSS")
    parser.add_argument("--control-seconds", type=float, default=5.0, help="wrk duration per case")
    parser.add_argument(
        "--import-runs", type=int, default=9, help="fresh interpreters per cold figure (the spread here is +-20 %%)"
    )
    parser.add_argument("--iterations", type=int, default=2000, help="warm invocations per handler")
    parser.add_argument("--emulator-runs", type=int, default=20, help="warm requests per operation in the emulator")
    parser.add_argument(
        "--listing-sets",
        nargs="*",
        choices=[d.label for d in listing.DATASETS],
        default=[d.label for d in listing.DATASETS],
        help="datasets of the listing section",
    )
    parser.add_argument("--disk-runs", type=int, default=3, help="runs per whole-disk figure (disks)")
    parser.add_argument("--disks-before", metavar="REF", help="also time vmregistry as of this git commit (disks)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--skip", nargs="*", choices=SECTIONS, default=[], help="skip these sections")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="vmregistry serve -workers for throughput and control (default: one per CPU, as serve and"
        " distribution's Go runtime use)",
    )
    parser.add_argument("--no-distribution", action="store_true", help="measure vmregistry alone")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one run, nothing to docs/")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="directory for latest.{json,md,png}; only the default updates docs/bench.md",
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a fresh temporary one)")
    parser.add_argument("--render", action="store_true", help="only re-render the tables and chart from latest.json")
    return parser


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # docs/bench.md shows the published results only: not a smoke run, not a scratch --out.
    docs = not args.quick and args.out.resolve() == RESULTS
    if args.render:
        _write(json.loads((args.out / "latest.json").read_text()), args.out, docs=docs)
        return 0
    if args.quick:
        args.sizes, args.runs, args.s3_runs, args.memory_sizes = [MIB], 1, 1, [MIB, 4 * MIB]
        args.control_seconds, args.import_runs, args.iterations, args.emulator_runs = 1.0, 1, 20, 3
    sections = [s for s in (args.only or SECTIONS) if s not in args.skip]
    use_distribution = not args.no_distribution and distribution_version() is not None
    if not use_distribution and not args.quick and not args.no_distribution:
        print("docker-registry is not installed (make bench installs it)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vmregistry-bench-", dir=args.workdir))
    started = time.time()
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "mode": "quick (smoke)" if args.quick else "full",
        "machine": machine(),
        "load": {},
        "settings": {
            "sizes_mib": [s // MIB for s in args.sizes],
            "runs": args.runs,
            "s3_runs": args.s3_runs,
            "memory_sizes_mib": [s // MIB for s in args.memory_sizes],
            "control_seconds": args.control_seconds,
            "iterations": args.iterations,
            "emulator_runs": args.emulator_runs,
            "workers": args.workers,
        },
    }
    try:
        _run(sections, args, use_distribution, work, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load"]["end"] = _load()
    result["elapsed_s"] = round(time.time() - started)
    _write(result, args.out, docs=docs)
    print(report.render_markdown(result))
    return 0


def _servers(work: Path, use_distribution: bool, workers: int) -> list[Server]:
    home = work / "servers"
    home.mkdir(exist_ok=True)
    servers = [start_vmregistry(home, workers=workers)]
    if use_distribution:
        servers.append(start_distribution(home))
    return servers


def _run(
    sections: list[str], args: argparse.Namespace, use_distribution: bool, work: Path, result: dict[str, Any]
) -> None:
    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message} (load {_load()})", file=sys.stderr, flush=True)

    if "throughput" in sections or "control" in sections:
        servers = _servers(work, use_distribution, args.workers)
        try:
            if "throughput" in sections:
                result["load"]["throughput"] = _load()
                result["throughput"] = {}
                for size in args.sizes:
                    log(f"throughput {size // MIB} MiB")
                    source, digest = throughput.make_blob(work, size)
                    if size == max(args.sizes):
                        result["limits"] = throughput.machine_limits(source, size, args.runs)
                    result["throughput"][str(size // MIB)] = throughput.measure_throughput(
                        servers, source, digest, size, args.runs, work
                    )
                    source.unlink()
            if "control" in sections:
                log("control plane")
                result["load"]["control"] = _load()
                result["control"] = control.measure_control_plane(
                    servers, args.control_seconds, 0.0 if args.quick else 1.0
                )
        finally:
            for server in servers:
                server.stop()
    if "lambda" in sections:
        log("lambda costs")
        result["load"]["lambda"] = _load()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.lambda_costs",
                "--import-runs",
                str(args.import_runs),
                "--iterations",
                str(args.iterations),
                # The smoke run times two imports; a full run times every handler's.
                *(["--import-only", "blob_head", "manifest_put"] if args.quick else []),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        result["lambda"] = json.loads(done.stdout.strip().splitlines()[-1])
    if "memory" in sections:
        log("memory")
        result["load"]["memory"] = _load()
        # One process: its peak is what moving a blob costs (a transfer runs in one worker).
        starters: dict[str, Callable[[Path], Server]] = {"vmregistry": lambda home: start_vmregistry(home, workers=1)}
        if use_distribution:
            starters["distribution"] = start_distribution
        result["memory"] = memory.measure_memory(starters, args.memory_sizes, work)
    if "s3" in sections:
        log("s3")
        result["load"]["s3"] = _load()
        result["s3"] = s3.measure(args.sizes, args.s3_runs, work)
    if "emulator" in sections:
        log("the deployed stack in the emulator")
        result["load"]["emulator"] = _load()
        result["emulator"] = emulator.measure(args.emulator_runs, work)
    if "listing" in sections:
        log("listing")
        result["load"]["listing"] = _load()
        sets = listing.QUICK_DATASETS if args.quick else [d for d in listing.DATASETS if d.label in args.listing_sets]
        # A page takes milliseconds: twice the runs of a throughput figure cost little.
        result["listing"] = listing.measure(
            sets, 2 * args.runs, 2 * args.s3_runs, use_distribution, work, log, s3=not args.quick
        )
    if "manifests" in sections:
        log("manifest PUT")
        result["load"]["manifests"] = _load()
        result["manifest_put"] = manifest_put.measure(
            args.runs, args.s3_runs, work, log, s3=not args.quick, quick=args.quick
        )
    if "disks" in sections:
        log("whole VM disks")
        result["load"]["disks"] = _load()
        small = {"apparent": 32 * MIB, "data": 8 * MIB, "memory_sizes": (32 * MIB,)} if args.quick else {}
        result["disks"] = disks.measure(
            1 if args.quick else args.disk_runs,
            work,
            workers=args.workers,
            distribution=use_distribution,
            before=args.disks_before,
            log=log,
            **small,  # type: ignore[arg-type]
        )
    log("done")


def _write(result: dict[str, Any], out: Path, docs: bool) -> None:
    (out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    chart = report.render_chart(result, out / "latest.png")
    table = report.render_markdown(result)
    if chart:
        table += "\n![Throughput and control plane](latest.png)\n"
    (out / "latest.md").write_text("# Benchmark results (generated by `make bench`)\n\n" + table)
    if docs and DOCS.exists():
        text = DOCS.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            shown = re.sub(r"(?m)^## ", "### ", table).replace("](latest.png)", "](../bench/results/latest.png)")
            DOCS.write_text(f"{head}{BEGIN}\n{shown}\n{END}{tail}")
