"""Results as Markdown tables, a target checklist and a PNG chart.

The JSON that :mod:`bench.run` writes is the source; everything here is
derived from it, so an old ``latest.json`` can be re-rendered
(``python -m bench --render``). The chart needs matplotlib (``make bench``
installs it); without it the tables are still written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import disks, listing, manifest_put

__all__ = ["check_targets", "render_chart", "render_markdown"]

PROJECT = "vmregistry"
PEER = "distribution"
OPERATIONS = {
    "push": "push",
    "pull": "pull, right after the push",
    "pull_settled": "pull, settled (page cache)",
    "pull_cold": "pull, cold (from disk)",
}
"""Throughput rows: the three pulls differ in where the blob's pages are (bench/throughput.py)."""


def _mib(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry['median']:,.0f} ({entry['min']:,.0f}-{entry['max']:,.0f})"


def _ms(entry: dict[str, Any] | None) -> str:
    if not entry or "ms" not in entry:
        return "-"
    return f"{entry['ms']:,.0f} ({entry['min']:,.0f}-{entry['max']:,.0f})"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str = "median") -> str:
    if not a or not b or not b.get(key):
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def check_targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """``(target, measured, met)``; ``met`` is ``None`` where the figure was not measured."""
    checks: list[tuple[str, str, bool | None]] = []
    throughput = result.get("throughput") or {}
    limits = result.get("limits") or {}
    biggest = max(throughput, key=int, default=None)
    if biggest is not None:
        row = throughput[biggest]
        for op, label in OPERATIONS.items():
            ours, theirs = (row.get(op) or {}).get(PROJECT), (row.get(op) or {}).get(PEER)
            if ours and theirs:
                ratio = ours["median"] / theirs["median"]
                checks.append((f"{label} {biggest} MiB >= 1.5x distribution", f"{ratio:.2f}x", ratio >= 1.5))
        sha = (limits.get("sha256") or {}).get("median")
        ours = row["push"].get(PROJECT)
        if sha and ours:
            share = ours["median"] / sha
            checks.append((f"push {biggest} MiB >= 60 % of hashlib SHA-256", f"{share:.0%}", share >= 0.6))
    for op, rows in (result.get("control") or {}).items():
        row = rows.get("16") or {}
        if PROJECT in row and PEER in row:
            ratio = row[PROJECT]["rps"] / row[PEER]["rps"]
            checks.append((f"{op} req/s at 16 connections >= distribution", f"{ratio:.2f}x", ratio >= 1.0))
    lam = result.get("lambda") or {}
    imports = lam.get("import") or {}
    if imports:
        worst = max(imports.items(), key=lambda item: item[1]["ms"])
        checks.append(
            (
                "every handler imports in < 150 ms cold (no X-Ray SDK: the default)",
                f"slowest {worst[0]} {worst[1]['ms']} ms",
                worst[1]["ms"] < 150,
            )
        )
    head = (lam.get("invoke") or {}).get("blob_head")
    if head and "p50_ms" in head:
        checks.append(("warm HEAD blob < 1 ms p50 in-process", f"{head['p50_ms']} ms", head["p50_ms"] < 1.0))
    memory = (result.get("memory") or {}).get(PROJECT) or {}
    if memory:
        peak = max(entry["peak_mib"] for entry in memory.values())
        biggest_mem = max(memory, key=int)
        checks.append(
            (f"peak RSS < 150 MB moving {biggest_mem} MiB", f"{peak * 1.048576:.0f} MB", peak * 1.048576 < 150)
        )
    return checks + listing.targets(result) + manifest_put.targets(result) + disks.targets(result)


def _machine(result: dict[str, Any]) -> list[str]:
    m = result.get("machine") or {}
    lines = [
        f"- **When**: {result.get('started', '?')} (run took {result.get('elapsed_s', '?')} s);"
        f" mode: {result.get('mode', '?')}",
        f"- **Machine**: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB RAM,"
        f" Linux {m.get('kernel', '?')}; Python {m.get('python', '?')}",
        f"- **Peers**: {m.get('distribution') or 'distribution not installed'}; {m.get('curl') or 'no curl'};"
        f" {m.get('wrk') or 'wrk not installed'}",
    ]
    workers = (result.get("settings") or {}).get("workers")
    if workers:
        lines.append(
            f"- **vmregistry workers** (throughput, control plane): {workers}"
            " (`serve -workers`; distribution's Go runtime uses every core); memory: 1"
        )
    loads = result.get("load") or {}
    if loads:
        shown = ", ".join(f"{k} {v}" for k, v in loads.items())
        lines.append(
            f"- **Load average (1 min) before each section**: {shown} (other work on the machine shares its cores)"
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    out = ["## Machine and run", "", *_machine(result), ""]
    throughput = result.get("throughput") or {}
    limits = result.get("limits") or {}
    if throughput:
        out += [
            "## Blob throughput (MiB/s, median (min-max))",
            "",
            "curl for both; push = API call(s) + body (+ completion); pull = API call (+ redirect) to /dev/null;"
            " each blob is pulled right after its push (distribution's copy still dirty in the page cache,"
            " vmregistry's fsync'd), settled (after `sync` and a pause: both clean in the page cache) and cold"
            " (the blob file dropped from the page cache with `posix_fadvise`: read from the disk).",
            "",
            "| Blob | Operation | vmregistry | distribution | vmregistry / distribution |",
            "|---|---|---|---|---|",
        ]
        for size in sorted(throughput, key=int):
            row = throughput[size]
            for op, label in OPERATIONS.items():
                if op not in row:
                    continue
                ours, theirs = row[op].get(PROJECT), row[op].get(PEER)
                out.append(f"| {size} MiB | {label} | {_mib(ours)} | {_mib(theirs)} | {_ratio(ours, theirs)} |")
        if limits:
            out += [
                "",
                f"Machine limits in the same run ({limits.get('size_mib')} MiB):"
                f" hashlib SHA-256 {_mib(limits.get('sha256'))},"
                f" file copy {_mib(limits.get('copy'))},"
                f" file copy + fsync {_mib(limits.get('copy_fsync'))} MiB/s.",
            ]
            push = (throughput.get(str(limits.get("size_mib"))) or {}).get("push", {}).get(PROJECT)
            durable = limits.get("copy_fsync")
            if push and durable and durable.get("median"):
                # The ceiling of a push that is durable before it is visible: the disk, not the hash.
                out.append(f"vmregistry's push runs at {_ratio(push, durable)} the rate of a file copy + fsync.")
        out.append("")
    control = result.get("control") or {}
    if control:
        out += [
            "## Control plane (wrk)",
            "",
            "| Operation | Connections | vmregistry req/s | p50 / p99 ms"
            " | distribution req/s | p50 / p99 ms | req/s ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for op, rows in control.items():
            for connections, row in rows.items():
                ours, theirs = row.get(PROJECT), row.get(PEER)
                cells = []
                for entry in (ours, theirs):
                    cells += [f"{entry['rps']:,.0f}", f"{entry['p50_ms']} / {entry['p99_ms']}"] if entry else ["-", "-"]
                ratio = f"{ours['rps'] / theirs['rps']:.2f}x" if ours and theirs else "-"
                out.append(f"| {op} | {connections} | {' | '.join(cells)} | {ratio} |")
        out.append("")
    lam = result.get("lambda") or {}
    if lam:
        out += [
            "## Lambda costs",
            "",
            "Cold figures: ms, median (min-max), fresh interpreters laid out as Lambda's. *No SDK* is a"
            " function deployed with `tracing` `active` (the default) or `off`; *SDK* with `tracing` `sdk`."
            " *First invocation* is the import plus one call on the filesystem backend; *S3 setup* is what"
            " building the registry on S3 (boto3, the client) adds to a first invocation in AWS.",
            "",
            "| Handler | Cold import, no SDK | Cold import, SDK | First invocation | S3 setup"
            " | Heaviest packages, no SDK (self ms) | Warm p50 ms | Warm p99 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        imports, invokes = lam.get("import") or {}, lam.get("invoke") or {}
        for op in imports or invokes:
            imp, inv = imports.get(op) or {}, invokes.get(op) or {}
            heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in imp.get("top", [])[:3])
            cells = [_ms(imp), _ms(imp.get("sdk")), _ms(imp.get("first_call")), _ms(imp.get("s3_setup"))]
            if "untraced_ms" in imp:  # a run from before the tracing modes: "ms" was with the SDK
                cells = [f"{imp['untraced_ms']:,.0f}", _ms(imp), "-", "-"]
            out.append(
                f"| {op} | {' | '.join(cells)} | {heavy} | {inv.get('p50_ms', '-')} | {inv.get('p99_ms', '-')} |"
            )
        sizes = lam.get("artefacts") or {}
        if sizes:
            out += ["", "| Artefact | Zipped | Unzipped |", "|---|---|---|"]
            for name, entry in sizes.items():
                if "missing" in entry:
                    out.append(f"| {name} | {entry['missing']} | |")
                else:
                    out.append(f"| {name} | {entry['zipped'] / 1024:,.0f} KiB | {entry['unzipped'] / 1024:,.0f} KiB |")
        out.append("")
    memory = result.get("memory") or {}
    if memory:
        out += [
            "## Peak memory while pushing and pulling one blob",
            "",
            "| Server | Blob | RSS after start | Peak RSS (VmHWM) |",
            "|---|---|---|---|",
        ]
        for name, sizes_ in memory.items():
            for size, entry in sizes_.items():
                out.append(f"| {name} | {size} MiB | {entry['idle_mib']} MiB | {entry['peak_mib']} MiB |")
        out.append("")
    s3 = result.get("s3") or {}
    if s3:
        out += ["## S3 mode (LocalStack)", ""]
        if "skipped" in s3:
            out.append(f"Not measured: {s3['skipped']}")
        else:
            out += [
                "MiB/s, median (min-max); added = time through the registry minus time direct, at the medians.",
                "",
                "| Blob | Operation | through vmregistry | direct presigned | ratio | added |",
                "|---|---|---|---|---|---|",
            ]
            for size, row in s3.get("throughput", {}).items():
                for op in ("push", "pull"):
                    ours, direct = row[op].get("registry"), row[op].get("direct")
                    added = int(size) / ours["median"] - int(size) / direct["median"]
                    out.append(
                        f"| {size} MiB | {op} | {_mib(ours)} | {_mib(direct)} | {_ratio(ours, direct)}"
                        f" | {added * 1000:,.0f} ms |"
                    )
            if "api_ms" in s3:
                out.append(f"\nOne API round trip (POST upload / GET redirect) costs {s3['api_ms']} ms median.")
        out.append("")
    out += _emulator_section(result)
    out += listing.render(result) + manifest_put.render(result) + disks.render(result)
    checks = check_targets(result)
    if checks:
        out += ["## Targets", "", "| Target | Measured | Met |", "|---|---|---|"]
        for target, measured, met in checks:
            out.append(f"| {target} | {measured} | {'yes' if met else 'no' if met is False else '-'} |")
        out.append("")
    return "\n".join(out)


def _emulator_section(result: dict[str, Any]) -> list[str]:
    """Per operation, through the deployed stack in the emulator, beside the in-process figures."""
    measured = result.get("emulator") or {}
    if not measured:
        return []
    out = ["## The deployed stack in the emulator (informational)", ""]
    if "skipped" in measured:
        return [*out, f"Not measured: {measured['skipped']}", ""]
    lam = result.get("lambda") or {}
    imports, invokes = lam.get("import") or {}, lam.get("invoke") or {}
    out += [
        f"{measured['emulator']} ({measured.get('measured', result.get('started', '?'))}), the stack deployed in"
        f" {measured['deploy_s']} s; ms per request over HTTPS"
        " through API Gateway, the authorizer and the function. *Cold*: the function's first request"
        " (version_check's also starts the authorizer); *warm*: median and p90 of"
        f" {measured['runs']} successful requests. In-process: the same handler called directly"
        " (*Lambda costs* above). The emulator is not AWS: its cold starts unpack every layer"
        " from zip and its warm path is an HTTP server, TLS and JSON pipes in Python.",
        "",
        "| Operation | Emulator cold | Emulator warm p50 | Emulator warm p90 | In-process first invocation"
        " | In-process warm p50 |",
        "|---|---|---|---|---|---|",
    ]
    for op, entry in measured["operations"].items():
        first = (imports.get(op) or {}).get("first_call")
        out.append(
            f"| {op} | {entry['cold_ms']:,} | {entry['warm_p50_ms']} | {entry['warm_p90_ms']}"
            f" | {_ms(first)} | {(invokes.get(op) or {}).get('p50_ms', '-')} |"
        )
    return [*out, ""]


def render_chart(result: dict[str, Any], path: Path) -> bool:
    """Throughput and control-plane bars side by side; ``False`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    throughput = result.get("throughput") or {}
    control = result.get("control") or {}
    settled = any("pull_settled" in row for row in throughput.values())
    pull = "pull_settled" if settled else "pull"
    panels = [p for p in ("push", pull) if throughput] + [p for p in ("rps", "p99") if control]
    if not panels:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    colours = {PROJECT: "#2b7bba", PEER: "#9a9a9a"}
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel in ("push", pull):
            groups = sorted(throughput, key=int)
            labels = [f"{g} MiB" for g in groups]
            series = {n: [(throughput[g][panel].get(n) or {}).get("median", 0) for g in groups] for n in colours}
            ax.set_title(f"blob {OPERATIONS[panel]} (MiB/s, higher is better)", fontsize=9)
        else:
            groups = list(control)
            labels = [g.replace("_", " ") for g in groups]
            key = "rps" if panel == "rps" else "p99_ms"
            series = {n: [(control[g].get("16", {}).get(n) or {}).get(key, 0) for g in groups] for n in colours}
            ax.set_title(
                "req/s at 16 connections" if panel == "rps" else "p99 latency ms at 16 connections", fontsize=9
            )
        width = 0.38
        for i, (name, values) in enumerate(series.items()):
            positions = [x + (i - 0.5) * width for x in range(len(groups))]
            ax.bar(positions, values, width, label=name, color=colours[name])
        ax.set_xticks(range(len(groups)), labels, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
